//! What `#[lockstep]`'s generated code calls. Not public API: it may change
//! in any release.

use std::any::Any;

use serde::Serialize;

pub use crate::contract::{FieldDef, FieldType, Fields, RegistryDef, Value};
pub use crate::registry::Registry;
pub use crate::slot::{Scalar, ScalarValue, Shared, bits};
pub use crate::value::decode;
pub use crate::{Field, Percent, Tick};
pub use arc_swap::ArcSwap;

/// Reads a stored Redis entry (for the fuzz targets).
#[cfg(feature = "redis")]
pub use crate::store::redis::open_envelope;

/// Fields without `default = …` take `Default::default()`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `Default`, so this field needs a default",
    label = "add `#[lockstep(default = …)]` to the field",
    note = "or implement `Default` for `{Self}`"
)]
pub trait DefaultValue {
    /// The default.
    fn default_value() -> Self;
}

impl<T: Default> DefaultValue for T {
    fn default_value() -> Self {
        T::default()
    }
}

/// What JSON values a field of type `T` accepts, for the published schema.
pub fn describe<T: FieldType>() -> crate::ValueType {
    crate::schema::describe::<T>()
}

/// Checks at compile time that `T` can be a field.
pub const fn assert_field_type<T: FieldType>() {}

/// `value` as JSON, for the published schema.
pub fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Sets `slot` to a clone of `value`, which holds a `T`.
pub fn assign<T: Clone + 'static>(slot: &mut T, value: &(dyn Any + Send + Sync)) {
    if let Some(value) = value.downcast_ref::<T>() {
        slot.clone_from(value);
    }
}

/// The backend `redis` needs the `redis` feature.
#[cfg(feature = "redis")]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_redis {
    () => {};
}

/// The backend `redis` needs the `redis` feature.
#[cfg(not(feature = "redis"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_redis {
    () => {
        ::core::compile_error! {
            "backend \"redis\" needs the cargo feature `redis` of lockstep: \
lockstep = { version = \"0.1\", features = [\"redis\"] }"
        }
    };
}

/// The backend `postgres` needs the `postgres` feature.
#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_postgres {
    () => {};
}

/// The backend `postgres` needs the `postgres` feature.
#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_postgres {
    () => {
        ::core::compile_error! {
            "backend \"postgres\" needs the cargo feature `postgres` of lockstep: \
lockstep = { version = \"0.1\", features = [\"postgres\"] }"
        }
    };
}

/// The backend `mysql` needs the `mysql` feature.
#[cfg(feature = "mysql")]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_mysql {
    () => {};
}

/// The backend `mysql` needs the `mysql` feature.
#[cfg(not(feature = "mysql"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_mysql {
    () => {
        ::core::compile_error! {
            "backend \"mysql\" needs the cargo feature `mysql` of lockstep: \
lockstep = { version = \"0.1\", features = [\"mysql\"] }"
        }
    };
}

/// The backend `sqlite` needs the `sqlite` feature.
#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_sqlite {
    () => {};
}

/// The backend `sqlite` needs the `sqlite` feature.
#[cfg(not(feature = "sqlite"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_sqlite {
    () => {
        ::core::compile_error! {
            "backend \"sqlite\" needs the cargo feature `sqlite` of lockstep: \
lockstep = { version = \"0.1\", features = [\"sqlite\"] }"
        }
    };
}

/// The backend `memory` is always built.
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_memory {
    () => {};
}
