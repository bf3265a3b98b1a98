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
//! #[lockstep(tick = "10m", backend = "memory")]
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
//! See the README for the promises in full, the store layout and figures.

mod apply;
mod clock;
mod contract;
mod engine;
mod error;
mod flip;
mod host;
mod percent;
mod refresh;
mod registry;
mod schema;
mod slot;
mod status;
pub mod store;
mod tick;
mod timeline;
mod value;
mod writer;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use lockstep_macros::lockstep;

pub use clock::ManualClock;
pub use error::Error;
pub use percent::Percent;
pub use registry::{Builder, Registry, Snapshot};
pub use schema::{FieldSchema, NamedType, Schema, ValueType, Variant};
pub use slot::Ref;
pub use status::{Pending, Status};
pub use store::MemoryStore;
pub use tick::{Millis, Tick, TickError};
pub use timeline::Timeline;
pub use value::MAX_VALUE_BYTES;
pub use writer::{Change, Field};
