//! The guard a trace reads through: a deserializer, visitor, seed and
//! accesses that forward to the ones they wrap, counting how deep the value
//! nests, and asking the trace's [`Explorer`] which variant of each enum to
//! explore. Past `MAX_DEPTH` the trace fails (and the type is `Any`)
//! instead of overflowing the stack. A seed that reads a `Percent` reads it
//! as the newtype `lockstep::Percent`, so the trace shows where percentages
//! are.

use std::any::TypeId;
use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::explore::Explorer;
use crate::percent::Percent;

/// The name a [`Percent`] is traced under.
pub(super) const PERCENT: &str = "lockstep::Percent";

/// How deep values may nest before the description gives up (`Any`).
const MAX_DEPTH: usize = 32;

fn too_deep<E: de::Error>() -> E {
    E::custom("the value nests too deep to describe")
}

/// A seed, guarded.
pub(super) struct Guarded<'e, S> {
    pub(super) inner: S,
    pub(super) depth: usize,
    /// The explorer of the trace, which picks the variants to explore.
    pub(super) explorer: &'e RefCell<Explorer>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Guarded<'_, S> {
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
            explorer: self.explorer,
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
struct Guard<'e, D> {
    inner: D,
    depth: usize,
    explorer: &'e RefCell<Explorer>,
}

impl<'e, D> Guard<'e, D> {
    fn wrap<V>(&self, visitor: V) -> Wrapped<'e, V> {
        Wrapped {
            inner: visitor,
            depth: self.depth,
            explorer: self.explorer,
        }
    }

    fn seed<S>(&self, seed: S) -> Guarded<'e, S> {
        Guarded {
            inner: seed,
            depth: self.depth + 1,
            explorer: self.explorer,
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

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
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
        let explorer = self.explorer;
        let picked = explorer.borrow_mut().enter(name, variants);
        // Offered only the picked variant, serde-reflection explores it.
        let offered = match picked {
            (index, true) => variants.get(index..=index).unwrap_or(variants),
            _ => variants,
        };
        let result = self.inner.deserialize_enum(name, offered, visitor);
        explorer.borrow_mut().leave();
        result
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor, guarded: what it is handed to read nested values is guarded
/// one level deeper.
struct Wrapped<'e, V> {
    inner: V,
    depth: usize,
    explorer: &'e RefCell<Explorer>,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'e, V> Wrapped<'e, V> {
    /// A guard over `inner`, `deeper` levels below this visitor.
    fn over<I>(&self, inner: I, deeper: usize) -> Guard<'e, I> {
        Guard {
            inner,
            depth: self.depth + deeper,
            explorer: self.explorer,
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrapped<'_, V> {
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
        let guard = self.over(deserializer, 1);
        self.inner.visit_some(guard)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let guard = self.over(deserializer, 1);
        self.inner.visit_newtype_struct(guard)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let guard = self.over(seq, 0);
        self.inner.visit_seq(guard)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let guard = self.over(map, 0);
        self.inner.visit_map(guard)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let guard = self.over(data, 0);
        self.inner.visit_enum(guard)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Guard<'_, A> {
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

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Guard<'_, A> {
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

impl<'de, 'e, A: EnumAccess<'de>> EnumAccess<'de> for Guard<'e, A> {
    type Error = A::Error;
    type Variant = Guard<'e, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Guard<'e, A::Variant>), A::Error> {
        // The variant's name is not a nested value: read it as it is.
        let (value, variant) = self.inner.variant_seed(seed)?;
        let variant = Guard {
            inner: variant,
            depth: self.depth,
            explorer: self.explorer,
        };
        Ok((value, variant))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Guard<'_, A> {
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
            explorer: self.explorer,
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
            explorer: self.explorer,
        };
        self.inner.struct_variant(fields, visitor)
    }
}
