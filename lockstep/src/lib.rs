//! Values a whole fleet reads on every request, and that change everywhere
//! at the same instant.
//!
//! A rollout percentage, a kill switch, a limit: hard-coding them costs a
//! deploy per change, reading them from a database costs a round trip per
//! request. Lockstep keeps them in a shared store, in every process's memory,
//! and has every process switch at the same instant:
//!
//! ```
//! use lockstep::lockstep;
//!
//! #[lockstep(tick = "10m", store = "memory")]
//! pub struct Flags {
//!     /// Share of traffic that sees foobar, in percent.
//!     #[lockstep(default = 0)]
//!     pub foobar_percent: u8,
//!     #[lockstep(default = "classic")]
//!     pub theme: String,
//!     pub maintenance: bool, // no default: Default::default()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockstep::Error> {
//! FLAGS.start().await?;
//! // anywhere, on the hot path: as cheap as reading an atomic
//! let pct: u8 = FLAGS.foobar_percent();
//! # assert_eq!(pct, 0);
//! // a write takes effect at the horizon, on every process at once
//! let at = FLAGS.set(Flags::FOOBAR_PERCENT, 10).await?;
//! # let _ = at;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - Every stored value carries the instant it becomes active, on a grid of
//!   *tick* boundaries (`k · tick` after the Unix epoch).
//! - Each process fetches a registry's fields in one store call per tick,
//!   plus one at start, at its own phase in the tick.
//! - Writes only touch instants at or beyond the *horizon*: the first tick
//!   boundary at least one tick plus the fetch timeout ahead, by the store's
//!   clock. So every process holds a change before it activates, and all of
//!   them switch together, by their own clocks, off the hot path.
//! - Reading a field takes no lock, makes no system call, allocates nothing
//!   and never fails. When the store is down, processes keep serving (and
//!   switching through) the timeline they last fetched.
//!
//! # Declaring and starting
//!
//! [`#[lockstep]`](macro@lockstep) turns a struct into a registry: every
//! struct and field option is on its page. [`Registry::start`] connects to
//! `LOCKSTEP_URL` (else the declared backend's default), fetches once and
//! keeps the registry fresh on lockstep's own threads;
//! [`Registry::builder`] takes an explicit URL or store, a manual clock or
//! a boot timeout, and [`Registry::start_blocking`] serves programs without
//! a runtime. Before `start`, every field reads as its default.
//!
//! # Writing, ramps and rollouts
//!
//! [`Registry::set`] writes at the horizon, [`Registry::schedule`] at a
//! later instant, [`Registry::ramp`] several values one tick apart in one
//! atomic write, [`Registry::change`] several fields and steps at once
//! ([`Change`]), and [`Registry::cancel`] removes a pending entry. A
//! [`Percent`] field rolls a feature out to a stable share of keys:
//!
//! ```
//! use lockstep::{Percent, lockstep};
//!
//! #[lockstep(tick = "1m", store = "memory")]
//! pub struct Rollout {
//!     /// Share of users on the new checkout.
//!     pub new_checkout: Percent,
//!     #[lockstep(default = "classic")]
//!     pub theme: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockstep::Error> {
//! ROLLOUT.start().await?;
//! // 1 %, 10 %, 50 %, 100 %, one tick apart, in one atomic write:
//! let steps = ROLLOUT
//!     .ramp(Rollout::NEW_CHECKOUT, [1, 10, 50, 100].map(Percent::whole))
//!     .await?;
//! assert_eq!(steps.len(), 4);
//! ROLLOUT.set(Rollout::THEME, "dark").await?;
//!
//! // On the hot path: the same answer for a user on every process, and
//! // raising the share only ever adds users.
//! if ROLLOUT.new_checkout().includes("user-42") {
//!     // the new checkout
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Testing with the manual clock
//!
//! A [`ManualClock`] and a [`MemoryStore::with_clock`](store::MemoryStore::with_clock) make time stand still
//! until the test moves it: [`ManualClock::advance_to`] has every registry
//! on the clock fetch and flip before it returns, so a ramp plays out
//! without sleeping.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use lockstep::store::MemoryStore;
//! use lockstep::{ManualClock, lockstep};
//!
//! #[lockstep(tick = "1m", store = "memory")]
//! pub struct Limits {
//!     #[lockstep(default = 100)]
//!     pub per_second: u32,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockstep::Error> {
//! let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
//! let store = MemoryStore::with_clock(&clock);
//! LIMITS.builder().store(store).manual_clock(&clock).start().await?;
//! let at = LIMITS.set(Limits::PER_SECOND, 250).await?;
//! assert_eq!(LIMITS.per_second(), 100); // not yet
//! clock.advance_to(at).await;
//! assert_eq!(LIMITS.per_second(), 250); // at the instant
//! # Ok(())
//! # }
//! ```
//!
//! # Stores
//!
//! The URL's scheme picks the store: `redis://`, `rediss://`,
//! `redis+unix://`, `redis+cluster://` (cargo features `redis`, `tls`,
//! `cluster`), `postgres://` (`postgres`), `mysql://` and `mariadb://`
//! (`mysql`), `sqlite://` (`sqlite`), `memory://` (always). The [`store`]
//! module holds the [`Store`](store::Store) trait, [`store::open`] for
//! tools, the write builder ([`store::Write`]) and each store's type.
//!
//! # Observing it
//!
//! [`Registry::status`] tells a registry's health ([`Status`]: `Display`
//! for people, serde's `Serialize` for tools). Fetches, commits and cancels
//! are `tracing` spans (`lockstep.fetch`, `lockstep.commit`,
//! `lockstep.cancel`) with the namespace, the store (without its password)
//! and the outcome; events say when a registry connected, recovered, lost
//! its store, flipped late, rejected a value or found its clock over a
//! second off the store's, and repeated warnings are rate-limited.
//!
//! The cargo feature `metrics` records, through the
//! [`metrics`](https://docs.rs/metrics/0.24) facade (any exporter plugs
//! in), each with the label `namespace`: `lockstep_fetches_total`,
//! `lockstep_fetch_failures_total` (counters), `lockstep_fetch_seconds`
//! (histogram of a successful fetch's round trip),
//! `lockstep_last_fetch_age_seconds`, `lockstep_pending_changes` (gauges),
//! `lockstep_flips_total`, `lockstep_late_flips_total`,
//! `lockstep_rejected_values_total`, `lockstep_store_losses_total`
//! (counters), `lockstep_clock_offset_seconds` (gauge) and
//! `lockstep_commits_total` (counter, with `outcome` = `ok` or `error`).
//! None is touched when a value is read.
//!
//! # What it promises
//!
//! 1. Every server agrees: no write changes a value before the horizon of
//!    its commit, by the store's clock.
//! 2. Changes flip together, at the instant, never before it; fields
//!    written together switch together.
//! 3. One store round trip per registry per tick per process, whatever the
//!    number of fields.
//! 4. The hot path is free: no lock, no system call, no allocation, never
//!    fails.
//! 5. Changes can be scheduled, and ramps are one atomic write.
//! 6. Outages degrade, never break: the last fetched timeline keeps
//!    serving.
//! 7. Nothing is lost, and concurrent writers only meet at the same field
//!    and instant.
//! 8. Mistakes are compile errors, pointing at the offending token.
//! 9. Independent of its host: a registry keeps refreshing whatever happens
//!    to the runtime that started it.
//! 10. Misconfiguration is not an outage: a wrong password fails
//!     [`start`](Registry::start) at once, naming the problem.
//! 11. All or nothing: a refused write writes nothing, on every store.
//! 12. One bad entry spoils only itself.
//! 13. Secrets stay secret: no password in any log, error or output.
//! 14. The fleet is visible: for every pending change, how many live
//!     processes hold it and which do not, before it activates.
//! 15. An unchanged registry costs the store almost nothing.
//! 16. Replicas never break agreement.
//! 17. Mixed builds agree or are told: a write some live build cannot
//!     decode is refused, naming the build.
//!
//! The repository's `docs/design.md` says each in full, with what it
//! assumes (synchronised clocks).

// The unit tests use `#[lockstep]`, whose code names `::lockstep`.
#[cfg(test)]
extern crate self as lockstep;

mod apply;
mod clock;
mod contract;
mod engine;
mod error;
mod flip;
mod host;
mod observe;
mod percent;
mod published;
mod refresh;
mod registry;
mod report;
pub mod schema;
mod slot;
mod status;
pub mod store;
mod this_process;
mod tick;
mod timeline;
mod value;
mod writer;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// Turns a struct into a registry: a static that holds every field in
/// memory, fetched from a store once per tick and switched on every process
/// at the same instant.
///
/// ```
/// use lockstep::{Percent, lockstep};
///
/// #[lockstep(tick = "10m", store = "memory")]
/// pub struct Flags {
///     /// Share of traffic that sees the new checkout.
///     pub new_checkout: Percent,
///     #[lockstep(default = 100)]
///     pub requests_per_second: u32,
///     #[lockstep(default = "classic")]
///     pub theme: String,
/// }
///
/// // The macro made a static, `FLAGS`, with one accessor per field:
/// assert_eq!(FLAGS.requests_per_second(), 100);
/// assert_eq!(*FLAGS.theme(), "classic");
/// // and one constant per field, to name it in writes:
/// assert_eq!(Flags::REQUESTS_PER_SECOND.key(), "requests_per_second");
/// ```
///
/// # What it generates
///
/// For `struct Flags`, next to the struct itself (unchanged but for the
/// `#[lockstep(…)]` field attributes, which it removes):
///
/// - `static FLAGS: FlagsRegistry`, the registry (its name is the
///   `static_name` option's): start it once with
///   [`start`](crate::Registry::start), then read it anywhere;
/// - `struct FlagsRegistry`, with one accessor per field, named after the
///   field and as visible as it is, and through `Deref` everything a
///   [`Registry`] does (`set`, `schedule`, `ramp`,
///   `snapshot`, `status`, …);
/// - one associated constant per field, `Flags::FIELD_NAME`, a
///   [`Field`] that names the field in writes;
/// - an implementation of [`Fields`].
///
/// An accessor of a scalar field (the integers, `f32`, `f64`, `bool`,
/// `char` and [`Percent`]) returns the value, read with one
/// relaxed atomic load; any other field returns a [`Ref`] that
/// derefs to the value. A field's doc comment documents its accessor and
/// travels with the [schema](crate::Registry::schema) the registry
/// publishes, for tools such as the CLI.
///
/// # Struct options
///
/// Written in the attribute itself, `#[lockstep(option = "…", …)]`, each at
/// most once. `tick` and `store` are required.
///
/// ## `tick = "10m"`
///
/// How often each process fetches the registry, and the grid every change
/// lands on: a number and a unit (`s`, `m`, `h`, `d`, e.g. `"30s"`,
/// `"10m"`, `"1h 30m"`), a whole number of seconds from `"1s"` to `"1d"`.
/// A change takes effect between one and two ticks after it is written.
///
/// ```
/// # use lockstep::lockstep;
/// #[lockstep(tick = "1h 30m", store = "memory")]
/// pub struct Slow {
///     pub enabled: bool,
/// }
///
/// assert_eq!(SLOW.tick().as_secs(), 5400);
/// ```
///
/// ## `store = "redis"`
///
/// The kind of store the registry reads: `"redis"` (cargo feature `redis`,
/// on by default), `"postgres"` (feature `postgres`), `"mysql"` (feature
/// `mysql`: MySQL and MariaDB), `"sqlite"` (feature `sqlite`) or
/// `"memory"` (always built; one process, for tests and examples). A store
/// whose feature is off is a compile error that names the feature. The URL
/// is given at start ([`Builder::url`](crate::Builder::url)) or by
/// `LOCKSTEP_URL`, else the store's local default. `backend = "…"`, the
/// option's first name, is accepted too (giving both is an error).
///
/// ```no_run
/// # use lockstep::lockstep;
/// #[lockstep(tick = "10m", store = "redis")]
/// pub struct Limits {
///     #[lockstep(default = 100)]
///     pub per_second: u32,
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), lockstep::Error> {
/// LIMITS.builder().url("redis://127.0.0.1:6379").start().await?;
/// # Ok(()) }
/// ```
///
/// ## `namespace = "flags"`
///
/// The registry's name in the store, shared by every process that declares
/// it; the struct's name in snake case by default (`SiteFlags` is
/// `site_flags`). 1 to 100 ASCII letters, digits, `_` and `-`.
///
/// ```
/// # use lockstep::lockstep;
/// #[lockstep(tick = "10m", store = "memory", namespace = "checkout-v2")]
/// pub struct Checkout {
///     pub enabled: bool,
/// }
///
/// assert_eq!(CHECKOUT.namespace(), "checkout-v2");
/// ```
///
/// ## `static_name = "FLAGS"`
///
/// The name of the static; the struct's name in upper snake case by
/// default (`SiteFlags` is `SITE_FLAGS`).
///
/// ```
/// # use lockstep::lockstep;
/// #[lockstep(tick = "10m", store = "memory", static_name = "SITE")]
/// pub struct SiteFlags {
///     pub maintenance: bool,
/// }
///
/// assert!(!SITE.maintenance());
/// ```
///
/// ## `clock = "local"`
///
/// Whose clock decides when a change switches on this process: `"local"`
/// (the default: this process's clock, which NTP keeps in step with the
/// fleet's) or `"store"` (the store's clock, estimated at each fetch: for
/// hosts whose clocks cannot be trusted).
///
/// ```
/// # use lockstep::lockstep;
/// #[lockstep(tick = "1m", store = "memory", clock = "store")]
/// pub struct Edge {
///     pub enabled: bool,
/// }
/// # assert!(!EDGE.enabled());
/// ```
///
/// # Field options
///
/// Written on a field, `#[lockstep(option = …)]`, each at most once.
///
/// ## `default = <expression>`
///
/// The value before the first write, and while nothing is stored; without
/// it, the type's `Default`. A scalar field's default must be a constant
/// expression; any other field's default is any expression of the field's
/// type, and a string literal converts with `From` (for `String` fields).
/// rustc checks it against the field's type.
///
/// ```
/// # use lockstep::{Percent, lockstep};
/// # use std::collections::BTreeMap;
/// #[lockstep(tick = "10m", store = "memory")]
/// pub struct Defaults {
///     #[lockstep(default = 25)]
///     pub retries: u8,
///     #[lockstep(default = Percent::whole(5))]
///     pub canary: Percent,
///     #[lockstep(default = "eu-west")]
///     pub region: String,
///     #[lockstep(default = vec![443, 8443])]
///     pub ports: Vec<u16>,
///     #[lockstep(default = BTreeMap::from([("eu".to_owned(), 10)]))]
///     pub weights: BTreeMap<String, u32>,
///     pub note: Option<String>, // no default: `None`
/// }
///
/// assert_eq!(DEFAULTS.retries(), 25);
/// assert_eq!(DEFAULTS.canary().thousandths(), 5_000);
/// assert_eq!(*DEFAULTS.ports(), vec![443, 8443]);
/// assert_eq!(*DEFAULTS.note(), None);
/// ```
///
/// ## `key = "name"`
///
/// The field's name in the store; the field's name by default (without
/// `r#`). Rename a field in Rust and keep its key, and the stored values
/// stay. Same characters as a namespace; two fields cannot share a key.
///
/// ```
/// # use lockstep::lockstep;
/// #[lockstep(tick = "10m", store = "memory")]
/// pub struct Renamed {
///     #[lockstep(key = "foobar_percent", default = 10)]
///     pub foobar_share: u8,
/// }
///
/// assert_eq!(Renamed::FOOBAR_SHARE.key(), "foobar_percent");
/// ```
///
/// # Field types
///
/// Any type that is serde's `Serialize` and `Deserialize`, `Clone`, `Send`
/// and `Sync` ([`FieldType`]): scalars, `String`,
/// `Option`, `Vec`, maps, and your own structs and enums. Values are stored
/// as JSON and checked against the type when fetched; a value that does not
/// decode is rejected for that field alone. Write lockstep's percentage as
/// `Percent` (imported) or `lockstep::Percent`.
///
/// ```
/// # use lockstep::lockstep;
/// #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
/// pub enum Theme {
///     #[default]
///     Classic,
///     Dark,
/// }
///
/// #[lockstep(tick = "10m", store = "memory")]
/// pub struct Site {
///     pub theme: Theme,
/// }
///
/// assert_eq!(*SITE.theme(), Theme::Classic);
/// ```
///
/// # Mistakes
///
/// Every mistake is a compile error at the offending token, saying what
/// is accepted: a bad or missing tick, an unknown store or option (with
/// the closest valid name), a duplicate option or key, a default of the
/// wrong type, a field type that is not a [`FieldType`],
/// a generic, tuple or unit struct, an enum, and a field named like a
/// method of [`Registry`], whose accessor would hide it:
///
/// ```compile_fail
/// # use lockstep::lockstep;
/// #[lockstep(tick = "10m", store = "memory")]
/// pub struct Flags {
///     pub status: bool, // `Registry::status` exists: rename the field
/// }
/// ```
pub use lockstep_macros::lockstep;

pub use clock::ManualClock;
pub use contract::{FieldType, Fields};
pub use error::Error;
pub use percent::Percent;
pub use registry::{Builder, Registry, Snapshot};
pub use slot::Ref;
pub use status::{FlipperPriority, Pending, Status};
pub use tick::{Tick, TickError};
pub use value::MAX_VALUE_BYTES;
pub use writer::{Change, Field, IntoValue};
