//! The options of `#[lockstep(...)]` on the struct and its fields, each
//! keeping the tokens it came from so errors point at them.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, Lit, LitStr};

use crate::ctxt::Ctxt;

/// The options the struct attribute accepts.
pub const STRUCT_OPTIONS: &str = "tick, backend, namespace, static_name";
/// The options a field attribute accepts.
pub const FIELD_OPTIONS: &str = "default, key";

/// One option: its value, once, and where it was written.
pub struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: &'static str,
    given: bool,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: &'static str) -> Self {
        Attr {
            cx,
            name,
            given: false,
            value: None,
        }
    }

    /// Records `value`, or that the option was written with a value already
    /// reported as wrong (`None`); a second occurrence is an error at its key.
    fn set(&mut self, key: impl ToTokens, value: Option<T>) {
        if self.given {
            self.cx.error_spanned_by(
                key,
                format!("duplicate option `{}`: give it once", self.name),
            );
        } else {
            self.given = true;
            self.value = value;
        }
    }

    pub fn get(self) -> Option<T> {
        self.value
    }
}

/// A struct option that must be written, with what the value looks like.
pub struct Required<'c> {
    pub attr: Attr<'c, LitStr>,
    pub example: &'static str,
    pub accepted: &'static str,
}

impl Required<'_> {
    /// Reports the option at the attribute when it was not written at all
    /// (a wrong value was reported at the value already).
    fn check(&self) {
        if !self.attr.given {
            self.attr.cx.syn_error(syn::Error::new(
                proc_macro2::Span::call_site(),
                format!(
                    "#[lockstep] needs a {name}: add `{name} = {example}` ({accepted})",
                    name = self.attr.name,
                    example = self.example,
                    accepted = self.accepted,
                ),
            ));
        }
    }
}

/// The struct's options.
pub struct StructAttrs {
    pub tick: Option<LitStr>,
    pub backend: Option<LitStr>,
    pub namespace: Option<LitStr>,
    pub static_name: Option<LitStr>,
}

/// The options of one field.
pub struct FieldAttrs {
    pub default: Option<Expr>,
    pub key: Option<LitStr>,
}

impl StructAttrs {
    /// Reads `tick = "…", backend = "…", …`.
    pub fn parse(cx: &Ctxt, args: TokenStream) -> StructAttrs {
        let mut tick = Attr::none(cx, "tick");
        let mut backend = Attr::none(cx, "backend");
        let mut namespace = Attr::none(cx, "namespace");
        let mut static_name = Attr::none(cx, "static_name");
        let parser = syn::meta::parser(|meta| {
            let path = meta.path.clone();
            if path.is_ident("tick") {
                if let Some(s) = string_value(cx, &meta, "tick", "\"10m\"")? {
                    tick.set(&path, s);
                }
            } else if path.is_ident("backend") {
                if let Some(s) = string_value(cx, &meta, "backend", "\"redis\"")? {
                    backend.set(&path, s);
                }
            } else if path.is_ident("namespace") {
                if let Some(s) = string_value(cx, &meta, "namespace", "\"flags\"")? {
                    namespace.set(&path, s);
                }
            } else if path.is_ident("static_name") {
                if let Some(s) = string_value(cx, &meta, "static_name", "\"FLAGS\"")? {
                    static_name.set(&path, s);
                }
            } else {
                unknown(cx, &meta, STRUCT_OPTIONS)?;
            }
            Ok(())
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, args) {
            cx.syn_error(e);
        }
        StructAttrs {
            tick: tick.get(),
            backend: backend.get(),
            namespace: namespace.get(),
            static_name: static_name.get(),
        }
    }
}

impl FieldAttrs {
    /// Reads every `#[lockstep(default = …, key = "…")]` on a field.
    pub fn parse(cx: &Ctxt, field: &syn::Field) -> FieldAttrs {
        let mut default = Attr::none(cx, "default");
        let mut key = Attr::none(cx, "key");
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("lockstep")) {
            let result = attr.parse_nested_meta(|meta| {
                let path = meta.path.clone();
                if path.is_ident("default") {
                    default.set(&path, meta.value()?.parse::<Expr>()?);
                } else if path.is_ident("key") {
                    if let Some(s) = string_value(cx, &meta, "key", "\"foobar_percent\"")? {
                        key.set(&path, s);
                    }
                } else {
                    unknown(cx, &meta, FIELD_OPTIONS)?;
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        FieldAttrs {
            default: default.get(),
            key: key.get(),
        }
    }
}

/// `name = "string"`; anything else is an error at the value.
fn string_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    name: &str,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let expr: Expr = meta.value()?.parse()?;
    if let Expr::Lit(lit) = &expr
        && let Lit::Str(s) = &lit.lit
    {
        return Ok(Some(s.clone()));
    }
    cx.error_spanned_by(
        &expr,
        format!("`{name}` takes a string literal, e.g. `{name} = {example}`"),
    );
    Ok(None)
}

/// An unknown option: an error at its key, its value skipped.
fn unknown(cx: &Ctxt, meta: &ParseNestedMeta, expected: &str) -> syn::Result<()> {
    let name = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| meta.path.to_token_stream().to_string().replace(' ', ""));
    cx.error_spanned_by(
        &meta.path,
        format!("unknown option `{name}`; expected one of: {expected}"),
    );
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _: proc_macro2::TokenTree = meta.input.parse()?;
    }
    Ok(())
}
