//! The macro contract: what `#[lockstep]` generates for a struct and the
//! runtime reads, and the generic helpers the generated code calls. Only
//! `#[lockstep]` implements [`Fields`]; the generated code reaches the rest
//! through `lockstep::__private`.
//!
//! Every use of a field's type that needs its traits sits in one body (the
//! registry's [`Fields::DEF`]), spanned at the type, and every helper asks
//! only for [`FieldType`]: a type that is not a field type is one error,
//! whichever of its traits it lacks.

use std::any::Any;

use crate::percent::Percent;
use crate::schema::{FieldSchema, Schema, ValueType};
use crate::slot::Shared;
use crate::tick::Tick;

pub use crate::value::{FieldType, Value};

/// Implemented by `#[lockstep]` only: it seals [`Fields`].
#[doc(hidden)]
pub trait Sealed {}

/// A struct under `#[lockstep]`: what the runtime knows of its fields.
///
/// `#[lockstep]` implements it for the struct it is written on (it is
/// sealed: nothing else can); its items are the macro's business. Use it as
/// a bound, to write code that works with any registry:
///
/// ```
/// use lockstep::{Fields, Registry, lockstep};
///
/// /// The namespace and the number of fields of any registry.
/// fn shape<S: Fields>(registry: &Registry<S>) -> (String, usize) {
///     (registry.namespace().to_owned(), registry.schema().fields.len())
/// }
///
/// #[lockstep(tick = "1m", store = "memory")]
/// pub struct Limits {
///     #[lockstep(default = 100)]
///     pub per_second: u32,
/// }
///
/// assert_eq!(shape(&LIMITS), ("limits".to_owned(), 1));
/// ```
pub trait Fields: Sealed + Sized + Send + Sync + 'static {
    /// The per-field slots the accessors read.
    #[doc(hidden)]
    type Slots: Send + Sync + 'static;
    /// The registry's definition.
    #[doc(hidden)]
    const DEF: &'static RegistryDef<Self>;
    /// Every field at its default.
    #[doc(hidden)]
    fn defaults() -> Self;

    /// Sets field `index` to `value`, which has that field's type.
    #[doc(hidden)]
    fn assign(&mut self, index: usize, value: &(dyn Any + Send + Sync)) {
        if let Some(access) = Self::DEF.access.get(index) {
            (access.assign)(self, value);
        }
    }

    /// Publishes every field to its slot: `values` holds each field's
    /// decoded value, in order (`None`: the field's default), which the
    /// slot takes as it is, without a copy.
    #[doc(hidden)]
    fn publish(values: &[Option<Value>], slots: &Self::Slots) {
        for (access, value) in Self::DEF.access.iter().zip(values) {
            (access.publish)(value.as_ref(), slots);
        }
    }
}

/// A registry as declared: its namespace, tick, store kind and fields.
#[doc(hidden)]
pub struct RegistryDef<S: Fields> {
    /// The registry's name in the store.
    pub namespace: &'static str,
    /// The tick.
    pub tick: Tick,
    /// The declared store kind (`store = "…"`: `"memory"`, `"redis"`, …).
    pub store: &'static str,
    /// Whether flips follow the store's clock (`clock = "store"`).
    pub store_clock: bool,
    /// The fields in declaration order.
    pub fields: &'static [FieldDef],
    /// How to set and publish each field, in the same order.
    pub access: &'static [Access<S>],
}

/// One field as declared.
#[doc(hidden)]
pub struct FieldDef {
    /// The name in the store.
    pub key: &'static str,
    /// The type as written.
    pub rust_type: &'static str,
    /// The doc comment.
    pub doc: &'static str,
    /// Decodes JSON text into the field's type.
    pub decode: fn(&str) -> Result<Value, String>,
    /// Encodes a value of the field's type (one `decode` made) as JSON
    /// text.
    pub encode: fn(&Value) -> String,
    /// The default as JSON.
    pub default_json: fn() -> serde_json::Value,
    /// What JSON values the field accepts.
    pub value_type: fn() -> ValueType,
}

/// How to set one field of `S` from a decoded value, and publish a decoded
/// value to its slot.
#[doc(hidden)]
pub struct Access<S: Fields> {
    /// Sets the field to a value of its type.
    pub assign: fn(&mut S, &(dyn Any + Send + Sync)),
    /// Publishes a decoded value of the field (`None`: its default) to its
    /// slot.
    pub publish: fn(Option<&Value>, &S::Slots),
}

impl FieldDef {
    /// The field stored as `key`, of type `T`.
    pub const fn of<T: FieldType>(
        key: &'static str,
        rust_type: &'static str,
        doc: &'static str,
        default_json: fn() -> serde_json::Value,
    ) -> FieldDef {
        FieldDef {
            key,
            rust_type,
            doc,
            decode: crate::value::decode::<T>,
            encode: crate::value::encode_decoded::<T>,
            default_json,
            value_type: crate::schema::traced::<T>,
        }
    }
}

impl std::fmt::Debug for FieldDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldDef")
            .field("key", &self.key)
            .field("rust_type", &self.rust_type)
            .finish_non_exhaustive()
    }
}

impl<S: Fields> std::fmt::Debug for RegistryDef<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryDef")
            .field("namespace", &self.namespace)
            .field("tick", &self.tick)
            .field("store", &self.store)
            .field("store_clock", &self.store_clock)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl<S: Fields> RegistryDef<S> {
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

    /// The URL a registry connects to when none is given: `LOCKSTEP_URL`, or
    /// the declared store kind's local default: `redis://127.0.0.1:6379`,
    /// `postgres://127.0.0.1:5432/postgres` (user and password from
    /// `PGUSER` and `PGPASSWORD`, else the login name),
    /// `mysql://root@127.0.0.1:3306/lockstep` (a database that must exist:
    /// `start` names it when it does not), `sqlite://lockstep.db` (a file in
    /// the working directory, created if missing) or `memory://`.
    pub fn default_url(&self) -> String {
        match std::env::var("LOCKSTEP_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => default_url_of(self.store).to_owned(),
        }
    }
}

/// The local default URL of a declared store kind.
fn default_url_of(store: &str) -> &'static str {
    crate::store::kind::named(store).map_or_else(
        || unreachable!("`#[lockstep]` accepts no store kind `{store}`"),
        |kind| kind.default_url,
    )
}

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

/// `value` as JSON, for the published schema.
pub fn to_json<T: FieldType>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Sets `field` to a clone of `value`, which holds a `T`.
pub fn assign<T: FieldType>(field: &mut T, value: &(dyn Any + Send + Sync)) {
    if let Some(value) = value.downcast_ref::<T>() {
        field.clone_from(value);
    }
}

/// Sets a `Percent` field to `value`, scoped to the field's `seed`.
pub fn assign_percent<T>(
    field: &mut T,
    value: &(dyn Any + Send + Sync),
    seed: u64,
    of: PercentOf<T>,
) {
    if let Some(value) = value.downcast_ref::<Percent>() {
        *field = (of.from)(value.__scoped(seed));
    }
}

/// Publishes `value`, a `T` the field decoded (`None`: its default), to
/// its slot: the slot shares the decoded value, it does not clone it.
pub fn publish<T: FieldType>(slot: &Shared<T>, value: Option<&Value>) {
    slot.publish(value);
}

/// What a name that no method of [`Registry`](crate::Registry) has resolves
/// to: a field's accessor may take that name.
#[doc(hidden)]
pub struct FreeName;

/// Implemented by [`FreeName`] only: a field named like a method of
/// `lockstep::Registry` would hide it behind the registry's `Deref`.
#[diagnostic::on_unimplemented(
    message = "this field's name is taken by a method of `lockstep::Registry`",
    label = "every registry has a method of this name, which the field's accessor would hide",
    note = "rename the field; its store key can stay: `#[lockstep(key = \"…\")]`"
)]
pub trait NotARegistryMethod {}

impl NotARegistryMethod for FreeName {}

/// Checks at compile time that a field's name is free: `name` is what the
/// field's name resolves to on `Registry<S>`.
pub const fn free_name<T: NotARegistryMethod>(_name: &T) {}

/// Implemented by [`Percent`] only: a field type written `Percent` is
/// stored in an atomic as lockstep's.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not lockstep's `Percent`",
    label = "a field type written `Percent` is read as `lockstep::Percent`",
    note = "for another type of that name, write a longer path to it, e.g. `crate::shares::Percent`"
)]
pub trait IsPercent: Sized {
    /// The value as lockstep's `Percent` (itself).
    fn to_percent(self) -> Percent;
    /// The value from lockstep's `Percent` (itself).
    fn from_percent(percent: Percent) -> Self;
}

impl IsPercent for Percent {
    #[inline(always)]
    fn to_percent(self) -> Percent {
        self
    }
    #[inline(always)]
    fn from_percent(percent: Percent) -> Self {
        percent
    }
}

/// The conversions between a `Percent` field's type and lockstep's
/// `Percent` (the identity): one bound, [`IsPercent`], checked at one
/// call, so a type that is not lockstep's is one error.
pub struct PercentOf<T> {
    /// Into lockstep's `Percent`.
    pub to: fn(T) -> Percent,
    /// From lockstep's `Percent`.
    pub from: fn(Percent) -> T,
}

/// The conversions of a `Percent` field of type `T`.
pub const fn percent<T: IsPercent>() -> PercentOf<T> {
    PercentOf {
        to: T::to_percent,
        from: T::from_percent,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_declared_store_kind_has_its_own_default() {
        for (kind, scheme) in [
            ("redis", "redis://"),
            ("postgres", "postgres://"),
            ("mysql", "mysql://"),
            ("sqlite", "sqlite://"),
            ("memory", "memory://"),
        ] {
            assert!(super::default_url_of(kind).starts_with(scheme), "{kind}");
        }
    }
}
