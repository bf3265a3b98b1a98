//! What `#[lockstep]`'s generated code calls. Not public API: it may change
//! in any release.

use std::any::Any;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::registry::{FieldDef, Fields, Registry, RegistryDef, Value};
pub use crate::slot::{Scalar, ScalarValue, Shared, bits};
pub use crate::{Field, Percent, Tick};
pub use arc_swap::ArcSwap;

/// Reads a stored Redis entry (for the fuzz targets).
#[cfg(feature = "redis")]
pub use crate::backend::redis::open_envelope;

/// Field types: what a value must be to travel through a store.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a lockstep field",
    label = "field types must implement serde's Serialize and Deserialize, Clone, Send and Sync",
    note = "derive them: `#[derive(Clone, serde::Serialize, serde::Deserialize)]`"
)]
pub trait FieldType: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> FieldType for T {}

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

/// Decodes JSON text into a `T`.
pub fn decode<T: FieldType>(json: &str) -> Result<Value, String> {
    match serde_json::from_str::<T>(json) {
        Ok(value) => Ok(std::sync::Arc::new(value)),
        Err(e) => Err(format!(
            "{e} (expected {}, found {})",
            std::any::type_name::<T>(),
            excerpt(json)
        )),
    }
}

/// The start of `json`, for messages.
fn excerpt(json: &str) -> String {
    let mut end = json.len().min(40);
    while !json.is_char_boundary(end) {
        end -= 1;
    }
    if end < json.len() {
        format!("{:?}…", &json[..end])
    } else {
        format!("{json:?}")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn round_trip<T: FieldType + PartialEq + std::fmt::Debug>(
        value: T,
    ) -> Result<(), TestCaseError> {
        let json = serde_json::to_string(&value).unwrap();
        let decoded = decode::<T>(&json).map_err(TestCaseError::fail)?;
        prop_assert_eq!(decoded.downcast_ref::<T>(), Some(&value));
        Ok(())
    }

    #[test]
    fn values_are_data_decoded_only_into_the_fields_own_type() {
        // A type tag names nothing: JSON is decoded into the field's type or
        // refused, and a map keeps it as the text it is.
        let tagged = r#"{"$type":"System.Diagnostics.Process","@class":"exec","cmd":"rm -rf /"}"#;
        assert!(decode::<u8>(tagged).is_err());
        assert!(decode::<Vec<String>>(tagged).is_err());
        let map = decode::<BTreeMap<String, String>>(tagged).unwrap();
        let map = map.downcast_ref::<BTreeMap<String, String>>().unwrap();
        assert_eq!(map["cmd"], "rm -rf /");
        assert_eq!(map.len(), 3);
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_the_identity(
            a in any::<u8>(),
            b in any::<i64>(),
            c in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            d in ".*",
            e in proptest::collection::vec(proptest::option::of(any::<i32>()), 0..8),
            f in proptest::collection::btree_map(".*", any::<bool>(), 0..4),
            p in 0u32..=100_000,
        ) {
            round_trip(a)?;
            round_trip(b)?;
            round_trip(c)?;
            round_trip(d)?;
            round_trip(e)?;
            round_trip::<BTreeMap<String, bool>>(f)?;
            round_trip(Percent::from_thousandths(p).unwrap())?;
        }

        #[test]
        fn arbitrary_text_never_panics_a_decoder(text in ".*", bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let lossy = String::from_utf8_lossy(&bytes);
            for input in [text.as_str(), &lossy] {
                let _ = decode::<u8>(input);
                let _ = decode::<String>(input);
                let _ = decode::<Vec<Option<f64>>>(input);
                let _ = decode::<Percent>(input);
                let _ = decode::<BTreeMap<String, Vec<u16>>>(input);
            }
        }
    }
}
