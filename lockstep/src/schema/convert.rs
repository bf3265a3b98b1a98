//! serde-reflection's formats as [`ValueType`]s.

use serde_reflection::{ContainerFormat, Format, Named, Registry, VariantFormat};

use super::guard::PERCENT;
use super::{NamedType, ValueType, Variant};

/// A traced format as a [`ValueType`]; a container met again inside itself
/// is `Any` there.
pub(super) fn convert(format: &Format, registry: &Registry, stack: &mut Vec<String>) -> ValueType {
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
