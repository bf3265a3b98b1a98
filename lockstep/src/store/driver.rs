//! For those who write a store of their own: what a [`Store`] exchanges
//! beyond what tools see, and the limits and checks every store keeps.
//!
//! A store implements [`Store`] (one required fetch,
//! [`Store::fetch_with`], and the rest of the calls), answers a [`Fetch`]
//! with a [`Fetched`], keeps each process's [`Record`] for the fleet view
//! and answers [`Store::records`] with the [`Records`] it keeps. Its
//! behaviour is checked by the conformance suite every store of this crate
//! passes (`tests/conformance.rs`).
//!
//! [`Store`]: super::Store
//! [`Store::fetch_with`]: super::Store::fetch_with
//! [`Store::records`]: super::Store::records
//! [`Fetch`]: super::Fetch
//! [`Fetched`]: super::Fetched

pub use super::contract::BoxFuture;
pub use super::fetch::Held;
pub use super::stored::{
    Epoch, FETCH_BUDGET_BYTES, MAX_PENDING_BYTES, MAX_RECORD_BYTES, Record, Records, SCHEMA_KEPT,
    SMALL_WRITE_BYTES, StoredRecord, Unplaced, check_cancel, check_name, not_fetched,
};
pub use super::write::resolve_instants;
