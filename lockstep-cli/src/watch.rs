//! `watch`: a frame a second of whole registries, each fetched once a tick
//! as a registry would, with a countdown to the next change and, beside
//! each countdown, how many live processes hold it (the fleet view, read
//! at every frame of a registry with a pending change).

use std::io::IsTerminal;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::time::Instant;

use crate::context::{Ctx, store_now};
use crate::failure::Failure;
use crate::ls::{self, Overview, namespaces};
use crate::outcome::Outcome;
use crate::view::{self, instant, relative};

/// How often the list of namespaces is read again, when not given one.
const NAMESPACES_EVERY: Duration = Duration::from_secs(10);

/// When a fetched registry is due again: once a tick.
struct Cached {
    overview: Overview,
    fetched_at: Instant,
}

/// Sends a frame to `show` each second until `count` frames or `duration`.
pub async fn watch(
    ctx: &Ctx,
    only: Option<&str>,
    count: Option<u64>,
    duration: Option<Duration>,
    json: bool,
    show: &mut dyn FnMut(Outcome),
) -> Result<(), Failure> {
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal() && !json;
    let mut names = namespaces(ctx, only).await?;
    let mut names_at = started;
    let mut cached: Vec<Cached> = Vec::new();
    // The store's clock minus this machine's, from the latest fetch.
    let mut offset_ms = 0i64;
    let mut frames = 0u64;
    loop {
        if only.is_none() && names_at.elapsed() >= NAMESPACES_EVERY {
            names = namespaces(ctx, None).await?;
            names_at = Instant::now();
        }
        let mut next_cached = Vec::new();
        for name in &names {
            let old = cached
                .iter()
                .position(|c| c.overview.namespace == *name)
                .map(|i| cached.swap_remove(i));
            match old {
                Some(c) if c.fetched_at.elapsed() < c.overview.tick() => next_cached.push(c),
                _ => {
                    let overview = ls::fetch(ctx, name, only).await?;
                    if let Some(f) = &overview.fetched {
                        offset_ms = store_now(f) - Utc::now().timestamp_millis();
                    }
                    next_cached.push(Cached {
                        overview,
                        fetched_at: Instant::now(),
                    });
                }
            }
        }
        cached = next_cached;
        let now = Utc::now().timestamp_millis() + offset_ms;
        // Who holds each pending change: read at every frame, since
        // processes fetch all through the tick.
        for c in &mut cached {
            c.overview.read_fleet(ctx, now).await?;
        }
        show(frame(ctx, &cached, now, tty));
        frames += 1;
        if count.is_some_and(|n| frames >= n) {
            return Ok(());
        }
        // Next frame just after the next whole second of the store's
        // clock, so that the countdown moves in step with activations.
        let now = Utc::now().timestamp_millis() + offset_ms;
        let wait = Duration::from_millis((1000 - now.rem_euclid(1000) + 20) as u64);
        let wake = Instant::now() + wait;
        if let Some(limit) = duration
            && wake - started > limit
        {
            tokio::time::sleep(limit.saturating_sub(started.elapsed())).await;
            return Ok(());
        }
        tokio::time::sleep_until(wake).await;
    }
}

/// One frame: the store, the time, the next change and every registry.
fn frame(ctx: &Ctx, cached: &[Cached], now: i64, tty: bool) -> Outcome {
    let next = cached
        .iter()
        .filter_map(|c| c.overview.next_change(now).map(|next| (&c.overview, next)))
        .min_by_key(|(_, (at, _, _))| *at);
    let json = json!({
        "now": instant(now),
        "namespaces": cached.iter().map(|c| c.overview.json(now)).collect::<Vec<_>>(),
        "next": next.as_ref().map(|(overview, (at, key, value))| {
            let held = overview.held(key, *at);
            json!({
                "field": format!("{}.{key}", overview.namespace), "at": instant(*at),
                "in_ms": at - now, "value": view::value_json(value),
                "held_by": held.map(|c| c.held_by), "of": held.map(|c| c.of),
            })
        }),
    });
    let mut text = String::new();
    text.push_str(&format!(
        "{}  {}\n",
        ctx.store.describe(),
        instant(now - now.rem_euclid(1000))
    ));
    text.push_str(&match &next {
        Some((overview, (at, key, value))) => format!(
            "next change: {}.{key} = {} at {} ({}){}\n\n",
            overview.namespace,
            view::value_text(value),
            instant(*at),
            relative(*at, now),
            overview.held_suffix(key, *at)
        ),
        None => "next change: none pending\n\n".to_owned(),
    });
    let texts: Vec<String> = cached.iter().map(|c| c.overview.text(now)).collect();
    text.push_str(&texts.join("\n"));
    if !tty {
        text.push_str("---\n");
        return Outcome::new(text, json);
    }
    Outcome::new(text, json).redrawn()
}
