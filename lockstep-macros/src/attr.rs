//! The options of `#[lockstep(...)]` on the struct and its fields, each
//! keeping the tokens it came from so errors point at them.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, Lit, LitStr};

use crate::ctxt::Ctxt;

/// The options the struct attribute accepts.
const STRUCT_OPTIONS: &[&str] = &["tick", "store", "namespace", "static_name", "clock"];
/// Other names an option is accepted under: (the other name, the option).
/// `backend` is what `store` was first called.
const ALIASES: &[(&str, &str)] = &[("backend", "store")];
/// The options a field attribute accepts.
const FIELD_OPTIONS: &[&str] = &["default", "key"];

/// One option: its value, once, and where it was written.
pub struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: &'static str,
    given: bool,
    /// Whether it was given under another name (an alias) first.
    by_alias: bool,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: &'static str) -> Self {
        Attr {
            cx,
            name,
            given: false,
            by_alias: false,
            value: None,
        }
    }

    /// Records `value`, or that the option was written with a value already
    /// reported as wrong (`None`); a second occurrence, under its name or
    /// an alias, is an error at its key.
    fn set(&mut self, key: &syn::Path, value: Option<T>) {
        let by_alias = !key.is_ident(self.name);
        if self.given {
            let message = match alias_of(self.name) {
                // `store = …, backend = …`, either way round.
                Some(alias) if by_alias != self.by_alias => format!(
                    "duplicate option `{}` (`{alias}` is another name for it): give it once",
                    self.name
                ),
                Some(alias) if by_alias => format!("duplicate option `{alias}`: give it once"),
                _ => format!("duplicate option `{}`: give it once", self.name),
            };
            self.cx.error_spanned_by(key, message);
        } else {
            self.by_alias = by_alias;
            self.given = true;
            self.value = value;
        }
    }

    pub fn get(self) -> Option<T> {
        self.value
    }
}

/// A required option as written.
pub enum Required<T> {
    /// Written, with a good value.
    Given(T),
    /// Written with a value already reported as wrong, or perhaps written
    /// after a syntax error that stopped the parse: nothing more to say.
    Invalid,
    /// Not written at all.
    Missing,
}

impl<T> Attr<'_, T> {
    /// The value of a required option; `complete` says whether the whole
    /// attribute was read (after a syntax error, an option not seen may
    /// still have been written).
    fn required(self, complete: bool) -> Required<T> {
        match self.value {
            Some(value) => Required::Given(value),
            None if self.given || !complete => Required::Invalid,
            None => Required::Missing,
        }
    }
}

/// The struct's options.
pub struct StructAttrs {
    pub tick: Required<LitStr>,
    /// `store = "…"`, or its alias `backend = "…"`.
    pub store: Required<LitStr>,
    pub namespace: Option<LitStr>,
    pub static_name: Option<LitStr>,
    pub clock: Option<LitStr>,
}

/// The options of one field.
pub struct FieldAttrs {
    pub default: Option<Expr>,
    pub key: Option<LitStr>,
}

impl StructAttrs {
    /// Reads `tick = "…", store = "…", …` (`backend = "…"` is accepted
    /// for `store`).
    pub fn parse(cx: &Ctxt, args: TokenStream) -> StructAttrs {
        let mut tick = Attr::none(cx, "tick");
        let mut store = Attr::none(cx, "store");
        let mut namespace = Attr::none(cx, "namespace");
        let mut static_name = Attr::none(cx, "static_name");
        let mut clock = Attr::none(cx, "clock");
        let parser = syn::meta::parser(|meta| {
            let path = meta.path.clone();
            if path.is_ident("tick") {
                tick.set(&path, string_value(cx, &meta, "tick", "\"10m\"")?);
            } else if path.is_ident("store") || path.is_ident("backend") {
                // Errors name the option as written.
                let written = if path.is_ident("store") {
                    "store"
                } else {
                    "backend"
                };
                store.set(&path, string_value(cx, &meta, written, "\"redis\"")?);
            } else if path.is_ident("namespace") {
                namespace.set(&path, string_value(cx, &meta, "namespace", "\"flags\"")?);
            } else if path.is_ident("static_name") {
                static_name.set(&path, string_value(cx, &meta, "static_name", "\"FLAGS\"")?);
            } else if path.is_ident("clock") {
                clock.set(&path, string_value(cx, &meta, "clock", "\"store\"")?);
            } else {
                unknown(cx, &meta, STRUCT_OPTIONS)?;
            }
            Ok(())
        });
        let complete = match syn::parse::Parser::parse2(parser, args) {
            Ok(()) => true,
            Err(e) => {
                cx.syn_error(e);
                false
            }
        };
        StructAttrs {
            tick: tick.required(complete),
            store: store.required(complete),
            namespace: namespace.get(),
            static_name: static_name.get(),
            clock: clock.get(),
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
                    default.set(&path, expr_value(cx, &meta, "default", "0")?);
                } else if path.is_ident("key") {
                    key.set(&path, string_value(cx, &meta, "key", "\"foobar_percent\"")?);
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

/// `name = <expr>`; `name` alone is an error at the name.
fn expr_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    name: &str,
    example: &str,
) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(syn::Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            format!("`{name}` takes a value: write `{name} = {example}`"),
        );
        skip_group(meta)?;
        return Ok(None);
    }
    Ok(Some(meta.value()?.parse()?))
}

/// `name = "string"`; anything else is an error at the value (or at the
/// name, when there is no value), saying how to write it.
fn string_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    name: &str,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let Some(expr) = expr_value(cx, meta, name, example)? else {
        return Ok(None);
    };
    let quoted = match &expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => return Ok(Some(s.clone())),
            // `tick = 10`: seconds are the likely meaning.
            Lit::Int(int) if name == "tick" => Some(format!("{}s", int.base10_digits())),
            Lit::Int(_) | Lit::Float(_) | Lit::Bool(_) => Some(expr.to_token_stream().to_string()),
            _ => None,
        },
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().map(ToString::to_string),
        _ => None,
    };
    let message = match quoted {
        Some(quoted) => {
            format!("`{name}` takes a string literal: write `{name} = \"{quoted}\"`")
        }
        None => format!("`{name}` takes a string literal, e.g. `{name} = {example}`"),
    };
    cx.error_spanned_by(&expr, message);
    Ok(None)
}

/// An unknown option: an error at its key, naming a close known option if
/// there is one, its value skipped.
fn unknown(cx: &Ctxt, meta: &ParseNestedMeta, expected: &[&str]) -> syn::Result<()> {
    let name = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| meta.path.to_token_stream().to_string().replace(' ', ""));
    let mut message = format!(
        "unknown option `{name}`; expected one of: {}",
        expected.join(", ")
    );
    if let Some(close) = closest(&name, expected) {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    cx.error_spanned_by(&meta.path, message);
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else {
        skip_group(meta)?;
    }
    Ok(())
}

/// Skips `(…)` after an option's name, if there is one.
fn skip_group(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(syn::token::Paren) {
        let _: proc_macro2::TokenTree = meta.input.parse()?;
    }
    Ok(())
}

/// The other name an option is accepted under, if it has one.
fn alias_of(name: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(_, option)| *option == name)
        .map(|(alias, _)| *alias)
}

/// The known option `name` is most likely a misspelling of, if any: one at
/// most two edits away from it or from one of its aliases (one for short
/// names; ignoring case, `-` for `_`) or a usual other name.
fn closest<'a>(name: &str, expected: &[&'a str]) -> Option<&'a str> {
    const OTHER_NAMES: &[(&str, &str)] = &[
        ("interval", "tick"),
        ("period", "tick"),
        ("refresh", "tick"),
        ("database", "store"),
        ("db", "store"),
        ("prefix", "namespace"),
        ("static", "static_name"),
        ("name", "key"),
        ("rename", "key"),
        ("value", "default"),
    ];
    let name = name.to_ascii_lowercase().replace('-', "_");
    if let Some((_, known)) = OTHER_NAMES.iter().find(|(other, _)| *other == name)
        && let Some(known) = expected.iter().find(|e| *e == known)
    {
        return Some(known);
    }
    let aliases = ALIASES.iter().filter_map(|(alias, option)| {
        let known = expected.iter().find(|e| *e == option)?;
        Some((*alias, *known))
    });
    expected
        .iter()
        .map(|known| (*known, *known))
        .chain(aliases)
        .map(|(spelling, known)| (edit_distance(&name, spelling), spelling, known))
        .filter(|(distance, spelling, _)| *distance <= if spelling.len() <= 4 { 1 } else { 2 })
        .min_by_key(|(distance, _, _)| *distance)
        .map(|(_, _, known)| known)
}

/// Levenshtein distance, with a swap of two neighbours counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn close_names() {
        let fields = &["default", "key"];
        assert_eq!(closest("defualt", fields), Some("default"));
        assert_eq!(closest("Default", fields), Some("default"));
        assert_eq!(closest("rename", fields), Some("key"));
        assert_eq!(closest("skip", fields), None);
        assert_eq!(closest("def", fields), None);
        let structs = &["tick", "store", "namespace", "static_name"];
        assert_eq!(closest("ticks", structs), Some("tick"));
        assert_eq!(closest("static-name", structs), Some("static_name"));
        assert_eq!(closest("stroe", structs), Some("store"));
        assert_eq!(closest("database", structs), Some("store"));
        // Close to `backend`, the other name of `store`.
        assert_eq!(closest("backends", structs), Some("store"));
        assert_eq!(closest("key", structs), None);
    }
}
