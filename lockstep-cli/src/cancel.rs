//! `cancel` and `purge`: the commands that remove an entry, a pending one
//! beyond the horizon, or one no process can use.

use chrono::Utc;
use lockstep::Tick;
use lockstep::store::Fetched;
use serde_json::json;

use crate::args::{FieldPath, Unchecked, When};
use crate::context::{Ctx, store_now};
use crate::failure::Failure;
use crate::outcome::Outcome;
use crate::view::{self, instant};

/// A checked cancel, not yet done: the field's tick and the entry's
/// instant, rounded up to a tick boundary.
pub struct PlannedCancel {
    /// The field.
    pub path: FieldPath,
    /// The registry's tick.
    pub tick: Tick,
    /// The entry's instant.
    pub at: i64,
}

/// `cancel`'s checks: the field as the schema has it, and the instant.
pub async fn plan_cancel(
    ctx: &Ctx,
    path: &FieldPath,
    when: When,
    unchecked: &Unchecked,
) -> Result<PlannedCancel, Failure> {
    let target = ctx.target(path, unchecked).await?;
    let at = target.tick.ceil(
        when.resolve(Utc::now())
            .map_err(|e| Failure::refused(format!("--at: {e}; nothing was removed")))?,
    );
    Ok(PlannedCancel {
        path: path.clone(),
        tick: target.tick,
        at,
    })
}

impl PlannedCancel {
    /// Removes the entry; a refusal lists the field's pending entries.
    pub async fn run(&self, ctx: &Ctx) -> Result<Outcome, Failure> {
        let (path, at) = (&self.path, self.at);
        let removed = match ctx
            .store
            .cancel(&path.namespace, self.tick, &path.key, at)
            .await
        {
            Ok(removed) => removed,
            Err(e @ lockstep::Error::NoSuchEntry { .. }) => {
                let keys = [path.key.as_str()];
                let fetched = ctx.store.fetch(&path.namespace, &keys).await?;
                let hint = pending_hint(&fetched, &path.key, store_now(&fetched));
                return Err(Failure::refused(format!("{e}; {hint}")));
            }
            Err(e) => return Err(Failure::refused(format!("{e}; nothing was removed"))),
        };
        Ok(Outcome::new(
            format!(
                "cancelled {path} = {} at {}\n",
                view::value_text(&removed.value),
                instant(at)
            ),
            json!({
                "namespace": path.namespace,
                "field": path.key,
                "cancelled": instant(at),
                "value": view::value_json(&removed.value),
            }),
        ))
    }
}

/// What a refused cancel of `key` is told: the instants of its pending
/// entries, which a cancel may name.
pub fn pending_hint(fetched: &Fetched, key: &str, now: i64) -> String {
    let pending: Vec<String> = fetched
        .fields
        .get(key)
        .into_iter()
        .flatten()
        .filter(|e| e.at > now)
        .map(|e| instant(e.at))
        .collect();
    if pending.is_empty() {
        "it has no pending entries".to_owned()
    } else {
        format!("its pending entries are at: {}", pending.join(", "))
    }
}

/// `cancel`: removes a pending entry at or beyond the horizon, and shows
/// the value the store removed.
pub async fn cancel(
    ctx: &Ctx,
    path: &FieldPath,
    when: When,
    unchecked: &Unchecked,
) -> Result<Outcome, Failure> {
    plan_cancel(ctx, path, when, unchecked)
        .await?
        .run(ctx)
        .await
}

/// `purge`: removes one entry named by its stored instant. One that does
/// not decode against the published schema (or whose instant is not a
/// number) goes whatever its instant; a good one only at or beyond the
/// horizon, as `cancel` checks.
pub async fn purge(
    ctx: &Ctx,
    path: &FieldPath,
    at: &str,
    unchecked: &Unchecked,
) -> Result<Outcome, Failure> {
    let target = ctx.target(path, unchecked).await?;
    let keys = [path.key.as_str()];
    let fetched = ctx.store.fetch(&path.namespace, &keys).await?;
    let entries = fetched.fields.get(&path.key).map_or(&[][..], Vec::as_slice);
    let unplaced = fetched
        .unplaced
        .get(&path.key)
        .map_or(&[][..], Vec::as_slice);
    // The entry: an unplaced one by its text, else one by its instant.
    let (stored_at, ms, stored, reason) = if let Some(u) = unplaced.iter().find(|u| u.at == at) {
        (u.at.clone(), None, String::new(), Some(u.reason.clone()))
    } else {
        let ms = crate::time::parse_time(at)
            .and_then(|when| when.resolve(Utc::now()))
            .map_err(|e| Failure::usage(format!("--at `{at}`: {e}")))?;
        let Some(entry) = entries.iter().find(|e| e.at == ms) else {
            let mut known: Vec<String> = entries.iter().map(|e| instant(e.at)).collect();
            known.extend(unplaced.iter().map(|u| format!("'{}'", u.at)));
            let hint = if known.is_empty() {
                "it has no entries".to_owned()
            } else {
                format!("its entries are at: {}", known.join(", "))
            };
            return Err(Failure::refused(format!(
                "`{path}` has no entry at {} to purge; {hint}; nothing was removed",
                instant(ms)
            )));
        };
        let reason = view::bad(entry, target.field.as_ref());
        (ms.to_string(), Some(ms), view::stored_text(entry), reason)
    };
    let undecodable = reason.is_some();
    ctx.store
        .purge(
            &path.namespace,
            target.tick,
            &path.key,
            &stored_at,
            undecodable,
        )
        .await
        .map_err(|e| match e {
            lockstep::Error::BeforeHorizon { .. } => Failure::refused(format!(
                "{e}; the entry decodes, so a process may be serving it: only an entry that \
                 does not decode is purged before the horizon; nothing was removed"
            )),
            e => Failure::refused(format!("{e}; nothing was removed")),
        })?;
    let shown_at = ms.map_or_else(|| stored_at.clone(), instant);
    let why = reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let value = if stored.is_empty() {
        String::new()
    } else {
        format!(" = {stored}")
    };
    Ok(Outcome::new(
        format!("purged {path}{value} at {shown_at}{why}\n"),
        json!({
            "namespace": path.namespace,
            "field": path.key,
            "purged": ms.map(instant),
            "stored_instant": ms.is_none().then_some(&stored_at),
            "stored": stored,
            "undecodable": undecodable,
            "reason": reason,
        }),
    ))
}
