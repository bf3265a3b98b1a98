//! A typed, borrowed view of the struct under `#[lockstep]`.

use proc_macro2::TokenStream;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{FieldAttrs, StructAttrs};
use crate::ctxt::Ctxt;

/// The struct and its options.
pub struct Input<'a> {
    pub item: &'a DeriveInput,
    pub attrs: StructAttrs,
    pub fields: Vec<Field<'a>>,
}

/// One field and its options.
pub struct Field<'a> {
    pub original: &'a syn::Field,
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
    pub kind: Kind,
}

/// How a field is stored on the hot path.
pub enum Kind {
    /// A primitive in an atomic, returned by value; the ident names its type.
    Scalar(Ident),
    /// A `Percent` in an atomic, returned by value, scoped to its field.
    Percent,
    /// Anything else, behind an arc-swap, returned as a `Ref`.
    Shared,
}

const SCALARS: &[&str] = &[
    "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "f32", "f64", "bool",
    "char",
];

impl<'a> Input<'a> {
    /// The view of `item`, or `None` (with errors in `cx`) when it is not a
    /// struct with named fields.
    pub fn from_syn(cx: &Ctxt, args: TokenStream, item: &'a DeriveInput) -> Option<Input<'a>> {
        let attrs = StructAttrs::parse(cx, args);
        let fields = match &item.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => &named.named,
                Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                        &data.fields,
                        "#[lockstep] needs named fields: a tuple struct's fields have no names to \
                         store them under; write `struct Name { field: Type, … }`",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                        &item.ident,
                        "#[lockstep] needs a struct with named fields, one per value; a unit \
                         struct has none",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "#[lockstep] goes on a struct with named fields, not an enum; to store an \
                     enum, make it the type of a field",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "#[lockstep] goes on a struct with named fields, not a union",
                );
                return None;
            }
        };
        let fields = fields
            .iter()
            .filter_map(|field| {
                let ident = field.ident.as_ref()?;
                Some(Field {
                    original: field,
                    ident,
                    ty: &field.ty,
                    attrs: FieldAttrs::parse(cx, field),
                    kind: Kind::of(&field.ty),
                })
            })
            .collect();
        Some(Input {
            item,
            attrs,
            fields,
        })
    }
}

impl Kind {
    fn of(ty: &Type) -> Kind {
        let Type::Path(path) = ty else {
            return Kind::Shared;
        };
        if path.qself.is_some() {
            return Kind::Shared;
        }
        if path.path.segments.iter().any(|s| !s.arguments.is_none()) {
            return Kind::Shared;
        }
        let names: Vec<String> = path
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match (path.path.leading_colon.is_some(), names.as_slice()) {
            (false, [name]) if SCALARS.contains(name) => {
                Kind::Scalar(path.path.segments[0].ident.clone())
            }
            // lockstep's `Percent`, as it is written: imported, or by its
            // path. Another type named `Percent` needs another path.
            (false, ["Percent"]) | (_, ["lockstep", "Percent"]) => Kind::Percent,
            _ => Kind::Shared,
        }
    }
}

impl Field<'_> {
    /// The field's name in the store: `key = "…"` or the field's name.
    pub fn key(&self) -> String {
        match &self.attrs.key {
            Some(key) => key.value(),
            None => unraw(self.ident),
        }
    }

    /// The field's doc attributes.
    pub fn doc_attrs(&self) -> impl Iterator<Item = &Attribute> {
        self.original
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
    }

    /// The field's doc comment as text.
    pub fn doc(&self) -> String {
        doc_text(&self.original.attrs)
    }
}

/// An identifier without its `r#`.
pub fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

/// The text of `#[doc = "…"]` attributes, lines trimmed and joined.
fn doc_text(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
