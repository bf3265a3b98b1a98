//! Values: how a field's value travels as JSON text, and the size limit
//! every path applies.

use serde::Serialize;
use serde::de::DeserializeOwned;

use std::any::Any;
use std::sync::Arc;

use crate::error::Error;

/// A decoded field value, type-erased.
pub type Value = Arc<dyn Any + Send + Sync>;

/// Field types: what a value must be to travel through a store.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a lockstep field",
    label = "field types must implement serde's Serialize and Deserialize, Clone, Send and Sync",
    note = "derive them: `#[derive(Clone, serde::Serialize, serde::Deserialize)]`"
)]
pub trait FieldType: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

// One error for a type that is not a field type, not one per missing trait.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> FieldType for T {}

/// The largest value, in bytes of JSON, a registry accepts for one entry.
/// Larger values are rejected like undecodable ones.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Decodes one stored value with `decode` (a field's decoder), refusing it
/// over the size limit.
pub(crate) fn decode_within_limit(
    decode: fn(&str) -> Result<Value, String>,
    raw: &str,
) -> Result<Value, String> {
    if raw.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "{} bytes, over the limit of {MAX_VALUE_BYTES}",
            raw.len()
        ));
    }
    decode(raw)
}

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

/// Encodes a value [`decode`] made for a `T` as JSON text (`null` for a
/// value of another type, which a field never holds).
pub fn encode_decoded<T: FieldType>(value: &Value) -> String {
    value
        .downcast_ref::<T>()
        .and_then(|v| serde_json::to_string(v).ok())
        .unwrap_or_else(|| "null".to_owned())
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

/// `value` as JSON text, checked to read back as a `T`, so that nothing a
/// process would reject is ever written (the size limit is the write
/// builder's).
pub(crate) fn encode<T: Serialize + DeserializeOwned>(
    namespace: &str,
    key: &str,
    value: &T,
) -> Result<String, Error> {
    let invalid = |reason: String| Error::InvalidValue {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let json = serde_json::to_string(value).map_err(|e| invalid(e.to_string()))?;
    if let Err(e) = serde_json::from_str::<T>(&json) {
        return Err(invalid(format!(
            "it encodes as {json}, which does not read back as {}: {e}",
            std::any::type_name::<T>()
        )));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Percent;
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
