//! `ls`, and the view of whole registries that `ls` and `watch` share.

use std::time::Duration;

use chrono::Utc;
use lockstep::schema::{Schema, ValueType};
use lockstep::store::Fleet;
use lockstep::store::{Builds, PendingChange};
use lockstep::store::{Fetched, StoredEntry};
use serde_json::{Value, json};

use crate::context::{Ctx, store_now, tick_of};
use crate::failure::Failure;
use crate::fleet::{change_at, held_text};
use crate::outcome::Outcome;
use crate::view::{self, instant, relative, split, table};

/// One registry as fetched: its schema and entries.
pub struct Overview {
    /// The registry's namespace.
    pub namespace: String,
    /// The registry as its live builds see it (see [`Ctx::live`]).
    schema: Option<Schema>,
    /// The builds its live processes run.
    builds: Builds,
    /// The fetch, when a schema said which fields to fetch.
    pub fetched: Option<Fetched>,
    /// Who holds each pending change, when read (`watch` reads it).
    fleet: Option<Fleet>,
    /// Why the registry could not be read, when it could not.
    unreadable: Option<String>,
}

impl Overview {
    /// Fetches `namespace`'s schema (its live builds') and every field it
    /// names.
    pub async fn fetch(ctx: &Ctx, namespace: &str) -> Result<Overview, Failure> {
        let (schema, builds) = ctx.live(namespace).await?;
        let fetched = match &schema {
            Some(schema) => {
                let keys: Vec<&str> = schema.fields.iter().map(|f| f.key.as_str()).collect();
                Some(ctx.store.fetch(namespace, &keys).await?)
            }
            None => None,
        };
        Ok(Overview {
            namespace: namespace.to_owned(),
            schema,
            builds,
            fetched,
            fleet: None,
            unreadable: None,
        })
    }

    /// Fetches `namespace` as one of a list of the store's registries: one
    /// that cannot be read (a key or row named like a registry under a
    /// namespace lockstep refuses, a schema that does not decode) is shown
    /// as such with the reason, and spoils only its own part of the list.
    pub async fn fetch_listed(ctx: &Ctx, namespace: &str) -> Overview {
        Overview::fetch(ctx, namespace)
            .await
            .unwrap_or_else(|failure| Overview {
                namespace: namespace.to_owned(),
                schema: None,
                builds: Builds::default(),
                fetched: None,
                fleet: None,
                unreadable: Some(failure.message),
            })
    }

    /// Reads who holds each pending change, when there is one to show:
    /// the text and JSON then say "N/M hold it" beside each countdown. The
    /// processes' records, with the fetch already made (no second fetch).
    pub async fn read_fleet(&mut self, ctx: &Ctx, now: i64) -> Result<(), Failure> {
        self.fleet = match &self.fetched {
            Some(fetched) if self.next_change(now).is_some() => {
                let reports = ctx.store.records(&self.namespace).await?;
                let tick = self.schema.as_ref().and_then(|s| tick_of(s).ok());
                Some(Fleet::of(&self.namespace, tick, fetched, reports))
            }
            _ => None,
        };
        Ok(())
    }

    /// Who holds the pending entry of `key` at `at`, when the fleet was read.
    pub fn held(&self, key: &str, at: i64) -> Option<&PendingChange> {
        change_at(self.fleet.as_ref()?, key, at)
    }

    /// `  N/M hold it` for the entry of `key` at `at`, when known.
    pub fn held_suffix(&self, key: &str, at: i64) -> String {
        self.held(key, at)
            .map(|c| format!("  {}", held_text(c)))
            .unwrap_or_default()
    }

    /// The registry's tick (a second when unknown).
    pub fn tick(&self) -> Duration {
        let secs = self.schema.as_ref().map_or(1, |s| s.tick_secs.max(1));
        Duration::from_secs(u64::from(secs))
    }

    fn entries(&self, key: &str) -> &[StoredEntry] {
        self.fetched
            .as_ref()
            .and_then(|f| f.fields.get(key))
            .map_or(&[], Vec::as_slice)
    }

    /// How many entries of `key` no process serves.
    fn bad(&self, key: &str) -> usize {
        let field = self.schema.as_ref().and_then(|s| s.field(key));
        let unplaced = self
            .fetched
            .as_ref()
            .and_then(|f| f.unplaced.get(key))
            .map_or(0, Vec::len);
        let bad = self.entries(key).iter();
        bad.filter(|e| view::bad(e, field).is_some()).count() + unplaced
    }

    /// The first pending entry of any field: instant, key, value.
    pub fn next_change(&self, now: i64) -> Option<(i64, String, Result<String, String>)> {
        let schema = self.schema.as_ref()?;
        schema
            .fields
            .iter()
            .filter_map(|f| {
                let (_, pending) = split(self.entries(&f.key), now, Some(f));
                pending
                    .first()
                    .map(|e| (e.at, f.key.clone(), e.value.clone()))
            })
            .min_by_key(|(at, _, _)| *at)
    }

    /// For a person: each field with its value now and its next change.
    pub fn text(&self, now: i64) -> String {
        if let Some(why) = &self.unreadable {
            return format!("{}  (cannot be read: {why})\n", self.namespace);
        }
        let Some(schema) = &self.schema else {
            return format!(
                "{}  (no published schema: start a registry of it to see its fields)\n",
                self.namespace
            );
        };
        let mut out = format!(
            "{}  (tick {})\n",
            self.namespace,
            humantime::format_duration(self.tick())
        );
        let mut rows = Vec::new();
        for field in &schema.fields {
            let (active, pending) = split(self.entries(&field.key), now, Some(field));
            let value = match active {
                Some(e) => view::value_text(&e.value),
                None => format!("{} (default)", view::short(&field.default.to_string())),
            };
            let mut next = match pending.first() {
                Some(e) => {
                    let more = match pending.len() {
                        1 => String::new(),
                        n => format!(", {} more", n - 1),
                    };
                    format!(
                        "next: {} at {} ({}{more}){}",
                        view::value_text(&e.value),
                        instant(e.at),
                        relative(e.at, now),
                        self.held_suffix(&field.key, e.at)
                    )
                }
                None => String::new(),
            };
            match self.bad(&field.key) {
                0 => {}
                n => next.push_str(&format!("  [{n} bad: see `lockstep get`]")),
            }
            rows.push(vec![
                field.key.clone(),
                field.rust_type.clone(),
                value,
                next.trim_start().to_owned(),
            ]);
        }
        out.push_str(&table(&rows, "  "));
        out.push_str(&self.builds_text());
        out
    }

    /// The live builds' schemas, when they differ or one is unknown: each
    /// build with its fields and their types.
    fn builds_text(&self) -> String {
        let mut out = if self.builds.differ() {
            format!(
                "  {} live builds with different schemas (a rolling deploy): a value is \
                 written only if every one decodes it\n",
                self.builds.all().len()
            )
        } else if self.builds.unchecked().next().is_some() {
            "  live build:\n".to_owned()
        } else {
            return String::new();
        };
        for build in self.builds.all() {
            let fields = match (&build.schema, &build.unknown) {
                (Some(schema), _) => schema
                    .fields
                    .iter()
                    .map(|f| format!("{}: {}", f.key, f.rust_type))
                    .collect::<Vec<_>>()
                    .join(", "),
                (None, Some(why)) => format!("schema unknown ({why})"),
                (None, None) => "schema unknown".to_owned(),
            };
            out.push_str(&format!("    {}: {fields}\n", build.name()));
        }
        out
    }

    fn builds_json(&self) -> Value {
        let builds: Vec<Value> = self
            .builds
            .all()
            .iter()
            .map(|b| {
                let fields: Option<Vec<Value>> = b.schema.as_ref().map(|s| {
                    s.fields
                        .iter()
                        .map(|f| {
                            json!({"field": f.key, "rust_type": f.rust_type,
                                   "type": f.value_type.as_ref().map(ValueType::to_string)})
                        })
                        .collect()
                });
                json!({"digest": b.digest, "processes": b.processes.len(),
                       "programs": b.programs, "fields": fields, "unknown": b.unknown})
            })
            .collect();
        Value::Array(builds)
    }

    /// As JSON.
    pub fn json(&self, now: i64) -> Value {
        if let Some(why) = &self.unreadable {
            return json!({"namespace": self.namespace, "error": why});
        }
        let Some(schema) = &self.schema else {
            return json!({"namespace": self.namespace, "schema": false});
        };
        let fields: Vec<Value> = schema
            .fields
            .iter()
            .map(|field| {
                let (active, pending) = split(self.entries(&field.key), now, Some(field));
                let next = pending.first().map(|e| {
                    let mut next = view::entry_json(e);
                    if let Some(change) = self.held(&field.key, e.at) {
                        next["held_by"] = json!(change.held_by);
                        next["of"] = json!(change.of);
                    }
                    next
                });
                json!({
                    "field": field.key,
                    "rust_type": field.rust_type,
                    "type": field.value_type.as_ref().map(ValueType::to_string),
                    "value": active.map_or(field.default.clone(), |e| view::value_json(&e.value)),
                    "default": active.is_none(),
                    "since": active.map(|e| instant(e.at)),
                    "next": next,
                    "pending": pending.len(),
                    "bad": self.bad(&field.key),
                })
            })
            .collect();
        json!({
            "namespace": self.namespace,
            "schema": true,
            "tick_ms": u64::from(schema.tick_secs) * 1000,
            "fields": fields,
            "builds": self.builds_json(),
        })
    }
}

/// The namespaces to show: `only`, checked to exist, or all.
pub async fn namespaces(ctx: &Ctx, only: Option<&str>) -> Result<Vec<String>, Failure> {
    match only {
        Some(namespace) => {
            ctx.registry(namespace).await?;
            Ok(vec![namespace.to_owned()])
        }
        None => Ok(ctx.store.namespaces().await?),
    }
}

/// Fetches `namespace` for `ls` or `watch`: when it was named (`only`),
/// its failure is the command's; when it was listed, its own part of the
/// list ([`Overview::fetch_listed`]).
pub async fn fetch(ctx: &Ctx, namespace: &str, only: Option<&str>) -> Result<Overview, Failure> {
    match only {
        Some(_) => Overview::fetch(ctx, namespace).await,
        None => Ok(Overview::fetch_listed(ctx, namespace).await),
    }
}

/// `ls`: every registry (or one), each field with its value and next change.
pub async fn ls(ctx: &Ctx, only: Option<&str>) -> Result<Outcome, Failure> {
    let mut registries = Vec::new();
    for name in namespaces(ctx, only).await? {
        registries.push(fetch(ctx, &name, only).await?);
    }
    let now = registries
        .iter()
        .find_map(|r| r.fetched.as_ref())
        .map(store_now)
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let json = json!({
        "store": ctx.store.describe(),
        "now": instant(now),
        "namespaces": registries.iter().map(|r| r.json(now)).collect::<Vec<_>>(),
    });
    let text = if registries.is_empty() {
        format!(
            "{} holds no registries yet (a registry publishes its schema when it starts)\n",
            ctx.store.describe()
        )
    } else {
        let texts: Vec<String> = registries.iter().map(|r| r.text(now)).collect();
        texts.join("\n")
    };
    Ok(Outcome::new(text, json))
}
