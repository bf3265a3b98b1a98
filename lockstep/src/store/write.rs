//! Writes as stores receive them, and the one builder every path makes them
//! with: the typed [`Change`](crate::Change) of a registry, the `lockstep`
//! command, tools and tests.
//!
//! The builder checks everything a store would otherwise find out too late
//! (names, empty steps, the size of each value, instants past what every
//! path can read back, the number of steps), so a refused write is refused
//! before it reaches the store, and writes nothing.

use std::time::Duration;

use crate::error::Error;
use crate::this_process::{host_name, program_name};
use crate::tick::{Millis, Tick, to_datetime};
use crate::value::MAX_VALUE_BYTES;

use super::stored::check_name;

/// The latest instant a write may name: the last millisecond of the year
/// 9999, the last instant every path (RFC 3339 in the CLI, `TIMESTAMPTZ`,
/// chrono) reads back as it was written.
pub const MAX_INSTANT: Millis = 253_402_300_799_999;

/// The most steps one write may hold. A fetch ships every pending entry to
/// every process at every tick, so a ramp of thousands of steps would cost
/// every fetch of the registry; 1000 steps is a ramp of one step a tick for
/// over 16 hours at a tick of one minute.
pub const MAX_STEPS: usize = 1000;

/// A write: one or more steps, each a set of field values for one instant.
/// Made with [`Write::builder`], the one gate: a built write holds only
/// names a store can keep, values within the size limit and instants it can
/// write, and cannot be changed after; stores read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    namespace: String,
    tick: Tick,
    id: String,
    by: String,
    steps: Vec<Step>,
}

impl Write {
    /// The registry's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The registry's tick, which sets the horizon and the grid.
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// A unique id: a retried write with the same id takes effect once.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who writes, for history (e.g. `app pid 42 on web-1`, `cli root@ops`).
    pub fn by(&self) -> &str {
        &self.by
    }

    /// The steps, each with its instant, in the order they were built.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// Values of several fields that activate together.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    at: StepAt,
    values: Vec<(String, String)>,
}

impl Step {
    /// When.
    pub fn at(&self) -> StepAt {
        self.at
    }

    /// `(field, JSON text)` pairs, one a field.
    pub fn values(&self) -> &[(String, String)] {
        &self.values
    }
}

/// When a [`Step`] activates.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StepAt {
    /// `after` milliseconds past the horizon, rounded up to a tick boundary.
    Horizon {
        /// The offset from the horizon.
        after: Millis,
    },
    /// This instant rounded up to a tick boundary; refused if before the
    /// horizon.
    At(Millis),
}

/// What a commit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The instant each step takes effect, in the write's order.
    pub instants: Vec<Millis>,
    /// The replicas (`host:port`) that did not acknowledge the write a tick
    /// before its first instant, with a store read through replicas
    /// (`redis://…?replicas=…`): the write stands on the primary, but a
    /// process reading such a replica falls back to another server only if
    /// the replica's link to the primary is down. Empty for every other
    /// store.
    pub lagging: Vec<String>,
}

impl Committed {
    /// A commit that took effect at `instants`, with no replica lagging.
    ///
    /// ```
    /// let committed = lockstep::store::Committed::at(vec![1_000]);
    /// assert!(committed.lagging.is_empty());
    /// ```
    pub fn at(instants: Vec<Millis>) -> Committed {
        Committed {
            instants,
            lagging: Vec::new(),
        }
    }
}

impl Write {
    /// Starts a write to the registry `namespace` whose tick is `tick`: one
    /// step at the horizon, by this process (see [`WriteBuilder::by`]).
    ///
    /// ```
    /// use lockstep::store::{StepAt, Write};
    /// use serde_json::json;
    ///
    /// let tick = lockstep::Tick::from_secs(10).unwrap();
    /// // A ramp: 10 % at the horizon, 50 % one tick later.
    /// let write = Write::builder("flags", tick)
    ///     .set("rollout", json!(10))
    ///     .then_after(tick.as_duration())
    ///     .set("rollout", json!(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(write.steps().len(), 2);
    /// assert_eq!(write.steps()[1].at(), StepAt::Horizon { after: 10_000 });
    /// assert_eq!(write.steps()[1].values(), [("rollout".to_owned(), "50".to_owned())]);
    ///
    /// // What a store would refuse is refused here, before any store sees it.
    /// let huge = json!("x".repeat(lockstep::MAX_VALUE_BYTES));
    /// assert!(Write::builder("flags", tick).set("banner", huge).build().is_err());
    /// assert!(Write::builder("flags", tick).build().is_err()); // nothing set
    /// ```
    pub fn builder(namespace: impl Into<String>, tick: Tick) -> WriteBuilder {
        WriteBuilder {
            write: Write {
                namespace: namespace.into(),
                tick,
                id: new_write_id(),
                by: String::new(),
                steps: vec![Step {
                    at: StepAt::Horizon { after: 0 },
                    values: Vec::new(),
                }],
            },
            error: None,
        }
    }
}

/// A [`Write`] being built; from [`Write::builder`]. Each setter works on
/// the current step; `then_*` starts the next one. The first mistake is
/// kept and returned by [`build`](WriteBuilder::build).
#[derive(Debug)]
#[must_use = "a write builder does nothing until `.build()`"]
pub struct WriteBuilder {
    write: Write,
    error: Option<Error>,
}

impl WriteBuilder {
    fn current(&mut self) -> &mut Step {
        // `steps` always holds at least one step.
        let last = self.write.steps().len() - 1;
        &mut self.write.steps[last]
    }

    fn fail(&mut self, error: Error) {
        self.error.get_or_insert(error);
    }

    /// Keeps `error` for [`build`](WriteBuilder::build), unless an earlier
    /// one is kept already.
    pub(crate) fn fail_with(mut self, error: Error) -> Self {
        self.fail(error);
        self
    }

    /// Sets `key` to `value` in the current step, replacing an earlier value
    /// of `key` in that step. The value must be at most
    /// [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES) of JSON; what it must be
    /// for the field's type is the caller's business (the typed
    /// [`Change`](crate::Change) checks it, the `lockstep` command checks it
    /// against the published schema).
    pub fn set(self, key: impl Into<String>, value: serde_json::Value) -> Self {
        let text = value.to_string();
        self.set_text(key, text)
    }

    /// Sets `key` to the text `json` exactly as given, unchecked: for a tool
    /// that holds a value already encoded (by another language's writer, a
    /// file), and for tests that plant a value a registry cannot decode (it
    /// rejects it for its field alone). The size limit holds as for
    /// [`set`](WriteBuilder::set).
    ///
    /// ```
    /// let tick = lockstep::Tick::from_secs(10).unwrap();
    /// let write = lockstep::store::Write::builder("flags", tick)
    ///     .set_text("rollout", "not json")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(write.steps()[0].values()[0].1, "not json");
    /// ```
    pub fn set_text(mut self, key: impl Into<String>, json: impl Into<String>) -> Self {
        let (key, json) = (key.into(), json.into());
        if json.len() > MAX_VALUE_BYTES {
            let error = Error::InvalidValue {
                namespace: self.write.namespace().to_owned(),
                key,
                reason: format!(
                    "it is {} bytes of JSON; values are at most {MAX_VALUE_BYTES} bytes",
                    json.len()
                ),
            };
            self.fail(error);
            return self;
        }
        let step = self.current();
        step.values.retain(|(k, _)| *k != key);
        step.values.push((key, json));
        self
    }

    /// Schedules the current step as `when` says.
    pub fn when(mut self, when: StepAt) -> Self {
        self.current().at = when;
        self
    }

    /// Starts a new step, scheduled as `when` says.
    pub fn then(mut self, when: StepAt) -> Self {
        self.write.steps.push(Step {
            at: when,
            values: Vec::new(),
        });
        self
    }

    /// Schedules the current step at `at` (milliseconds since the Unix
    /// epoch) rounded up to a tick boundary, instead of at the horizon; the
    /// store refuses it if that is before the horizon.
    pub fn at(self, at: Millis) -> Self {
        self.when(StepAt::At(at))
    }

    /// Schedules the current step `after` past the horizon, rounded up to a
    /// tick boundary.
    pub fn after_horizon(self, after: Duration) -> Self {
        self.when(StepAt::Horizon {
            after: millis(after),
        })
    }

    /// Starts a new step at `at`.
    pub fn then_at(self, at: Millis) -> Self {
        self.then(StepAt::At(at))
    }

    /// Starts a new step `after` the previous one, which must be a whole
    /// number of ticks: any other spacing is refused at
    /// [`build`](WriteBuilder::build) ([`Error::NotWholeTicks`], naming the
    /// whole-tick spacings around it), as it could not land where asked.
    pub fn then_after(mut self, after: Duration) -> Self {
        if let Some((below, above)) = self.write.tick().whole_ticks_around(after) {
            let error = Error::NotWholeTicks {
                namespace: self.write.namespace().to_owned(),
                after,
                tick: self.write.tick(),
                below,
                above,
            };
            self.fail(error);
        }
        let after = millis(after);
        let at = match self.current().at {
            StepAt::Horizon { after: previous } => StepAt::Horizon {
                after: previous.saturating_add(after),
            },
            StepAt::At(previous) => StepAt::At(previous.saturating_add(after)),
        };
        self.then(at)
    }

    /// Who writes, as history shows it (default: the program, its pid and
    /// this machine's name, e.g. `shop pid 42 on web-1`).
    pub fn by(mut self, by: impl Into<String>) -> Self {
        self.write.by = by.into();
        self
    }

    /// Who writes, as a person using a tool: `{tool} {user}@{host}` with
    /// this machine's name (the `lockstep` command writes as `cli
    /// root@ops-1`).
    pub fn by_user(self, tool: &str, user: &str) -> Self {
        let by = format!("{tool} {user}@{}", host_name());
        self.by(by)
    }

    /// The write's id, for a write retried after an unanswered commit: a
    /// store applies a write id once (default: a fresh random id).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.write.id = id.into();
        self
    }

    /// The write, or the first thing wrong with it: a namespace or key the
    /// store layout cannot hold, a step that sets nothing, a value over the
    /// size limit, an instant past [`MAX_INSTANT`], more than [`MAX_STEPS`]
    /// steps.
    pub fn build(mut self) -> Result<Write, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let write = &mut self.write;
        check_name("namespace", write.namespace())?;
        check_name("write id", write.id())?;
        if write.steps().iter().any(|s| s.values.is_empty()) {
            return Err(Error::EmptyWrite {
                namespace: write.namespace().to_owned(),
            });
        }
        if write.steps().len() > MAX_STEPS {
            return Err(Error::TooManySteps {
                namespace: write.namespace().to_owned(),
                steps: write.steps().len(),
                max: MAX_STEPS,
            });
        }
        for step in write.steps() {
            for (key, _) in step.values() {
                check_name("key", key)?;
            }
            // Where the step lands: its instant rounded up to a tick
            // boundary (the horizon is at most two ticks from now).
            let latest = write.tick().ceil(match step.at() {
                StepAt::At(at) => at,
                StepAt::Horizon { after } => crate::tick::now_millis()
                    .saturating_add(2 * write.tick().as_millis())
                    .saturating_add(after),
            });
            if latest > MAX_INSTANT {
                return Err(Error::TooLate {
                    namespace: write.namespace().to_owned(),
                    latest: to_datetime(MAX_INSTANT),
                });
            }
        }
        if write.by().is_empty() {
            write.by = writer_name();
        }
        Ok(self.write)
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A fresh id (of a write, an epoch): 128 random bits in hex.
pub(crate) fn new_write_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Who this process is, for the history of its writes.
fn writer_name() -> String {
    format!(
        "{} pid {} on {}",
        program_name(),
        std::process::id(),
        host_name()
    )
}

/// Resolves the instants of `write`'s steps against the horizon of `now`,
/// refusing any before it. Stores whose transaction runs in Rust call it in
/// the transaction; script-based stores do the same arithmetic in the store.
pub fn resolve_instants(write: &Write, now: Millis) -> Result<Vec<Millis>, Error> {
    let horizon = write.tick().horizon(now);
    write
        .steps
        .iter()
        .map(|step| match step.at() {
            StepAt::Horizon { after } => {
                Ok(write.tick().ceil(horizon.saturating_add(after.max(0))))
            }
            StepAt::At(at) => {
                let at = write.tick().ceil(at);
                if at < horizon {
                    Err(Error::BeforeHorizon {
                        namespace: write.namespace().to_owned(),
                        requested: to_datetime(at),
                        earliest: to_datetime(horizon),
                        tick: write.tick(),
                    })
                } else {
                    Ok(at)
                }
            }
        })
        .collect()
}

/// Refuses a commit that would take the values of the pending entries of
/// `namespace` beyond [`MAX_PENDING_BYTES`](super::stored::MAX_PENDING_BYTES): they
/// hold `before` bytes, and the write replaces `replaced` of them and adds
/// `added`. A write that does not grow them passes, however many there are;
/// so does one of at most [`SMALL_WRITE_BYTES`](super::stored::SMALL_WRITE_BYTES)
/// to a registry already beyond the bound (data planted by hand, or
/// written by an older lockstep), so that its kill switch can still be
/// flipped.
pub(crate) fn check_pending(
    namespace: &str,
    before: u64,
    replaced: u64,
    added: u64,
) -> Result<(), Error> {
    let limit = super::stored::MAX_PENDING_BYTES;
    let after = before.saturating_sub(replaced).saturating_add(added);
    let small_to_full = before > limit && added <= super::stored::SMALL_WRITE_BYTES;
    if after > limit && after > before && !small_to_full {
        return Err(Error::TooMuchPending {
            namespace: namespace.to_owned(),
            pending: after,
            limit: super::stored::MAX_PENDING_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
