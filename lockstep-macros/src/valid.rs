//! Checks of meaning: a tick that parses and is in bounds, a store kind not
//! named after another, names the store can hold, keys that are unique, a
//! struct the macro can serve. Each error points at the offending token and says what is right.

use std::collections::HashMap;

use syn::LitStr;

use crate::ast::{Input, unraw};
use crate::attr::Required;
use crate::ctxt::Ctxt;

/// What the checks found out, for expansion.
pub struct Checked {
    /// The tick in seconds.
    pub tick_secs: u32,
    /// The declared kind of store.
    pub store: String,
    /// Whether flips follow the store's clock (`clock = "store"`).
    pub store_clock: bool,
}

/// Runs every check, collecting all errors in `cx`.
pub fn check(cx: &Ctxt, input: &Input) -> Option<Checked> {
    let item = input.item;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "a #[lockstep] struct cannot be generic: its registry is one static whose fields \
             have concrete types",
        );
    }
    let tick_secs = match &input.attrs.tick {
        Required::Given(lit) => match crate::tick::parse(&lit.value()) {
            Ok(secs) => Some(secs),
            Err(message) => {
                cx.error_spanned_by(lit, message);
                None
            }
        },
        Required::Invalid => None,
        Required::Missing => {
            cx.syn_error(syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[lockstep] needs a tick: add `tick = \"10m\"` (from \"1s\" to \"1d\")",
            ));
            None
        }
    };
    let store = match &input.attrs.store {
        // Which kinds there are is lockstep's table of store kinds: the
        // expansion checks the name against it when it is compiled. Here,
        // the names people mean another kind by.
        Required::Given(lit) => match hint(&lit.value()) {
            None => Some(lit.value()),
            Some(hint) => {
                cx.error_spanned_by(lit, format!("unknown store \"{}\"; {hint}", lit.value()));
                None
            }
        },
        Required::Invalid => None,
        Required::Missing => {
            cx.syn_error(syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[lockstep] needs a store: add `store = \"redis\"`, or the name of another \
                 kind of store lockstep opens (`lockstep::store::supported_schemes()`)",
            ));
            None
        }
    };
    if let Some(namespace) = &input.attrs.namespace {
        name(cx, namespace, "namespace");
    }
    let store_clock = match &input.attrs.clock {
        None => false,
        Some(lit) => match lit.value().as_str() {
            "local" => false,
            "store" => true,
            other => {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "unknown clock \"{other}\"; expected \"local\" (flips follow this \
                         process's clock, the default) or \"store\" (they follow the store's)"
                    ),
                );
                false
            }
        },
    };
    if let Some(static_name) = &input.attrs.static_name
        && syn::parse_str::<syn::Ident>(&static_name.value()).is_err()
    {
        cx.error_spanned_by(
            static_name,
            format!(
                "static_name \"{}\" is not a Rust identifier; write e.g. static_name = \"FLAGS\"",
                static_name.value()
            ),
        );
    }
    let mut keys: HashMap<String, ()> = HashMap::new();
    for field in &input.fields {
        let key = field.key();
        let rust_name = unraw(field.ident);
        // Names of `Registry`'s methods are checked by the generated code.
        if rust_name == "new" {
            cx.error_spanned_by(
                field.ident,
                format!(
                    "a field named `new` would clash with the registry's constructor; rename the \
                     field (its store key can stay: `#[lockstep(key = \"{key}\")]`)"
                ),
            );
        }
        if let Some(lit) = &field.attrs.key {
            name(cx, lit, "key");
        }
        if keys.insert(key.clone(), ()).is_some() {
            let message = format!(
                "two fields are stored under the key \"{key}\"; give one of them another \
                 `#[lockstep(key = \"…\")]`"
            );
            match &field.attrs.key {
                Some(lit) => cx.error_spanned_by(lit, message),
                None => cx.error_spanned_by(field.ident, message),
            }
        }
    }
    Some(Checked {
        tick_secs: tick_secs?,
        store: store?,
        store_clock,
    })
}

/// A namespace or key: what the store layout and the CLI's `NAMESPACE.FIELD`
/// syntax can hold.
fn name(cx: &Ctxt, lit: &LitStr, what: &str) {
    let value = lit.value();
    let ok = !value.is_empty()
        && value.len() <= 100
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        cx.error_spanned_by(
            lit,
            format!(
                "{what} \"{value}\" is not allowed: use 1 to 100 ASCII letters, digits, `_` and \
                 `-` (no dots, braces, spaces or glob characters, which the store layout and \
                 the CLI's NAMESPACE.FIELD syntax reserve)"
            ),
        );
    }
}

/// What to say of a store named after another kind, if `name` is one
/// such name: another database's name, a driver's, or a kind in capitals.
pub fn hint(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "postgresql" | "pg" | "psql" | "pgsql" => "did you mean \"postgres\"?",
        "sqlite3" | "sqlite2" | "lite" => "did you mean \"sqlite\"?",
        "mariadb" | "mysql8" | "percona" => "MariaDB and MySQL use \"mysql\"",
        "valkey" | "keydb" | "dragonfly" => "servers that speak the Redis protocol use \"redis\"",
        _ if lower != name => "store kinds are lowercase",
        _ => return None,
    })
}
