//! What every command starts from: the store (from `--url`, `--url-file` or
//! `LOCKSTEP_URL`), who runs the command, and the published schemas that
//! writes are checked against.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lockstep::Tick;
use lockstep::schema::{FieldSchema, Schema, ValueType};
use lockstep::store::driver::Unplaced;
use lockstep::store::{Builds, Fetched, Store, StoredEntry, Write};

use crate::args::{Cli, FieldPath, Unchecked};
use crate::failure::Failure;

/// The store URL: `--url`, else `--url-file`, else `LOCKSTEP_URL`; never a
/// `memory://` one.
pub fn store_url(cli: &Cli) -> Result<String, Failure> {
    let url = given_url(cli)?;
    refuse_memory(&url)?;
    Ok(url)
}

/// Refuses a `memory://` URL: a memory store lives inside one process, so
/// this command, a process of its own, would only ever see an empty store
/// of its own.
fn refuse_memory(url: &str) -> Result<(), Failure> {
    if lockstep::store::scheme(url).is_some_and(|s| s.eq_ignore_ascii_case("memory")) {
        return Err(Failure::usage(
            "memory:// stores live inside the process that made them: the lockstep command, a \
             process of its own, can never see a registry's memory store; give the URL of the \
             store your registries share (redis://…, postgres://…, mysql://…, sqlite://…)",
        ));
    }
    Ok(())
}

/// The URL as given, whatever its scheme.
fn given_url(cli: &Cli) -> Result<String, Failure> {
    if let Some(url) = &cli.url {
        if !lockstep::store::secrets(url).is_empty() {
            eprintln!(
                "warning: a password given with --url is visible to other users of this machine; \
                 use LOCKSTEP_URL or --url-file"
            );
        }
        return Ok(url.clone());
    }
    if let Some(path) = &cli.url_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::refused(format!("cannot read --url-file {}: {e}", path.display()))
        })?;
        return text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Failure::refused(format!("--url-file {} is empty", path.display())));
    }
    match std::env::var("LOCKSTEP_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Err(Failure::usage(
            "no store given: pass --url URL or --url-file PATH, or set LOCKSTEP_URL \
             (e.g. redis://127.0.0.1:6379)",
        )),
    }
}

/// Who runs the command, for the entries' history (`cli <user>@<host>`).
pub fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(user_of_this_process)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name of this process's user, from `/etc/passwd`, when the
/// environment does not say (cron jobs, containers).
fn user_of_this_process() -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            (parts.nth(1)? == uid).then(|| name.to_owned())
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The store's clock, from a fetch, else this machine's.
pub fn store_now(fetched: &Fetched) -> i64 {
    fetched
        .store_micros
        .map(|us| us.div_euclid(1000))
        .unwrap_or_else(|| Utc::now().timestamp_millis())
}

/// A registry's tick, from its schema.
pub fn tick_of(schema: &Schema) -> Result<Tick, Failure> {
    Tick::new(Duration::from_secs(u64::from(schema.tick_secs))).map_err(|e| {
        Failure::refused(format!(
            "the schema of `{}` has an invalid tick: {e}",
            schema.namespace
        ))
    })
}

/// The field `path` names in `schema`, or the library's own refusal.
pub fn field_of<'a>(schema: &'a Schema, path: &FieldPath) -> Result<&'a FieldSchema, Failure> {
    schema.field(&path.key).ok_or_else(|| {
        let known: Vec<&str> = schema.fields.iter().map(|f| f.key.as_str()).collect();
        Failure::from(lockstep::Error::UnknownField {
            namespace: path.namespace.clone(),
            key: path.key.clone(),
            known: known.join(", "),
        })
    })
}

/// A field a write goes to: the registry's tick, the field's type when
/// the schema says it, and the live builds the write is checked against.
pub struct Target {
    /// The registry's tick.
    pub tick: Tick,
    /// The field, when a schema describes it.
    pub field: Option<FieldSchema>,
    /// The builds of the registry's live processes.
    pub builds: Builds,
    /// Whether the write goes through even if some live build cannot
    /// decode it (`--force`).
    pub force: bool,
}

impl Target {
    /// Refuses `write` if some live build cannot decode it, naming the
    /// builds, their processes and why; with `--force`, lets it through.
    /// Returns what to warn of once it is committed: a forced write's
    /// builds that will not serve it, and the builds whose schema is
    /// unknown, so the write was not checked against them.
    pub fn check(&self, write: &Write) -> Result<Option<String>, Failure> {
        let mut warnings: Vec<String> = self
            .builds
            .unchecked()
            .map(|b| {
                format!(
                    "warning: {} was not checked: {}",
                    b.name(),
                    b.unknown.as_deref().unwrap_or("its schema is unknown")
                )
            })
            .collect();
        if let Err(e) = self.builds.check(write) {
            let lockstep::Error::NotServed { key, refusals, .. } = &e else {
                return Err(e.into());
            };
            if !self.force {
                return Err(Failure::refused(format!(
                    "{e} (to write it anyway, pass --force: those processes keep serving what \
                     they hold)"
                )));
            }
            let builds: Vec<String> = refusals
                .iter()
                .map(|r| format!("{}: {}", r.build, r.reason))
                .collect();
            warnings.push(format!(
                "warning: written with --force; these live builds will not serve `{}.{key}` \
                 (they keep serving what they hold, and `lockstep fleet {}` lists them as \
                 rejecting it): {}",
                write.namespace(),
                write.namespace(),
                builds.join("; ")
            ));
        }
        Ok((!warnings.is_empty()).then(|| warnings.join("\n")))
    }

    /// The field's type, when known.
    pub fn value_type(&self) -> Option<&ValueType> {
        self.field.as_ref().and_then(|f| f.value_type.as_ref())
    }

    /// Reads `text` with `read` as the field's type (see [`value::parse`](crate::value::parse)),
    /// or, when live builds declare it with other types, as the first of
    /// theirs that reads it: which builds can decode the value is
    /// [`Target::check`]'s to say, naming them.
    pub fn read<T>(
        &self,
        text: &str,
        read: impl Fn(&str, Option<&ValueType>) -> Result<T, String>,
    ) -> Result<T, String> {
        let first = read(text, self.value_type());
        if first.is_ok() {
            return first;
        }
        let key = self.field.as_ref().map(|f| f.key.as_str());
        self.builds
            .all()
            .iter()
            .filter_map(|b| b.schema.as_ref()?.field(key?)?.value_type.as_ref())
            .find_map(|ty| read(text, Some(ty)).ok())
            .map_or(first, Ok)
    }

    /// `shop.limit (u8)`, for messages.
    pub fn name(&self, path: &FieldPath) -> String {
        match &self.field {
            Some(f) => format!("{path} ({})", f.rust_type),
            None => path.to_string(),
        }
    }
}

/// One field as fetched: the schema (if any), its entries, those whose
/// instant is not a number, and the store's clock.
pub struct FieldEntries {
    /// The registry's published schema.
    pub schema: Option<Schema>,
    /// The entries, ordered by instant.
    pub entries: Vec<StoredEntry>,
    /// The entries whose instant is not a number.
    pub unplaced: Vec<Unplaced>,
    /// The store's clock when it answered.
    pub now: i64,
}

impl FieldEntries {
    /// The field's schema, if the registry published one.
    pub fn field(&self, key: &str) -> Option<&FieldSchema> {
        self.schema.as_ref().and_then(|s| s.field(key))
    }
}

/// The opened store, and how to print.
pub struct Ctx {
    /// The store.
    pub store: Arc<dyn Store>,
}

impl Ctx {
    /// The published schema of `namespace`; `None` if the registry exists
    /// in the store without one. An unknown namespace is refused, listing
    /// the known ones.
    pub async fn registry(&self, namespace: &str) -> Result<Option<Schema>, Failure> {
        if let Some(schema) = self.store.schema(namespace).await? {
            return Ok(Some(schema));
        }
        let known = self.store.namespaces().await?;
        if known.iter().any(|n| n == namespace) {
            Ok(None)
        } else {
            Err(Failure::refused(self.unknown_namespace(namespace, &known)))
        }
    }

    /// The registry as its live builds see it ([`Builds::merged`]: every
    /// field some live build or the latest published schema has), and
    /// those builds; `None` if the registry exists in the store without a
    /// schema. An unknown namespace is refused, listing the known ones.
    pub async fn live(&self, namespace: &str) -> Result<(Option<Schema>, Builds), Failure> {
        let latest = self.registry(namespace).await?;
        let tick = latest.as_ref().and_then(|s| tick_of(s).ok());
        let builds = Builds::read(&*self.store, namespace, tick).await?;
        Ok((builds.merged(latest.as_ref()), builds))
    }

    fn unknown_namespace(&self, namespace: &str, known: &[String]) -> String {
        let store = self.store.describe();
        if known.is_empty() {
            format!(
                "no registry `{namespace}` in {store}: it holds none yet (a registry publishes \
                 its schema there when it starts)"
            )
        } else {
            format!(
                "no registry `{namespace}` in {store}; it has: {}",
                known.join(", ")
            )
        }
    }

    /// Where a write to `path` goes, refused unless the schema knows the
    /// field and its type (or `--force`).
    pub async fn target(&self, path: &FieldPath, unchecked: &Unchecked) -> Result<Target, Failure> {
        let Some(schema) = self.store.schema(&path.namespace).await? else {
            let known = self.store.namespaces().await?;
            let exists = known.contains(&path.namespace);
            if !unchecked.force {
                let why = if exists {
                    format!(
                        "registry `{}` has published no schema, so the value cannot be checked \
                         (a registry publishes its schema when it starts, with lockstep 0.1 or \
                         newer)",
                        path.namespace
                    )
                } else {
                    self.unknown_namespace(&path.namespace, &known)
                };
                return Err(Failure::refused(format!(
                    "{why}; nothing was written (to write unchecked, pass --force --tick \
                     <the registry's tick>)"
                )));
            }
            let tick = unchecked.tick.ok_or_else(|| {
                Failure::refused(format!(
                    "registry `{}` has published no schema, so its tick is unknown: pass it \
                     with --tick (e.g. --tick 10m)",
                    path.namespace
                ))
            })?;
            let tick = Tick::new(tick).map_err(|e| Failure::usage(format!("--tick: {e}")))?;
            return Ok(Target {
                tick,
                field: None,
                builds: Builds::default(),
                force: true,
            });
        };
        // Checked against the live builds: their fields, types and the
        // longest of their ticks (see `Builds::merged`).
        let builds = Builds::read(&*self.store, &path.namespace, tick_of(&schema).ok()).await?;
        let schema = builds.merged(Some(&schema)).unwrap_or(schema);
        let tick = tick_of(&schema)?;
        if let Some(given) = unchecked.tick
            && given != tick.as_duration()
        {
            return Err(Failure::refused(format!(
                "--tick {} disagrees with the tick {tick} registry `{}` published; nothing \
                 was written",
                humantime::format_duration(given),
                path.namespace
            )));
        }
        let field = field_of(&schema, path)?.clone();
        if field.value_type.is_none() && !unchecked.force {
            return Err(Failure::refused(format!(
                "the schema of `{}` has no value types (it was published by an older lockstep), \
                 so the value cannot be checked; nothing was written (to write unchecked, pass \
                 --force)",
                path.namespace
            )));
        }
        Ok(Target {
            tick,
            field: Some(field),
            builds,
            force: unchecked.force,
        })
    }

    /// The schema (if any, checked to hold the field) and the entries of
    /// one field, with the store's clock.
    pub async fn field_entries(&self, path: &FieldPath) -> Result<FieldEntries, Failure> {
        let schema = self.registry(&path.namespace).await?;
        if let Some(schema) = &schema {
            field_of(schema, path)?;
        }
        let keys = [path.key.as_str()];
        let mut fetched = self.store.fetch(&path.namespace, &keys).await?;
        Ok(FieldEntries {
            schema,
            entries: fetched.fields.remove(&path.key).unwrap_or_default(),
            unplaced: fetched.unplaced.remove(&path.key).unwrap_or_default(),
            now: store_now(&fetched),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_url_is_refused_saying_why() {
        for url in ["memory://", "memory://flags", "MEMORY://x", "memory:flags"] {
            let e = refuse_memory(url).unwrap_err();
            assert!(
                e.message
                    .contains("can never see a registry's memory store"),
                "{url}: {}",
                e.message
            );
        }
        for url in [
            "redis://127.0.0.1",
            "sqlite://lockstep.db",
            "postgres://h/db",
        ] {
            assert!(refuse_memory(url).is_ok(), "{url}");
        }
    }
}
