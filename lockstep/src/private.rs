//! What `#[lockstep]`'s generated code calls: a door of re-exports, the
//! logic lives in the named modules (`contract`, `slot`, `value`). Not
//! public API: it may change in any release.

pub use crate::contract::{
    Access, DefaultValue, FieldDef, FieldType, Fields, FreeName, IsPercent, PercentOf, RegistryDef,
    Sealed, Value, assign, assign_percent, free_name, percent, publish, to_json,
};
pub use crate::registry::Registry;
pub use crate::slot::{Scalar, ScalarValue, Shared, bits};
pub use crate::store::kind::declared as store_kind;
pub use crate::value::decode;
pub use crate::{Field, Percent, Tick};
pub use arc_swap::ArcSwap;

/// Reads a stored Redis entry (for the fuzz targets).
#[cfg(feature = "redis")]
pub use crate::store::redis::open_envelope;
