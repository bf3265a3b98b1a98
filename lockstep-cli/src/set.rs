//! `set` and `ramp`: the commands that schedule values, each checked
//! against the published schema, the live builds and the horizon first,
//! planned (the console plans them too) and then committed.

use std::time::Duration;

use chrono::Utc;
use lockstep::Tick;
use lockstep::store::{Committed, MAX_INSTANT, MAX_STEPS, Write};
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
