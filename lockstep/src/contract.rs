//! The macro contract: what `#[lockstep]` generates for a struct and the
//! runtime reads. Not meant to be implemented by hand.

use std::any::Any;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::schema::{FieldSchema, Schema};
use crate::tick::Tick;

/// A decoded field value, type-erased.
pub type Value = Arc<dyn Any + Send + Sync>;

/// What `#[lockstep]` generates for a struct: everything the runtime needs
/// to know about its fields. Not meant to be implemented by hand.
#[doc(hidden)]
pub trait Fields: Sized + Send + Sync + 'static {
    /// The per-field slots the accessors read.
    type Slots: Send + Sync + 'static;
    /// The registry's definition.
    const DEF: &'static RegistryDef;
    /// Every field at its default.
    fn defaults() -> Self;
    /// A copy.
    fn clone_fields(&self) -> Self;
    /// Sets field `index` to `value`, which has that field's type.
    fn assign(&mut self, index: usize, value: &(dyn Any + Send + Sync));
    /// Publishes every field to its slot.
    fn publish(&self, slots: &Self::Slots);
}

/// A registry as declared: its namespace, tick, store kind and fields.
#[doc(hidden)]
#[derive(Debug)]
pub struct RegistryDef {
    /// The registry's name in the store.
    pub namespace: &'static str,
    /// The tick.
    pub tick: Tick,
    /// The declared store kind (`backend = "…"`: `"memory"`, `"redis"`, …).
    pub store: &'static str,
    /// Whether flips follow the store's clock (`clock = "store"`).
    pub store_clock: bool,
    /// The fields in declaration order.
    pub fields: &'static [FieldDef],
}

/// One field as declared.
#[doc(hidden)]
pub struct FieldDef {
    /// The Rust name.
    pub name: &'static str,
    /// The name in the store.
    pub key: &'static str,
    /// The type as written.
    pub rust_type: &'static str,
    /// The doc comment.
    pub doc: &'static str,
    /// Decodes JSON text into the field's type.
    pub decode: fn(&str) -> Result<Value, String>,
    /// The default as JSON.
    pub default_json: fn() -> serde_json::Value,
    /// What JSON values the field accepts.
    pub value_type: fn() -> crate::schema::ValueType,
}

impl std::fmt::Debug for FieldDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldDef")
            .field("key", &self.key)
            .field("rust_type", &self.rust_type)
            .finish_non_exhaustive()
    }
}

impl RegistryDef {
    /// The schema this registry publishes.
    pub fn schema(&self) -> Schema {
        Schema {
            namespace: self.namespace.to_owned(),
            tick_secs: self.tick.as_secs(),
            fields: self
                .fields
                .iter()
                .map(|f| FieldSchema {
                    key: f.key.to_owned(),
                    rust_type: f.rust_type.to_owned(),
                    value_type: Some((f.value_type)()),
                    default: (f.default_json)(),
                    doc: f.doc.to_owned(),
                })
                .collect(),
        }
    }

    /// The index of the field stored as `key`.
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.key == key)
    }

    /// The URL a registry connects to when none is given: `LOCKSTEP_URL`, or
    /// the declared store kind's local default: `redis://127.0.0.1:6379`,
    /// `postgres://127.0.0.1:5432/postgres` (user and password from
    /// `PGUSER` and `PGPASSWORD`, else the login name), `sqlite://lockstep.db`
    /// (a file in the working directory, created if missing) or `memory://`.
    pub fn default_url(&self) -> String {
        match std::env::var("LOCKSTEP_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => match self.store {
                "redis" => "redis://127.0.0.1:6379".to_owned(),
                "postgres" => "postgres://127.0.0.1:5432/postgres".to_owned(),
                "sqlite" => "sqlite://lockstep.db".to_owned(),
                _ => "memory://".to_owned(),
            },
        }
    }
}

/// Field types: what a value must be to travel through a store.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a lockstep field",
    label = "field types must implement serde's Serialize and Deserialize, Clone, Send and Sync",
    note = "derive them: `#[derive(Clone, serde::Serialize, serde::Deserialize)]`"
)]
pub trait FieldType: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> FieldType for T {}
