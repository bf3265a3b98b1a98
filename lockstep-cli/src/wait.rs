//! `--wait`: after a write, the fleet view is read again and again until
//! every live process holds every entry of the write, or some process is
//! found that will not hold it before it activates, while the operator may
//! still cancel it.
//!
//! The decision is [`decide`], a pure function of one fleet view; the loop
//! around it ([`until_held`]) only reads the view and sleeps.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lockstep::Tick;
use lockstep::store::Fleet;
use lockstep::store::{Committed, Write, from_datetime};
use lockstep::store::{Process, Refusal};
use serde_json::{Value, json};

use crate::args::FieldPath;
use crate::context::Ctx;
use crate::failure::Failure;
use crate::outcome::Outcome;

/// The most processes that do not hold a change a text names (JSON lists
/// them all).
pub const NAMED: usize = 20;
use crate::view::{instant, relative, span};

/// A committed write, as `--wait` follows it.
#[derive(Clone, Debug)]
pub struct Written {
    /// The registry's namespace.
    pub namespace: String,
    /// The field written.
    pub field: String,
    /// The write's id: every entry it made carries it.
    pub write: String,
    /// The instant of each entry, in the write's order.
    pub instants: Vec<i64>,
    /// The registry's tick.
    pub tick: Tick,
}

impl Written {
    /// What `write` to `path` committed.
    pub fn of(path: &FieldPath, write: &Write, committed: &Committed) -> Written {
        Written {
            namespace: path.namespace.clone(),
            field: path.key.clone(),
            write: write.id().to_owned(),
            instants: committed.instants.clone(),
            tick: write.tick(),
        }
    }

    /// The first instant the write affects.
    fn first(&self) -> i64 {
        self.instants.iter().copied().min().unwrap_or(i64::MAX)
    }
}

/// How often the view is read: every fetch timeout (a quarter tick, at most
/// 5 s), and never more often than every 200 ms.
pub fn poll_every(tick: Tick) -> Duration {
    tick.fetch_timeout().max(Duration::from_millis(200))
}

/// Why a live process does not hold a write, as [`decide`] judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its last fetch is recent: its next one, due before the write
    /// activates, brings it.
    Due,
    /// It has not fetched for longer than a tick plus the fetch timeout: it
    /// missed a fetch (stopped, frozen, or cut off from the store).
    Missed {
        /// How long ago it last fetched, in ms.
        ago_ms: i64,
    },
    /// It cannot decode the write's value: its build lacks the field or
    /// cannot decode the value, or it fetched it and said it could not.
    Refused,
    /// Less than one poll remains before the write activates.
    OutOfTime,
}

/// One live process that does not hold the write.
#[derive(Clone, Debug, PartialEq)]
pub struct Lag<'a> {
    /// The process.
    pub process: &'a Process,
    /// Why.
    pub why: Why,
    /// For [`Why::Refused`], the refusal: its build and why.
    pub refusal: Option<&'a Refusal>,
}

/// What one fleet view says about a write.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict<'a> {
    /// Every one of the `of` live processes holds every entry of the write.
    Held {
        /// How many live processes there are.
        of: usize,
    },
    /// No live process reports on the registry: reporting is off, or none
    /// runs.
    Unreported,
    /// Some do not hold it yet, and each is due to fetch it in time.
    Waiting {
        /// Those that do not hold it yet.
        lagging: Vec<Lag<'a>>,
    },
    /// Some will not hold it in time: the operator should know now.
    Late {
        /// Every live process that does not hold it, with why.
        lagging: Vec<Lag<'a>>,
        /// How many live processes there are.
        of: usize,
    },
    /// None of the write's entries is pending any more: it was cancelled
    /// or replaced, or (`active`) its first instant passed.
    Gone {
        /// Whether its first instant has passed.
        active: bool,
    },
}

/// Judges one fleet view of `written`, read at `fleet.store_time`, with the
/// next view `poll` later. A process that does not hold the write is late
/// as soon as it could not hold it in time: it refused the value, or it
/// missed a fetch (none for a tick plus the fetch timeout), or less than
/// one poll remains. One whose last fetch is recent is waited for: a write
/// lands at least a tick plus the fetch timeout ahead, so that process's
/// next fetch, one tick after its last, comes before the write activates.
pub fn decide<'a>(fleet: &'a Fleet, written: &Written, poll: Duration) -> Verdict<'a> {
    let now = from_datetime(fleet.store_time);
    if fleet.processes.is_empty() {
        return Verdict::Unreported;
    }
    let entries: Vec<_> = fleet
        .pending
        .iter()
        .filter(|p| match &p.write {
            Some(id) => *id == written.write,
            None => p.field == written.field && written.instants.contains(&from_datetime(p.at)),
        })
        .collect();
    let first = written.first();
    if entries.is_empty() {
        return Verdict::Gone {
            active: now >= first,
        };
    }
    let poll_ms = i64::try_from(poll.as_millis()).unwrap_or(i64::MAX);
    let out_of_time = first.saturating_sub(now) <= poll_ms;
    // Each entry's missing processes as a set: time linear in the records,
    // not their square (100 000 records took 21-47 s as lists).
    let missing: Vec<HashSet<&str>> = entries
        .iter()
        .map(|e| e.missing.iter().map(String::as_str).collect())
        .collect();
    // Who will not serve an entry, whatever it fetches: by process id.
    let refused: HashMap<&str, &Refusal> = entries
        .iter()
        .flat_map(|e| &e.rejected)
        .flat_map(|r| r.processes.iter().map(move |id| (id.as_str(), r)))
        .collect();
    let lagging: Vec<Lag<'a>> = fleet
        .processes
        .iter()
        .filter_map(|process| {
            let lacks: Vec<_> = entries
                .iter()
                .zip(&missing)
                .filter(|(_, missing)| missing.contains(process.id.as_str()))
                .map(|(e, _)| e)
                .collect();
            if lacks.is_empty() {
                return None;
            }
            let ago_ms = now - from_datetime(process.last_fetch);
            let tick = if process.tick_ms > 0 {
                process.tick_ms
            } else {
                written.tick.as_millis()
            };
            let timeout = written.tick.fetch_timeout().as_millis() as i64;
            let refusal = refused.get(process.id.as_str()).copied();
            let why = if refusal.is_some() {
                Why::Refused
            } else if ago_ms > tick + timeout {
                Why::Missed { ago_ms }
            } else if out_of_time {
                Why::OutOfTime
            } else {
                Why::Due
            };
            Some(Lag {
                process,
                why,
                refusal,
            })
        })
        .collect();
    if lagging.is_empty() {
        Verdict::Held {
            of: fleet.processes.len(),
        }
    } else if lagging.iter().all(|l| l.why == Why::Due) {
        Verdict::Waiting { lagging }
    } else {
        Verdict::Late {
            lagging,
            of: fleet.processes.len(),
        }
    }
}

/// Reads the fleet view of `written`'s registry until [`decide`] is sure.
/// The outcome says so (its JSON is what `--wait` adds to the write's, its
/// text empty on a failure); the failure, when some live process will not
/// hold the write in time, names them with the commands that cancel it.
pub async fn until_held(ctx: &Ctx, written: &Written) -> (Outcome, Option<Failure>) {
    let keys = [written.field.as_str()];
    let poll = poll_every(written.tick);
    loop {
        let tick = Some(written.tick);
        let fleet = match lockstep::store::fleet(&*ctx.store, &written.namespace, &keys, tick).await
        {
            Ok(fleet) => fleet,
            Err(e) => {
                let message = format!(
                    "the write is committed, but the fleet view of `{}` cannot be read: {e}",
                    written.namespace
                );
                let json = json!({"error": message});
                return (Outcome::new("", json), Some(Failure::refused(message)));
            }
        };
        let now = from_datetime(fleet.store_time);
        return match decide(&fleet, written, poll) {
            Verdict::Waiting { .. } => {
                tokio::time::sleep(poll).await;
                continue;
            }
            Verdict::Held { of } => (held(written, of, now), None),
            Verdict::Unreported => (unreported(written), None),
            Verdict::Late { lagging, of } => {
                let json = late_json(&lagging, of);
                let failure = late(written, &lagging, of, now);
                (Outcome::new("", json), Some(failure))
            }
            Verdict::Gone { active } => (
                Outcome::new("", json!({"gone": true, "active": active})),
                Some(gone(written, active)),
            ),
        };
    }
}

/// The JSON `--wait` adds to the write's own.
fn wait_json(held_by: usize, of: usize, reporting: bool) -> Value {
    json!({"held_by": held_by, "of": of, "reporting": reporting})
}

fn late_json(lagging: &[Lag], of: usize) -> Value {
    let missing: Vec<Value> = lagging
        .iter()
        .map(|l| {
            let why = match l.why {
                Why::Due => "due",
                Why::Missed { .. } => "missed a fetch",
                Why::Refused => "cannot decode it",
                Why::OutOfTime => "out of time",
            };
            let mut process = json!({"id": l.process.id, "host": l.process.host,
                   "pid": l.process.pid, "program": l.process.program, "why": why});
            if let Some(refusal) = l.refusal {
                process["build"] = json!(refusal.build);
                process["reason"] = json!(refusal.reason);
            }
            process
        })
        .collect();
    let mut out = wait_json(of - lagging.len(), of, true);
    out["missing"] = Value::Array(missing);
    out
}

fn held(written: &Written, of: usize, now: i64) -> Outcome {
    let first = written.first();
    Outcome::new(
        format!(
            "held by all {of} live process{} of `{}`, {} before it activates\n",
            if of == 1 { "" } else { "es" },
            written.namespace,
            span(first - now)
        ),
        wait_json(of, of, true),
    )
}

fn unreported(written: &Written) -> Outcome {
    Outcome::new(
        format!(
            "no live process reports on `{}` (reporting is off, or none is running): nobody to \
             wait for\n",
            written.namespace
        ),
        wait_json(0, 0, false),
    )
}

/// What a lagging process shows as: its name and why.
fn lag_text(lag: &Lag, tick: Tick) -> String {
    let why = match lag.why {
        Why::Due => "not fetched since the write; due to fetch before it activates".to_owned(),
        Why::Missed { ago_ms } => format!(
            "last fetched {} ago, longer than a tick ({tick}) plus the fetch timeout: it missed \
             a fetch (stopped, frozen, or cut off from the store)",
            span(ago_ms)
        ),
        Why::Refused => match lag.refusal {
            Some(refusal) => format!("rejects it ({}): {}", refusal.build, refusal.reason),
            None => "cannot decode its value".to_owned(),
        },
        Why::OutOfTime => {
            "not fetched since the write, and it activates before the next look".to_owned()
        }
    };
    format!("  {}: {why}\n", lag.process.name())
}

/// The cancel commands of the write's entries that may still be cancelled.
fn cancel_hint(written: &Written, now: i64) -> String {
    let horizon = written.tick.horizon(now);
    let path = format!("{}.{}", written.namespace, written.field);
    let commands: Vec<String> = written
        .instants
        .iter()
        .filter(|at| **at >= horizon)
        .map(|at| format!("  lockstep cancel {path} --at {}\n", instant(*at)))
        .collect();
    if commands.is_empty() {
        format!(
            "it is too close to cancel (the horizon is {}): the processes named apply it at \
             their next fetch, counted as a late flip\n",
            instant(horizon)
        )
    } else {
        format!(
            "to cancel it, before the horizon (now {}) passes its instant:\n{}",
            instant(horizon),
            commands.concat()
        )
    }
}

fn late(written: &Written, lagging: &[Lag], of: usize, now: i64) -> Failure {
    let first = written.first();
    let mut names: String = lagging
        .iter()
        .take(NAMED)
        .map(|l| lag_text(l, written.tick))
        .collect();
    if lagging.len() > NAMED {
        names.push_str(&format!(
            "  and {} more (`lockstep fleet {}` or `--json` lists them all)\n",
            lagging.len() - NAMED,
            written.namespace
        ));
    }
    Failure::refused(format!(
        "{} of {of} live processes of `{}` {} not hold the write at {} ({}):\n{names}{}",
        lagging.len(),
        written.namespace,
        if lagging.len() == 1 { "does" } else { "do" },
        instant(first),
        relative(first, now),
        cancel_hint(written, now).trim_end()
    ))
}

fn gone(written: &Written, active: bool) -> Failure {
    let path = format!("{}.{}", written.namespace, written.field);
    Failure::refused(if active {
        format!(
            "the write to {path} activated at {} before every live process was seen holding it \
             (see `lockstep fleet {}`)",
            instant(written.first()),
            written.namespace
        )
    } else {
        format!(
            "the write to {path} is no longer pending: it was cancelled, or replaced by a later \
             write at the same instant (see `lockstep history {path}`)"
        )
    })
}

#[cfg(test)]
mod tests;
