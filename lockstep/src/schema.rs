//! The schema a registry publishes to its store, for tools like the CLI.

use serde::{Deserialize, Serialize};

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

/// One field of a [`Schema`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// The field's name in the store.
    pub key: String,
    /// The field's Rust type, as written in the struct.
    pub rust_type: String,
    /// The default, as JSON.
    pub default: serde_json::Value,
    /// The field's doc comment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
}
