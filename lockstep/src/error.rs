//! The one error type of lockstep.

use chrono::{DateTime, Utc};

use crate::tick::Tick;

/// A build that cannot decode a value: who, and why ([`Error::NotServed`],
/// and the fleet view's pending changes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Refusal {
    /// The build, as messages name it (its digest's first 8 digits, its
    /// process count and programs).
    pub build: String,
    /// The ids of its live processes that will not serve the value.
    pub processes: Vec<String>,
    /// Why: a field it lacks, a value outside its type, or a process that
    /// reported it could not decode it.
    pub reason: String,
}

/// Everything that can go wrong when starting a registry or writing to it.
///
/// Reading a field never fails; a value the process cannot decode is not an
/// error here but a rejection counted in [`Status`](crate::Status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write asked for an instant before the horizon (or in the past).
    #[error("{}", too_soon(namespace, requested, earliest, tick))]
    BeforeHorizon {
        /// The registry's namespace.
        namespace: String,
        /// The instant asked for, rounded up to a tick boundary.
        requested: DateTime<Utc>,
        /// The horizon: the earliest instant allowed.
        earliest: DateTime<Utc>,
        /// The registry's tick.
        tick: Tick,
    },
    /// A write named a field the registry does not have.
    #[error("registry `{namespace}` has no field `{key}`; its fields are: {known}")]
    UnknownField {
        /// The registry's namespace.
        namespace: String,
        /// The key asked for.
        key: String,
        /// The keys the registry has, comma-separated.
        known: String,
    },
    /// A cancel named an entry that is not there.
    #[error("`{namespace}.{key}` has no entry at {at} to cancel")]
    NoSuchEntry {
        /// The registry's namespace.
        namespace: String,
        /// The field's key.
        key: String,
        /// The instant asked for.
        at: DateTime<Utc>,
    },
    /// A value that would not read back as the field's type.
    #[error("the value for `{namespace}.{key}` cannot be stored: {reason}")]
    InvalidValue {
        /// The registry's namespace.
        namespace: String,
        /// The field's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A namespace or key the store layout cannot hold.
    #[error("{what} `{name}` is not allowed: use 1 to 100 ASCII letters, digits, `_` and `-`")]
    InvalidName {
        /// `namespace` or `key`.
        what: String,
        /// The name given.
        name: String,
    },
    /// A write with nothing in it.
    #[error("a write to `{namespace}` must set at least one field")]
    EmptyWrite {
        /// The registry's namespace.
        namespace: String,
    },
    /// A step spaced from the previous one by a duration that is not a
    /// whole number of ticks (it would land on another boundary than the
    /// one asked for).
    #[error("{}", not_whole(namespace, after, tick, below, above))]
    NotWholeTicks {
        /// The registry's namespace.
        namespace: String,
        /// The spacing asked for.
        after: std::time::Duration,
        /// The registry's tick.
        tick: Tick,
        /// The whole number of ticks just below it (zero if below a tick).
        below: std::time::Duration,
        /// The whole number of ticks just above it.
        above: std::time::Duration,
    },
    /// A write with more steps than [`MAX_STEPS`](crate::store::MAX_STEPS).
    #[error(
        "a write to `{namespace}` has {steps} steps; a write holds at most {max} (every fetch \
         ships every pending entry), so split it or space the steps wider"
    )]
    TooManySteps {
        /// The registry's namespace.
        namespace: String,
        /// How many steps the write has.
        steps: usize,
        /// The most allowed.
        max: usize,
    },
    /// A write naming an instant past [`MAX_INSTANT`](crate::store::MAX_INSTANT).
    #[error("a write to `{namespace}` names an instant after {latest}, the latest allowed")]
    TooLate {
        /// The registry's namespace.
        namespace: String,
        /// The latest instant allowed.
        latest: DateTime<Utc>,
    },
    /// A write some live build of the registry cannot decode (promise 17):
    /// during a rolling deploy, a field one build lacks or a value outside
    /// its type. Nothing was written; a writer may force it (then those
    /// processes keep serving what they hold, and the fleet view says so).
    #[error("{}", not_served(namespace, key, value, refusals))]
    NotServed {
        /// The registry's namespace.
        namespace: String,
        /// The field.
        key: String,
        /// The value, as JSON.
        value: String,
        /// Each build that cannot decode it: which processes, and why.
        refusals: Vec<Refusal>,
    },
    /// A write that would take the values of a registry's pending entries
    /// beyond [`MAX_PENDING_BYTES`](crate::store::driver::MAX_PENDING_BYTES).
    #[error(
        "a write to `{namespace}` would bring the values of its pending entries to {pending} \
         bytes, over the {limit} bytes one registry may hold pending (every process fetches \
         them all); cancel or purge pending entries, or write fewer or smaller values; nothing \
         was written"
    )]
    TooMuchPending {
        /// The registry's namespace.
        namespace: String,
        /// The bytes its pending entries' values would hold after the write.
        pending: u64,
        /// The most allowed.
        limit: u64,
    },
    /// `start` was called twice.
    #[error("registry `{namespace}` is already started")]
    AlreadyStarted {
        /// The registry's namespace.
        namespace: String,
    },
    /// A write through a registry that was not started.
    #[error("registry `{namespace}` is not started: call `.start().await` on it first")]
    NotStarted {
        /// The registry's namespace.
        namespace: String,
    },
    /// `start` was called outside a Tokio runtime.
    #[error("lockstep needs a Tokio runtime: call `start()` from within one")]
    NoRuntime,
    /// A store URL lockstep cannot use. The URL is shown without its password.
    #[error("store URL `{url}`: {reason}")]
    Url {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What is wrong with it, and what is accepted.
        reason: String,
    },
    /// The store refused this process for a reason retrying cannot fix:
    /// credentials refused, permission denied, no such database or schema, a
    /// certificate refused. `start` fails with it at once.
    #[error("store {store} refused: {message}")]
    Misconfigured {
        /// The store, its password replaced by `***`.
        store: String,
        /// The store's reason, and what to check.
        message: String,
    },
    /// The store failed or could not be reached.
    #[error("store {store}: {message}")]
    Store {
        /// The store, its password replaced by `***`.
        store: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whether retrying may help: a store that is down, slow or loading. A
    /// misconfiguration, a bad URL or a refused write is not transient.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store { .. })
    }
}

/// The message of [`Error::BeforeHorizon`]: an instant in the past is
/// called so, one merely too soon names the earliest allowed.
fn too_soon(
    namespace: &str,
    requested: &DateTime<Utc>,
    earliest: &DateTime<Utc>,
    tick: &Tick,
) -> String {
    let why = format!(
        "the earliest instant a write made now may affect is {earliest} (one tick of {tick} \
         plus the fetch timeout, rounded up to a tick boundary); schedule it at or after that \
         instant"
    );
    if *requested < Utc::now() {
        format!("{requested} is too soon for `{namespace}` (it is in the past): {why}")
    } else {
        format!("{requested} is too soon for `{namespace}`: {why}")
    }
}

/// The message of [`Error::NotServed`]: the value, then each build that
/// cannot decode it with its processes and why.
fn not_served(namespace: &str, key: &str, value: &str, refusals: &[Refusal]) -> String {
    let builds: Vec<String> = refusals
        .iter()
        .map(|r| format!("{}: {}", r.build, r.reason))
        .collect();
    let value: String = if value.chars().count() > 60 {
        value.chars().take(57).chain("…".chars()).collect()
    } else {
        value.to_owned()
    };
    format!(
        "`{namespace}.{key}` = {value} would not be served by every live build of `{namespace}` \
         (a rolling deploy runs several): {}; nothing was written",
        builds.join("; ")
    )
}

/// The message of [`Error::NotWholeTicks`].
fn not_whole(
    namespace: &str,
    after: &std::time::Duration,
    tick: &Tick,
    below: &std::time::Duration,
    above: &std::time::Duration,
) -> String {
    let show = |d: &std::time::Duration| humantime::format_duration(*d).to_string();
    let choices = if below.is_zero() {
        show(above)
    } else {
        format!("{} or {}", show(below), show(above))
    };
    format!(
        "a step of `{namespace}` {} after the previous one is not a whole number of ticks \
         (the tick is {tick}): every change lands on a tick boundary, so it would not be {} \
         after it; use {choices}; nothing was written",
        show(after),
        show(after)
    )
}
