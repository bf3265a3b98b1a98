//! `set`, `ramp`, `cancel` and `purge`: the commands that change a store,
//! each checked against the published schema and the horizon first.

use std::time::Duration;

use chrono::Utc;
use lockstep::Tick;
use lockstep::store::{Committed, Fetched, MAX_INSTANT, MAX_STEPS, Write};
use serde_json::{Value, json};

use crate::args::{FieldPath, Unchecked, When};
use crate::context::{Ctx, store_now, user};
use crate::failure::{Failure, write_failure};
use crate::outcome::Outcome;
use crate::value;
use crate::view::{self, instant, relative, table};
use crate::wait::Written;

/// `TIME` as an instant, or a refusal that says what is accepted; `last`
/// is how far after it the write's last step lands (a ramp's length). The
/// store rounds instants up to a tick boundary: that too must be no later
/// than 9999-12-31T23:59:59.999Z.
fn resolve(when: When, option: &str, tick: Tick, last: Duration) -> Result<i64, Failure> {
    let at = when
        .resolve_future(Utc::now())
        .map_err(|e| Failure::refused(format!("{option}: {e}; nothing was written")))?;
    let last_ms = i64::try_from(last.as_millis()).unwrap_or(i64::MAX);
    let end = tick.ceil(at).saturating_add(last_ms);
    if end > MAX_INSTANT {
        return Err(Failure::refused(format!(
            "{option}: {}, rounded up to a tick boundary ({tick}){}, is after \
             9999-12-31T23:59:59.999Z, the latest lockstep accepts; expected an instant \
             that lands at or before it; nothing was written",
            instant(at),
            if last.is_zero() {
                ""
            } else {
                " with the ramp's steps after it"
            }
        )));
    }
    Ok(at)
}

/// A write checked against the published schema and the horizon, not yet
/// committed: what `set` and `ramp` on the command line and the console's
/// forms build, with the same checks (one function per write).
pub struct Planned {
    /// The field written.
    pub path: FieldPath,
    /// The write, as the store will get it.
    pub write: Write,
    /// The values, in the write's order (one per step).
    pub values: Vec<Value>,
    /// What to warn of once committed (see [`crate::context::Target::check`]).
    pub warning: Option<String>,
}

/// The instants a planned write would take, by the store's clock now.
#[cfg_attr(not(feature = "console"), allow(dead_code))]
pub struct Preview {
    /// The store's clock.
    pub now: i64,
    /// The horizon: the earliest instant a write may touch.
    pub horizon: i64,
    /// The instant of each step, in the write's order.
    pub instants: Vec<i64>,
}

/// `set`'s write: one value, at the horizon or at `at`; `tool` names the
/// writer in the history (`cli`, `console`).
pub async fn plan_set(
    ctx: &Ctx,
    path: &FieldPath,
    text: &str,
    at: Option<When>,
    unchecked: &Unchecked,
    tool: &str,
) -> Result<Planned, Failure> {
    let target = ctx.target(path, unchecked).await?;
    let name = target.name(path);
    let value = target
        .read(text, value::parse)
        .map_err(|e| Failure::refused(format!("{name}: {e}; nothing was written")))?;
    let mut write = Write::builder(&path.namespace, target.tick)
        .by_user(tool, &user())
        .set(&path.key, value.clone());
    if let Some(when) = at {
        write = write.at(resolve(when, "--at", target.tick, Duration::ZERO)?);
    }
    let write = write.build().map_err(write_failure)?;
    let warning = target.check(&write)?;
    Ok(Planned {
        path: path.clone(),
        write,
        values: vec![value],
        warning,
    })
}

/// `ramp`'s write: several entries in one atomic write, `every` apart
/// (a tick by default), from `from` (the horizon by default).
pub async fn plan_ramp(
    ctx: &Ctx,
    path: &FieldPath,
    text: &str,
    every: Option<Duration>,
    from: Option<When>,
    unchecked: &Unchecked,
    tool: &str,
) -> Result<Planned, Failure> {
    let target = ctx.target(path, unchecked).await?;
    let name = target.name(path);
    let values = target
        .read(text, value::parse_list)
        .map_err(|e| Failure::refused(format!("{name}: {e}; nothing was written")))?;
    if values.len() > MAX_STEPS {
        return Err(Failure::refused(format!(
            "a ramp of {} values is too long: one write holds at most {MAX_STEPS} steps (every \
             fetch ships every pending entry to every process); split it into ramps of at most \
             {MAX_STEPS} values, each with its own --from; nothing was written",
            values.len()
        )));
    }
    let every = every.unwrap_or(target.tick.as_duration());
    if every < target.tick.as_duration() {
        return Err(Failure::refused(format!(
            "--every {} is shorter than the tick of `{}` ({}): entries would fall on the \
             same tick boundary; nothing was written",
            humantime::format_duration(every),
            path.namespace,
            target.tick
        )));
    }
    if let Some((below, above)) = target.tick.whole_ticks_around(every) {
        return Err(Failure::refused(format!(
            "--every {} is not a whole number of ticks of `{}` (the tick is {}): every entry \
             lands on a tick boundary, so they would not be {0} apart; use --every {} or {}; \
             nothing was written",
            humantime::format_duration(every),
            path.namespace,
            target.tick,
            humantime::format_duration(below),
            humantime::format_duration(above),
        )));
    }
    let mut write = Write::builder(&path.namespace, target.tick).by_user(tool, &user());
    if let Some(from) = from {
        let steps = u32::try_from(values.len() - 1).unwrap_or(u32::MAX);
        write = write.at(resolve(from, "--from", target.tick, every * steps)?);
    }
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            write = write.then_after(every);
        }
        write = write.set(&path.key, value.clone());
    }
    let write = write.build().map_err(write_failure)?;
    let warning = target.check(&write)?;
    Ok(Planned {
        path: path.clone(),
        write,
        values,
        warning,
    })
}

impl Planned {
    /// The instants the write would take if committed now, by the store's
    /// clock; refused as the store would refuse it (an instant before the
    /// horizon). Writes nothing.
    #[cfg_attr(not(feature = "console"), allow(dead_code))]
    pub async fn preview(&self, ctx: &Ctx) -> Result<Preview, Failure> {
        let keys = [self.path.key.as_str()];
        let fetched = ctx.store.fetch(&self.path.namespace, &keys).await?;
        let now = store_now(&fetched);
        let instants =
            lockstep::store::driver::resolve_instants(&self.write, now).map_err(write_failure)?;
        Ok(Preview {
            now,
            horizon: self.write.tick().horizon(now),
            instants,
        })
    }

    /// Commits the write.
    pub async fn commit(&self, ctx: &Ctx) -> Result<Committed, Failure> {
        let committed = ctx.store.commit(&self.write).await.map_err(write_failure)?;
        warn_if_lagging(&committed);
        if let Some(warning) = &self.warning {
            crate::outcome::warn(warning);
        }
        Ok(committed)
    }
}

/// `set`: one value, at the horizon or at `--at`.
pub async fn set(
    ctx: &Ctx,
    path: &FieldPath,
    text: &str,
    at: Option<When>,
    unchecked: &Unchecked,
) -> Result<(Outcome, Written), Failure> {
    let planned = plan_set(ctx, path, text, at, unchecked, "cli").await?;
    let committed = planned.commit(ctx).await?;
    let (write, value) = (&planned.write, &planned.values[0]);
    let at = committed.instants[0];
    let now = Utc::now().timestamp_millis();
    let written = Written::of(&planned.path, write, &committed);
    let outcome = Outcome::new(
        format!(
            "{path} = {} at {} ({})\n",
            view::short(&value.to_string()),
            instant(at),
            relative(at, now)
        ),
        json!({
            "namespace": path.namespace,
            "field": path.key,
            "value": value,
            "at": instant(at),
            "write": write.id(),
        }),
    );
    Ok((outcome, written))
}

/// `ramp`: several entries in one atomic write, `--every` apart.
pub async fn ramp(
    ctx: &Ctx,
    path: &FieldPath,
    text: &str,
    every: Option<Duration>,
    from: Option<When>,
    unchecked: &Unchecked,
) -> Result<(Outcome, Written), Failure> {
    let planned = plan_ramp(ctx, path, text, every, from, unchecked, "cli").await?;
    let committed = planned.commit(ctx).await?;
    let (write, values) = (&planned.write, &planned.values);
    let now = Utc::now().timestamp_millis();
    let entries: Vec<Value> = values
        .iter()
        .zip(&committed.instants)
        .map(|(v, at)| json!({"value": v, "at": instant(*at)}))
        .collect();
    let rows: Vec<Vec<String>> = values
        .iter()
        .zip(&committed.instants)
        .map(|(v, at)| {
            vec![
                view::short(&v.to_string()),
                format!("at {}", instant(*at)),
                format!("({})", relative(*at, now)),
            ]
        })
        .collect();
    let outcome = Outcome::new(
        format!(
            "{path}: {} entries in one write\n{}",
            values.len(),
            table(&rows, "  ")
        ),
        json!({"namespace": path.namespace, "field": path.key, "entries": entries,
               "write": write.id()}),
    );
    Ok((outcome, Written::of(&planned.path, write, &committed)))
}

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

/// Tells on standard error which replicas did not acknowledge a write in
/// time (`?replicas=` URLs): the write stands.
fn warn_if_lagging(committed: &lockstep::store::Committed) {
    if !committed.lagging.is_empty() {
        crate::outcome::warn(&format!(
            "warning: the write stands on the primary, but the replicas {} did not acknowledge \
             it a tick before its first instant: a process reading one may serve the old value \
             after the instant unless the replica catches up (check its link to the primary)",
            committed.lagging.join(", ")
        ));
    }
}
