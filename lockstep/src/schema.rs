//! The schema a registry publishes to its store, for tools like the CLI:
//! its namespace and tick, and each field's key, Rust type, default and
//! [`ValueType`], so that a tool can check a value before it writes it.

mod convert;
mod explore;
mod guard;
mod trace;

use std::fmt;

use serde::{Deserialize, Serialize};

pub(crate) use trace::traced;

/// A registry as tools see it: its namespace, tick and fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The registry's name in the store.
    pub namespace: String,
    /// The tick, in seconds.
    pub tick_secs: u32,
    /// The fields, in declaration order.
    pub fields: Vec<FieldSchema>,
}

impl Schema {
    /// The field stored as `key`.
    pub fn field(&self, key: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.key == key)
    }
}

/// One field of a [`Schema`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// The field's name in the store.
    pub key: String,
    /// The field's Rust type, as written in the struct.
    pub rust_type: String,
    /// What values the field accepts, as JSON. `None` in schemas published
    /// by lockstep versions that did not describe types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<ValueType>,
    /// The default, as JSON.
    pub default: serde_json::Value,
    /// The field's doc comment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
}

/// What JSON values a field accepts: a description of its Rust type in
/// serde_json's representation, in the spirit of JSON Schema.
///
/// [`ValueType::of`] describes any serde type, including your own structs
/// and enums; [`ValueType::check`] says whether a JSON value would decode
/// as that type and, if not, what is wrong and what is accepted. In the
/// published schema it is JSON tagged by `"type"`:
///
/// ```
/// use lockstep::schema::ValueType;
///
/// let u8_type = ValueType::of::<u8>();
/// assert_eq!(u8_type, ValueType::Integer { min: 0, max: 255 });
/// assert_eq!(
///     serde_json::to_string(&u8_type).unwrap(),
///     r#"{"type":"integer","min":0,"max":255}"#
/// );
/// assert!(u8_type.check(&serde_json::json!(200)).is_ok());
/// assert_eq!(
///     u8_type.check(&serde_json::json!(300)).unwrap_err(),
///     "300 is out of range for u8: expected an integer from 0 to 255"
/// );
/// ```
///
/// Enums use serde_json's externally tagged representation: a unit variant
/// is its name as a string (`"Dark"`), any other variant an object with the
/// variant's name as its only key (`{"Custom": {"hue": 120}}`). Types whose
/// shape cannot be traced (untagged or internally tagged enums, types whose
/// `Deserialize` validates or reads any JSON) are [`ValueType::Any`]: tools
/// accept any JSON for them and the registry checks when it decodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ValueType {
    /// `null` (`()`, unit structs).
    Unit,
    /// `true` or `false`.
    Bool,
    /// An integer from `min` to `max` inclusive (`u8` … `i64`, `usize`;
    /// 128-bit integers are checked within the 64-bit ranges).
    Integer {
        /// The smallest value.
        min: i64,
        /// The largest value.
        max: u64,
    },
    /// A finite number (`f32`, `f64`).
    Float {
        /// 32 or 64: an `f32` must also be within `f32`'s range.
        bits: u8,
    },
    /// A string of exactly one character.
    Char,
    /// A string.
    String,
    /// A [`Percent`](crate::Percent): a number from 0 to 100.
    Percent,
    /// `null` or a value of the inner type.
    Option {
        /// The type of the value when there is one.
        some: Box<ValueType>,
    },
    /// A JSON array of items of one type (`Vec`, sets, `[T; N]`).
    List {
        /// The type of each item.
        items: Box<ValueType>,
        /// The exact length, for arrays (`[T; N]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        len: Option<usize>,
    },
    /// A JSON array of a fixed number of items, each of its own type
    /// (tuples, tuple structs).
    Tuple {
        /// The type of each item, in order.
        items: Vec<ValueType>,
    },
    /// A JSON object (maps); keys are strings in JSON, and are checked as
    /// `key` (an integer key is a string of digits).
    Map {
        /// The type of the keys.
        key: Box<ValueType>,
        /// The type of the values.
        value: Box<ValueType>,
    },
    /// A JSON object with named fields. Every field must be present except
    /// `Option` ones; unknown fields are refused.
    Struct {
        /// The struct's name.
        name: String,
        /// Its fields, in order.
        fields: Vec<NamedType>,
    },
    /// One of several variants, externally tagged.
    Enum {
        /// The enum's name.
        name: String,
        /// Its variants, in order.
        variants: Vec<Variant>,
    },
    /// Any JSON value: the type could not be described (or the description
    /// comes from a newer lockstep).
    #[serde(other)]
    Any,
}

/// A field of a [`ValueType::Struct`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedType {
    /// The field's name in JSON.
    pub name: String,
    /// What it accepts.
    pub value_type: ValueType,
}

/// A variant of a [`ValueType::Enum`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's name in JSON.
    pub name: String,
    /// What it carries; `None` for a unit variant, written as its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<ValueType>,
}

impl ValueType {
    /// What JSON values a `T` accepts, as serde_json reads them.
    ///
    /// Traces `T`'s `Deserialize` implementation with serde-reflection (all
    /// of it: every variant of every enum inside it), then checks the
    /// description against the values the trace built: a description that
    /// would refuse the type's own values (a serde attribute the trace
    /// cannot see, like `skip_serializing_if`) is dropped. What cannot be
    /// traced is [`ValueType::Any`]. Never fails, panics or recurses without
    /// end; `#[lockstep]` calls it for each field when a registry publishes
    /// its schema.
    ///
    /// ```
    /// use lockstep::schema::ValueType;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// enum Mode {
    ///     Light,
    ///     Dark,
    ///     Custom { hue: u16 },
    /// }
    ///
    /// let mode = ValueType::of::<Mode>();
    /// assert_eq!(mode.to_string(), r#""Light" | "Dark" | {"Custom": {"hue": u16}}"#);
    /// assert!(mode.check(&serde_json::json!({"Custom": {"hue": 120}})).is_ok());
    /// assert!(mode.check(&serde_json::json!("Sepia")).is_err());
    /// ```
    pub fn of<T: Serialize + serde::de::DeserializeOwned + 'static>() -> ValueType {
        traced::<T>()
    }

    /// Whether `value` is a value of this type; if not, a message saying
    /// what is wrong with it and what is accepted, with where in the value
    /// when it is nested (`at .limits[2]: …`).
    ///
    /// ```
    /// use lockstep::schema::ValueType;
    ///
    /// let list = ValueType::of::<Vec<Option<bool>>>();
    /// assert!(list.check(&serde_json::json!([true, null])).is_ok());
    /// assert_eq!(
    ///     list.check(&serde_json::json!([true, 1])).unwrap_err(),
    ///     "at [1]: 1 is not a boolean: expected true or false, or null"
    /// );
    /// ```
    pub fn check(&self, value: &serde_json::Value) -> Result<(), String> {
        let mut path = String::new();
        self.check_at(value, &mut path).map_err(|e| {
            if path.is_empty() {
                e
            } else {
                format!("at {path}: {e}")
            }
        })
    }

    fn check_at(&self, value: &serde_json::Value, path: &mut String) -> Result<(), String> {
        use serde_json::Value as J;
        let wrong = |what: &str| {
            Err(format!(
                "{} is not {what}: expected {}",
                excerpt(value),
                self.expected()
            ))
        };
        match self {
            ValueType::Any => Ok(()),
            ValueType::Unit => match value {
                J::Null => Ok(()),
                _ => wrong("null"),
            },
            ValueType::Bool => match value {
                J::Bool(_) => Ok(()),
                _ => wrong("a boolean"),
            },
            ValueType::Integer { min, max } => {
                let n = match value {
                    J::Number(n) => n
                        .as_i64()
                        .map(i128::from)
                        .or_else(|| n.as_u64().map(i128::from)),
                    _ => None,
                };
                match n {
                    None => wrong(&format!("an integer ({})", integer_name(*min, *max))),
                    Some(n) if n < i128::from(*min) || n > i128::from(*max) => Err(format!(
                        "{} is out of range for {}: expected {}",
                        excerpt(value),
                        integer_name(*min, *max),
                        self.expected()
                    )),
                    Some(_) => Ok(()),
                }
            }
            ValueType::Float { bits } => match value.as_f64() {
                Some(x) if *bits == 32 && x.is_finite() && x.abs() > f64::from(f32::MAX) => {
                    Err(format!(
                        "{} is out of range for f32: expected {}",
                        excerpt(value),
                        self.expected()
                    ))
                }
                Some(x) if x.is_finite() => Ok(()),
                _ => wrong("a number"),
            },
            ValueType::Char => match value {
                J::String(s) if s.chars().count() == 1 => Ok(()),
                _ => wrong("a single character"),
            },
            ValueType::String => match value {
                J::String(_) => Ok(()),
                _ => wrong("a string"),
            },
            ValueType::Percent => match value.as_f64() {
                Some(x) if (0.0..=100.0).contains(&x) => Ok(()),
                Some(_) => Err(format!(
                    "{} is not a percentage: expected {}",
                    excerpt(value),
                    self.expected()
                )),
                None => wrong("a percentage"),
            },
            ValueType::Option { some } => {
                if value.is_null() {
                    return Ok(());
                }
                let depth = path.len();
                match some.check_at(value, path) {
                    // Wrong at this very level: say that null would do too.
                    Err(e) if path.len() == depth => Err(format!("{e}, or null")),
                    result => result,
                }
            }
            ValueType::List { items, len } => {
                let J::Array(array) = value else {
                    return wrong("a list");
                };
                if let Some(len) = len
                    && array.len() != *len
                {
                    return Err(format!(
                        "{} has {} items: expected {}",
                        excerpt(value),
                        array.len(),
                        self.expected()
                    ));
                }
                for (i, item) in array.iter().enumerate() {
                    nested(path, &format!("[{i}]"), |path| items.check_at(item, path))?;
                }
                Ok(())
            }
            ValueType::Tuple { items } => {
                let J::Array(array) = value else {
                    return wrong("a list");
                };
                if array.len() != items.len() {
                    return Err(format!(
                        "{} has {} items: expected {}",
                        excerpt(value),
                        array.len(),
                        self.expected()
                    ));
                }
                for (i, (ty, item)) in items.iter().zip(array).enumerate() {
                    nested(path, &format!("[{i}]"), |path| ty.check_at(item, path))?;
                }
                Ok(())
            }
            ValueType::Map { key, value: ty } => {
                let J::Object(map) = value else {
                    return wrong("an object");
                };
                for (k, v) in map {
                    let segment = format!("[{}]", serde_json::Value::String(k.clone()));
                    let key_value = key.key_as_json(k);
                    key.check_at(&key_value, &mut String::new()).map_err(|e| {
                        format!("key {}: {e}", serde_json::Value::String(k.clone()))
                    })?;
                    nested(path, &segment, |path| ty.check_at(v, path))?;
                }
                Ok(())
            }
            ValueType::Struct { fields, .. } => {
                let J::Object(map) = value else {
                    return wrong("an object");
                };
                for name in map.keys() {
                    if !fields.iter().any(|f| f.name == *name) {
                        return Err(format!(
                            "unknown field `{name}`: expected {}",
                            self.expected()
                        ));
                    }
                }
                for field in fields {
                    match map.get(&field.name) {
                        Some(v) => nested(path, &format!(".{}", field.name), |path| {
                            field.value_type.check_at(v, path)
                        })?,
                        None if matches!(field.value_type, ValueType::Option { .. }) => {}
                        None => {
                            return Err(format!(
                                "missing field `{}`: expected {}",
                                field.name,
                                self.expected()
                            ));
                        }
                    }
                }
                Ok(())
            }
            ValueType::Enum { variants, .. } => {
                let (name, payload) = match value {
                    J::String(name) => (name, None),
                    J::Object(map) if map.len() == 1 => {
                        let (name, payload) = map.iter().next().expect("one entry");
                        (name, Some(payload))
                    }
                    _ => return wrong("a variant"),
                };
                let Some(variant) = variants.iter().find(|v| v.name == *name) else {
                    return Err(format!(
                        "{} is not a variant: expected {}",
                        serde_json::Value::String(name.clone()),
                        self.expected()
                    ));
                };
                match (&variant.value_type, payload) {
                    (None, None) => Ok(()),
                    (None, Some(_)) => Err(format!(
                        "`{name}` carries no value: write it as {}",
                        serde_json::Value::String(name.clone())
                    )),
                    (Some(ty), None) => Err(format!(
                        "`{name}` needs a value: write it as {{{}: {}}}",
                        serde_json::Value::String(name.clone()),
                        ty
                    )),
                    (Some(ty), Some(payload)) => {
                        nested(path, &format!(".{name}"), |path| ty.check_at(payload, path))
                    }
                }
            }
        }
    }

    /// A map key (always a string in JSON) as the JSON value its type reads.
    fn key_as_json(&self, key: &str) -> serde_json::Value {
        let parsed = match self {
            ValueType::Integer { .. } | ValueType::Float { .. } | ValueType::Bool => {
                serde_json::from_str(key).ok()
            }
            _ => None,
        };
        parsed.unwrap_or_else(|| serde_json::Value::String(key.to_owned()))
    }

    /// Whether a bare word (text that is not JSON) may be taken as a JSON
    /// string for this type: strings, characters, unit variants.
    pub fn accepts_string(&self) -> bool {
        match self {
            ValueType::String | ValueType::Char => true,
            ValueType::Option { some } => some.accepts_string(),
            ValueType::Enum { variants, .. } => variants.iter().any(|v| v.value_type.is_none()),
            _ => false,
        }
    }

    /// What this type accepts, in words, for messages: "an integer from 0
    /// to 255", `one of "Light", "Dark"`.
    pub fn expected(&self) -> String {
        match self {
            ValueType::Any => "any JSON value".to_owned(),
            ValueType::Unit => "null".to_owned(),
            ValueType::Bool => "true or false".to_owned(),
            ValueType::Integer { min, max } => format!("an integer from {min} to {max}"),
            ValueType::Float { bits: 32 } => "a number (f32)".to_owned(),
            ValueType::Float { .. } => "a number".to_owned(),
            ValueType::Char => "a string of one character".to_owned(),
            ValueType::String => "a string".to_owned(),
            ValueType::Percent => "a number from 0 to 100 (a percentage)".to_owned(),
            ValueType::Option { some } => format!("null or {}", some.expected()),
            ValueType::List {
                items,
                len: Some(len),
            } => format!("a list of exactly {len} items, each {}", items.expected()),
            ValueType::List { items, len: None } => {
                format!("a list of items, each {}", items.expected())
            }
            ValueType::Tuple { .. } | ValueType::Map { .. } | ValueType::Struct { .. } => {
                self.to_string()
            }
            ValueType::Enum { variants, .. } => {
                let shown: Vec<String> = variants.iter().map(Variant::to_string).collect();
                format!("one of {}", shown.join(", "))
            }
        }
    }
}

/// Runs `check` with `segment` appended to `path`; on success the path is
/// as before, on failure it names where the problem is.
fn nested(
    path: &mut String,
    segment: &str,
    check: impl FnOnce(&mut String) -> Result<(), String>,
) -> Result<(), String> {
    let len = path.len();
    path.push_str(segment);
    check(path)?;
    path.truncate(len);
    Ok(())
}

/// The Rust name of an integer range, for messages.
fn integer_name(min: i64, max: u64) -> &'static str {
    match (min, max) {
        (0, 255) => "u8",
        (-128, 127) => "i8",
        (0, 65_535) => "u16",
        (-32_768, 32_767) => "i16",
        (0, 4_294_967_295) => "u32",
        (-2_147_483_648, 2_147_483_647) => "i32",
        (0, u64::MAX) => "u64",
        (i64::MIN, 9_223_372_036_854_775_807) => "i64",
        _ => "an integer type",
    }
}

/// `value` as compact JSON, cut short for messages.
fn excerpt(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    let cut: String = text.chars().take(57).collect();
    format!("{cut}…")
}

/// A compact label of the type: `u8`, `string`, `[u16]`, `u8 | null`,
/// `{"hue": u16}`, `"Light" | "Dark" | {"Custom": …}`.
impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Any => f.write_str("any"),
            ValueType::Unit => f.write_str("null"),
            ValueType::Bool => f.write_str("bool"),
            ValueType::Integer { min, max } => match integer_name(*min, *max) {
                "an integer type" => write!(f, "integer {min}..={max}"),
                name => f.write_str(name),
            },
            ValueType::Float { bits } => write!(f, "f{bits}"),
            ValueType::Char => f.write_str("char"),
            ValueType::String => f.write_str("string"),
            ValueType::Percent => f.write_str("percent 0..=100"),
            ValueType::Option { some } => write!(f, "{some} | null"),
            ValueType::List { items, len: None } => write!(f, "[{items}]"),
            ValueType::List {
                items,
                len: Some(len),
            } => write!(f, "[{items}; {len}]"),
            ValueType::Tuple { items } => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            ValueType::Map { key, value } => write!(f, "{{{key}: {value}}}"),
            ValueType::Struct { fields, .. } => {
                f.write_str("{")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "{}: {}",
                        serde_json::Value::String(field.name.clone()),
                        field.value_type
                    )?;
                }
                f.write_str("}")
            }
            ValueType::Enum { variants, .. } => {
                for (i, variant) in variants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{variant}")?;
                }
                Ok(())
            }
        }
    }
}

/// `"Name"` for a unit variant, `{"Name": <type>}` otherwise.
impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::Value::String(self.name.clone());
        match &self.value_type {
            None => write!(f, "{name}"),
            Some(ty) => write!(f, "{{{name}: {ty}}}"),
        }
    }
}

#[cfg(test)]
mod tests;
