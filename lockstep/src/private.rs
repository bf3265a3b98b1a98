//! What `#[lockstep]`'s generated code calls: a door of re-exports, the
//! logic lives in the named modules (`contract`, `slot`, `value`). Not
//! public API: it may change in any release.

pub use crate::contract::{
    Access, DefaultValue, FieldDef, FieldType, Fields, FreeName, IsPercent, PercentOf, RegistryDef,
    Sealed, Value, assign, assign_percent, free_name, percent, publish, to_json,
};
pub use crate::registry::Registry;
pub use crate::slot::{Scalar, ScalarValue, Shared, bits};
pub use crate::value::decode;
pub use crate::{Field, Percent, Tick};
pub use arc_swap::ArcSwap;

/// Reads a stored Redis entry (for the fuzz targets).
#[cfg(feature = "redis")]
pub use crate::store::redis::open_envelope;

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
