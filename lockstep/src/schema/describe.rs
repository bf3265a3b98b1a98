//! Describing a serde type as a [`ValueType`]: serde-reflection traces its
//! `Deserialize` implementation, through a guard that bounds the nesting
//! (a recursive enum would otherwise recurse without end) and marks where a
//! [`Percent`] is read.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_reflection::{
    ContainerFormat, Format, FormatHolder, Named, Registry, Samples, Tracer, TracerConfig,
    VariantFormat,
};

use super::{NamedType, ValueType, Variant};
use crate::percent::Percent;

/// The name a [`Percent`] is traced under.
const PERCENT: &str = "lockstep::Percent";

/// How deep values may nest before the description gives up (`Any`).
const MAX_DEPTH: usize = 32;

/// How many passes a trace may take to visit every variant.
const MAX_PASSES: usize = 1024;

/// What JSON values a `T` accepts: see [`ValueType::of`].
pub fn describe<T: Serialize + DeserializeOwned + 'static>() -> ValueType {
    let Some((described, samples)) = trace::<T>() else {
        return ValueType::Any;
    };
    for sample in &samples {
        if let Ok(json) = serde_json::to_value(sample)
            && described.check(&json).is_err()
        {
            return ValueType::Any;
        }
    }
    described
}

/// Traces `T` until every variant of every enum in it is seen; returns the
/// description and the values built on the way.
///
/// serde-reflection explores an enum's variants only when it is traced on
/// its own, which needs its type; here the enums are wherever `T` has them
/// (in a `Vec`, an `Option`, another enum's variant). So each pass traces
/// `T` afresh and the guard picks, for every enum the pass meets, one
/// variant to explore: one not seen yet, else one that leads to an enum
/// with variants not seen yet. The passes' formats are merged.
fn trace<T: DeserializeOwned>() -> Option<(ValueType, Vec<T>)> {
    let samples = Samples::new();
    let _exploring = Exploring::start();
    let mut top: Option<Format> = None;
    let mut containers = Registry::new();
    let mut variants: BTreeMap<String, BTreeMap<String, VariantFormat>> = BTreeMap::new();
    let mut values = Vec::new();
    for _pass in 0..MAX_PASSES {
        let mut tracer = Tracer::new(TracerConfig::default().is_human_readable(true));
        let seed = Guarded {
            inner: PhantomData::<T>,
            depth: 0,
        };
        let (mut format, value) = tracer.trace_type_once_with_seed(&samples, seed).ok()?;
        values.push(value);
        if top.is_none() {
            format.normalize().ok()?;
            top = Some(format);
        }
        for (name, container) in tracer.registry_unchecked() {
            match container {
                ContainerFormat::Enum(seen) => {
                    let known = variants.entry(name).or_default();
                    for variant in seen.into_values() {
                        let better = match known.get(&variant.name) {
                            None => true,
                            Some(old) => !complete(old) && complete(&variant.value),
                        };
                        if better {
                            known.insert(variant.name, variant.value);
                        }
                    }
                }
                other => {
                    let better = match containers.get(&name) {
                        None => true,
                        Some(old) => !complete(old) && complete(&other),
                    };
                    if better {
                        containers.insert(name, other);
                    }
                }
            }
        }
        if EXPLORER.with(|e| e.borrow_mut().as_mut().is_some_and(Explorer::finish_pass)) {
            // Every enum's variants in declaration order.
            let order = EXPLORER.with(|e| e.borrow().as_ref().map(Explorer::order))?;
            for (name, names) in order {
                let known = variants.remove(name)?;
                let mut all = BTreeMap::new();
                for (index, variant) in names.iter().enumerate() {
                    let value = known.get(*variant)?.clone();
                    let index = u32::try_from(index).ok()?;
                    all.insert(
                        index,
                        Named {
                            name: (*variant).to_owned(),
                            value,
                        },
                    );
                }
                containers.insert(name.to_owned(), ContainerFormat::Enum(all));
            }
            let described = convert(&top?, &containers, &mut Vec::new());
            return Some((described, values));
        }
    }
    None
}

/// Whether a format has no unknown parts left.
fn complete<F: FormatHolder>(format: &F) -> bool {
    format.visit(&mut |_| Ok(())).is_ok()
}

/// What the passes of one `trace` learnt about the enums they met.
#[derive(Default)]
struct Explorer {
    enums: BTreeMap<&'static str, EnumState>,
    /// The enum variants the current pass is inside of.
    stack: Vec<(&'static str, usize)>,
    /// The variant picked for each enum in the current pass.
    picked: BTreeMap<&'static str, usize>,
}

struct EnumState {
    variants: &'static [&'static str],
    seen: BTreeSet<usize>,
    /// The enums met inside each variant.
    reaches: Vec<BTreeSet<&'static str>>,
}

impl Explorer {
    fn incomplete(&self, name: &str) -> bool {
        self.enums
            .get(name)
            .is_some_and(|e| e.seen.len() < e.variants.len())
    }

    /// Meets enum `name` in this pass: which variant to explore, and
    /// whether serde-reflection explores it (only at the first meeting in a
    /// pass; later ones take variant 0).
    fn enter(&mut self, name: &'static str, variants: &'static [&'static str]) -> (usize, bool) {
        for (outer, index) in &self.stack {
            if let Some(state) = self.enums.get_mut(outer)
                && let Some(reaches) = state.reaches.get_mut(*index)
            {
                reaches.insert(name);
            }
        }
        if self.picked.contains_key(name) {
            self.stack.push((name, 0));
            return (0, false);
        }
        let state = self.enums.entry(name).or_insert_with(|| EnumState {
            variants,
            seen: BTreeSet::new(),
            reaches: vec![BTreeSet::new(); variants.len()],
        });
        let count = state.variants.len();
        let unseen = (0..count).find(|i| !state.seen.contains(i));
        let state = &self.enums[name];
        let leading = || (0..count).find(|&i| state.reaches[i].iter().any(|e| self.incomplete(e)));
        let index = unseen.or_else(leading).unwrap_or(0);
        if let Some(state) = self.enums.get_mut(name) {
            state.seen.insert(index);
        }
        self.picked.insert(name, index);
        self.stack.push((name, index));
        (index, true)
    }

    fn leave(&mut self) {
        self.stack.pop();
    }

    /// Ends a pass; whether every enum met is complete.
    fn finish_pass(&mut self) -> bool {
        self.picked.clear();
        self.stack.clear();
        self.enums
            .values()
            .all(|e| e.seen.len() == e.variants.len())
    }

    fn order(&self) -> Vec<(&'static str, &'static [&'static str])> {
        self.enums
            .iter()
            .map(|(name, e)| (*name, e.variants))
            .collect()
    }
}

thread_local! {
    /// The explorer of the `trace` running on this thread.
    static EXPLORER: RefCell<Option<Explorer>> = const { RefCell::new(None) };
}

/// Installs a fresh [`Explorer`] for one `trace`, and removes it on drop.
struct Exploring(Option<Explorer>);

impl Exploring {
    fn start() -> Exploring {
        Exploring(EXPLORER.with(|e| e.replace(Some(Explorer::default()))))
    }
}

impl Drop for Exploring {
    fn drop(&mut self) {
        let previous = self.0.take();
        EXPLORER.with(|e| *e.borrow_mut() = previous);
    }
}

/// A traced format as a [`ValueType`]; a container met again inside itself
/// is `Any` there.
fn convert(format: &Format, registry: &Registry, stack: &mut Vec<String>) -> ValueType {
    let boxed = |f: &Format, stack: &mut Vec<String>| Box::new(convert(f, registry, stack));
    match format {
        Format::Variable(v) => match &*v.borrow() {
            Some(known) => convert(known, registry, stack),
            None => ValueType::Any,
        },
        Format::TypeName(name) if name == PERCENT => ValueType::Percent,
        Format::TypeName(name) => {
            if stack.contains(name) {
                return ValueType::Any;
            }
            let Some(container) = registry.get(name) else {
                return ValueType::Any;
            };
            stack.push(name.clone());
            let described = match container {
                ContainerFormat::UnitStruct => ValueType::Unit,
                // serde_json writes a newtype struct as its content.
                ContainerFormat::NewTypeStruct(inner) => convert(inner, registry, stack),
                ContainerFormat::TupleStruct(items) => ValueType::Tuple {
                    items: items.iter().map(|f| convert(f, registry, stack)).collect(),
                },
                ContainerFormat::Struct(fields) => ValueType::Struct {
                    name: name.clone(),
                    fields: named(fields, registry, stack),
                },
                ContainerFormat::Enum(variants) => ValueType::Enum {
                    name: name.clone(),
                    variants: variants
                        .values()
                        .map(|v| Variant {
                            name: v.name.clone(),
                            value_type: match &v.value {
                                VariantFormat::Unit => None,
                                VariantFormat::Variable(_) => Some(ValueType::Any),
                                VariantFormat::NewType(inner) => {
                                    Some(convert(inner, registry, stack))
                                }
                                VariantFormat::Tuple(items) => Some(ValueType::Tuple {
                                    items: items
                                        .iter()
                                        .map(|f| convert(f, registry, stack))
                                        .collect(),
                                }),
                                VariantFormat::Struct(fields) => Some(ValueType::Struct {
                                    name: v.name.clone(),
                                    fields: named(fields, registry, stack),
                                }),
                            },
                        })
                        .collect(),
                },
            };
            stack.pop();
            described
        }
        Format::Unit => ValueType::Unit,
        Format::Bool => ValueType::Bool,
        Format::I8 => integer(i8::MIN.into(), 127),
        Format::I16 => integer(i16::MIN.into(), 32_767),
        Format::I32 => integer(i32::MIN.into(), 2_147_483_647),
        Format::I64 => integer(i64::MIN, 9_223_372_036_854_775_807),
        Format::I128 => integer(i64::MIN, u64::MAX),
        Format::U8 => integer(0, u8::MAX.into()),
        Format::U16 => integer(0, u16::MAX.into()),
        Format::U32 => integer(0, u32::MAX.into()),
        Format::U64 | Format::U128 => integer(0, u64::MAX),
        Format::F32 => ValueType::Float { bits: 32 },
        Format::F64 => ValueType::Float { bits: 64 },
        Format::Char => ValueType::Char,
        Format::Str => ValueType::String,
        Format::Bytes => ValueType::List {
            items: Box::new(integer(0, 255)),
            len: None,
        },
        Format::Option(inner) => ValueType::Option {
            some: boxed(inner, stack),
        },
        Format::Seq(inner) => ValueType::List {
            items: boxed(inner, stack),
            len: None,
        },
        Format::Map { key, value } => ValueType::Map {
            key: boxed(key, stack),
            value: boxed(value, stack),
        },
        Format::Tuple(items) => ValueType::Tuple {
            items: items.iter().map(|f| convert(f, registry, stack)).collect(),
        },
        Format::TupleArray { content, size } => ValueType::List {
            items: boxed(content, stack),
            len: Some(*size),
        },
    }
}

fn integer(min: i64, max: u64) -> ValueType {
    ValueType::Integer { min, max }
}

fn named(fields: &[Named<Format>], registry: &Registry, stack: &mut Vec<String>) -> Vec<NamedType> {
    fields
        .iter()
        .map(|f| NamedType {
            name: f.name.clone(),
            value_type: convert(&f.value, registry, stack),
        })
        .collect()
}

// The guard: a deserializer, visitor, seed and accesses that forward to the
// ones they wrap, counting how deep the value nests. Past `MAX_DEPTH` the
// trace fails (and the type is `Any`) instead of overflowing the stack. A
// seed that reads a `Percent` reads it as the newtype `lockstep::Percent`,
// so the trace shows where percentages are.

fn too_deep<E: de::Error>() -> E {
    E::custom("the value nests too deep to describe")
}

/// A seed, guarded.
struct Guarded<S> {
    inner: S,
    depth: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Guarded<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        if is_percent::<S::Value>() {
            return self.inner.deserialize(AsPercent(deserializer));
        }
        self.inner.deserialize(Guard {
            inner: deserializer,
            depth: self.depth,
        })
    }
}

/// Whether `T` is a [`Percent`].
fn is_percent<T: ?Sized>() -> bool {
    typeid::of::<T>() == TypeId::of::<Percent>()
}

/// The deserializer a `Percent` reads from: its number is traced inside
/// the newtype `lockstep::Percent`.
struct AsPercent<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for AsPercent<D> {
    type Error = D::Error;

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_newtype_struct(PERCENT, NumberInside(visitor))
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Reads the number inside the `lockstep::Percent` newtype.
struct NumberInside<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for NumberInside<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a percentage")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        deserializer.deserialize_f64(self.0)
    }
}

/// A deserializer, guarded.
struct Guard<D> {
    inner: D,
    depth: usize,
}

impl<D> Guard<D> {
    fn wrap<V>(&self, visitor: V) -> Wrapped<V> {
        Wrapped {
            inner: visitor,
            depth: self.depth,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        let picked = EXPLORER.with(|e| Some(e.borrow_mut().as_mut()?.enter(name, variants)));
        // Offered only the picked variant, serde-reflection explores it.
        let offered = match picked {
            Some((index, true)) => variants.get(index..=index).unwrap_or(variants),
            _ => variants,
        };
        let result = self.inner.deserialize_enum(name, offered, visitor);
        EXPLORER.with(|e| e.borrow_mut().as_mut().map(Explorer::leave));
        result
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor, guarded: what it is handed to read nested values is guarded
/// one level deeper.
struct Wrapped<V> {
    inner: V,
    depth: usize,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrapped<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        if typeid::of::<V::Value>() == TypeId::of::<Option<Percent>>() {
            return self.inner.visit_some(AsPercent(deserializer));
        }
        self.inner.visit_some(Guard {
            inner: deserializer,
            depth: self.depth + 1,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.inner.visit_newtype_struct(Guard {
            inner: deserializer,
            depth: self.depth + 1,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Guard {
            inner: seq,
            depth: self.depth,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Guard {
            inner: map,
            depth: self.depth,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Guard {
            inner: data,
            depth: self.depth,
        })
    }
}

impl<D> Guard<D> {
    fn seed<S>(&self, seed: S) -> Guarded<S> {
        Guarded {
            inner: seed,
            depth: self.depth + 1,
        }
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Guard<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Guard<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Guard<A> {
    type Error = A::Error;
    type Variant = Guard<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Guard<A::Variant>), A::Error> {
        // The variant's name is not a nested value: read it as it is.
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Guard {
                inner: variant,
                depth: self.depth,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Guard<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = Wrapped {
            inner: visitor,
            depth: self.depth + 1,
        };
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Wrapped {
            inner: visitor,
            depth: self.depth + 1,
        };
        self.inner.struct_variant(fields, visitor)
    }
}
