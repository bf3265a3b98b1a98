//! The commands, against a store opened by the library's own code.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lockstep::store::{Fetched, Store, StoredEntry, Write};
use lockstep::{FieldSchema, Schema, Tick, ValueType};
use serde_json::{Value, json};

use crate::args::{Cli, Command, FieldPath, Unchecked, When};
use crate::value;
use crate::view::{self, instant, relative, split, table};

/// Why a command did not do what it was asked; the process exits with
/// `code` and prints `message` on stderr.
#[derive(Debug)]
pub struct Failure {
    /// 1: refused or failed; 2: usage.
    pub code: u8,
    /// What went wrong, and what would be right.
    pub message: String,
}

impl Failure {
    /// Refused or failed: exit status 1.
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage mistake: exit status 2.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<lockstep::Error> for Failure {
    fn from(e: lockstep::Error) -> Failure {
        Failure::refused(e.to_string())
    }
}

/// The store URL: `--url`, else `--url-file`, else `LOCKSTEP_URL`.
fn store_url(cli: &Cli) -> Result<String, Failure> {
    if let Some(url) = &cli.url {
        if lockstep::store::redact(url) != *url {
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

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let url = store_url(&cli)?;
    let store = lockstep::store::open(&url)?;
    let ctx = Ctx {
        store,
        json: cli.json,
    };
    match cli.command {
        Command::Ls { namespace } => ctx.ls(namespace).await,
        Command::Get { field } => ctx.get(&field).await,
        Command::Set {
            field,
            value,
            at,
            unchecked,
        } => ctx.set(&field, &value, at, &unchecked).await,
        Command::Ramp {
            field,
            values,
            every,
            from,
            unchecked,
        } => ctx.ramp(&field, &values, every, from, &unchecked).await,
        Command::Cancel {
            field,
            at,
            unchecked,
        } => ctx.cancel(&field, at, &unchecked).await,
        Command::History { field } => ctx.history(&field).await,
        Command::Watch {
            namespace,
            count,
            duration,
        } => ctx.watch(namespace, count, duration).await,
    }
}

/// Who runs the command, for the entries' history (`cli <user>@<host>`).
fn user() -> String {
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

/// A field a write goes to: the registry's tick, and the field's type when
/// the schema says it.
struct Target {
    tick: Tick,
    field: Option<FieldSchema>,
}

impl Target {
    fn value_type(&self) -> Option<&ValueType> {
        self.field.as_ref().and_then(|f| f.value_type.as_ref())
    }

    /// `shop.limit (u8)`, for messages.
    fn name(&self, path: &FieldPath) -> String {
        match &self.field {
            Some(f) => format!("{path} ({})", f.rust_type),
            None => path.to_string(),
        }
    }
}

/// The store's clock, from a fetch, else this machine's.
fn store_now(fetched: &Fetched) -> i64 {
    fetched
        .store_micros
        .map(|us| us.div_euclid(1000))
        .unwrap_or_else(|| Utc::now().timestamp_millis())
}

fn tick_of(schema: &Schema) -> Result<Tick, Failure> {
    Tick::new(Duration::from_secs(u64::from(schema.tick_secs))).map_err(|e| {
        Failure::refused(format!(
            "the schema of `{}` has an invalid tick: {e}",
            schema.namespace
        ))
    })
}

fn field_of<'a>(schema: &'a Schema, path: &FieldPath) -> Result<&'a FieldSchema, Failure> {
    schema.field(&path.key).ok_or_else(|| {
        let known: Vec<&str> = schema.fields.iter().map(|f| f.key.as_str()).collect();
        Failure::refused(format!(
            "registry `{}` has no field `{}`; its fields are: {}",
            path.namespace,
            path.key,
            known.join(", ")
        ))
    })
}

/// A refused or failed write: the store's reason, and that nothing changed.
fn write_failure(e: lockstep::Error) -> Failure {
    match e {
        lockstep::Error::Store { .. } => Failure::refused(format!(
            "{e} (the write may or may not have been committed: check with `lockstep history`)"
        )),
        e => Failure::refused(format!("{e}; nothing was written")),
    }
}

fn print_json(value: &Value) {
    println!("{value}");
}

struct Ctx {
    store: Arc<dyn Store>,
    json: bool,
}

impl Ctx {
    /// The published schema of `namespace`; `None` if the registry exists
    /// in the store without one. An unknown namespace is refused, listing
    /// the known ones.
    async fn registry(&self, namespace: &str) -> Result<Option<Schema>, Failure> {
        lockstep::store::check_name("namespace", namespace)?;
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
    async fn target(&self, path: &FieldPath, unchecked: &Unchecked) -> Result<Target, Failure> {
        lockstep::store::check_name("namespace", &path.namespace)?;
        lockstep::store::check_name("key", &path.key)?;
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
            return Ok(Target { tick, field: None });
        };
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
        })
    }

    async fn set(
        &self,
        path: &FieldPath,
        text: &str,
        at: Option<When>,
        unchecked: &Unchecked,
    ) -> Result<(), Failure> {
        let target = self.target(path, unchecked).await?;
        let name = target.name(path);
        let value = value::parse(text, target.value_type())
            .map_err(|e| Failure::refused(format!("{name}: {e}; nothing was written")))?;
        let mut write = Write::builder(&path.namespace, target.tick)
            .by_user("cli", &user())
            .set(&path.key, value.clone());
        if let Some(when) = at {
            write = write.at(when.resolve(Utc::now()));
        }
        let write = write.build().map_err(write_failure)?;
        let committed = self.store.commit(&write).await.map_err(write_failure)?;
        let at = committed.instants[0];
        if self.json {
            print_json(&json!({
                "namespace": path.namespace,
                "field": path.key,
                "value": value,
                "at": instant(at),
                "at_ms": at,
            }));
        } else {
            let now = Utc::now().timestamp_millis();
            println!(
                "{path} = {} at {} ({})",
                view::short(&value.to_string()),
                instant(at),
                relative(at, now)
            );
        }
        Ok(())
    }

    async fn ramp(
        &self,
        path: &FieldPath,
        text: &str,
        every: Option<Duration>,
        from: Option<When>,
        unchecked: &Unchecked,
    ) -> Result<(), Failure> {
        let target = self.target(path, unchecked).await?;
        let name = target.name(path);
        let values = value::parse_list(text, target.value_type())
            .map_err(|e| Failure::refused(format!("{name}: {e}; nothing was written")))?;
        let every = every.unwrap_or(target.tick.as_duration());
        if every < target.tick.as_duration() {
            return Err(Failure::refused(format!(
                "--every {} is shorter than the tick of `{}` ({}): entries would fall on the \
                 same tick boundary; nothing was written",
                humantime::format_duration(every),
                path.namespace,
                target.tick
            )));
        }
        let mut write = Write::builder(&path.namespace, target.tick).by_user("cli", &user());
        if let Some(from) = from {
            write = write.at(from.resolve(Utc::now()));
        }
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                write = write.then_after(every);
            }
            write = write.set(&path.key, value.clone());
        }
        let write = write.build().map_err(write_failure)?;
        let committed = self.store.commit(&write).await.map_err(write_failure)?;
        if self.json {
            let entries: Vec<Value> = values
                .iter()
                .zip(&committed.instants)
                .map(|(v, at)| json!({"value": v, "at": instant(*at), "at_ms": at}))
                .collect();
            print_json(&json!({
                "namespace": path.namespace,
                "field": path.key,
                "entries": entries,
            }));
        } else {
            let now = Utc::now().timestamp_millis();
            println!("{path}: {} entries in one write", values.len());
            let rows: Vec<Vec<String>> = values
                .iter()
                .zip(&committed.instants)
                .map(|(v, at)| {
                    vec![
                        view::short(&v.to_string()),
                        format!("at {}", instant(*at)),
                        format!("({})", relative(*at, now)),
                    ]
                })
                .collect();
            print!("{}", table(&rows, "  "));
        }
        Ok(())
    }

    async fn cancel(
        &self,
        path: &FieldPath,
        when: When,
        unchecked: &Unchecked,
    ) -> Result<(), Failure> {
        let target = self.target(path, unchecked).await?;
        let at = target.tick.ceil(when.resolve(Utc::now()));
        let keys = [path.key.as_str()];
        let fetched = self.store.fetch(&path.namespace, &keys).await?;
        let entries = fetched.fields.get(&path.key).cloned().unwrap_or_default();
        let removed = match self
            .store
            .cancel(&path.namespace, target.tick, &path.key, at)
            .await
        {
            Ok(removed) => removed,
            Err(e @ lockstep::Error::NoSuchEntry { .. }) => {
                let now = store_now(&fetched);
                let pending: Vec<String> = entries
                    .iter()
                    .filter(|e| e.at > now)
                    .map(|e| instant(e.at))
                    .collect();
                let hint = if pending.is_empty() {
                    "it has no pending entries".to_owned()
                } else {
                    format!("its pending entries are at: {}", pending.join(", "))
                };
                return Err(Failure::refused(format!("{e}; {hint}")));
            }
            Err(e) => return Err(Failure::refused(format!("{e}; nothing was removed"))),
        };
        let value = Some(removed.value);
        if self.json {
            print_json(&json!({
                "namespace": path.namespace,
                "field": path.key,
                "cancelled": instant(at),
                "at_ms": at,
                "value": value.as_ref().map(view::value_json),
            }));
        } else {
            let shown = value
                .as_ref()
                .map(|v| format!(" = {}", view::value_text(v)))
                .unwrap_or_default();
            println!("cancelled {path}{shown} at {}", instant(at));
        }
        Ok(())
    }

    /// The schema (if any, checked to hold the field) and the entries of
    /// one field, with the store's clock.
    async fn field_entries(
        &self,
        path: &FieldPath,
    ) -> Result<(Option<Schema>, Vec<StoredEntry>, i64), Failure> {
        lockstep::store::check_name("key", &path.key)?;
        let schema = self.registry(&path.namespace).await?;
        if let Some(schema) = &schema {
            field_of(schema, path)?;
        }
        let keys = [path.key.as_str()];
        let fetched = self.store.fetch(&path.namespace, &keys).await?;
        let now = store_now(&fetched);
        let entries = fetched.fields.get(&path.key).cloned().unwrap_or_default();
        Ok((schema, entries, now))
    }

    async fn get(&self, path: &FieldPath) -> Result<(), Failure> {
        let (schema, entries, now) = self.field_entries(path).await?;
        let field = schema.as_ref().and_then(|s| s.field(&path.key));
        let (active, pending) = split(&entries, now);
        if self.json {
            let value = match (active, field) {
                (Some(e), _) => view::value_json(&e.value),
                (None, Some(f)) => f.default.clone(),
                (None, None) => Value::Null,
            };
            print_json(&json!({
                "namespace": path.namespace,
                "field": path.key,
                "rust_type": field.map(|f| f.rust_type.clone()),
                "value_type": field.and_then(|f| f.value_type.clone()),
                "tick_secs": schema.as_ref().map(|s| s.tick_secs),
                "now": instant(now),
                "value": value,
                "default": active.is_none(),
                "since": active.map(|e| instant(e.at)),
                "pending": pending.iter().map(|e| view::entry_json(e)).collect::<Vec<_>>(),
            }));
            return Ok(());
        }
        match (field, &schema) {
            (Some(f), Some(s)) => {
                let ty = f
                    .value_type
                    .as_ref()
                    .map(|t| format!(": {}", t.expected()))
                    .unwrap_or_default();
                println!(
                    "{path}  {}{ty}  (tick {})",
                    f.rust_type,
                    humantime::format_duration(Duration::from_secs(u64::from(s.tick_secs)))
                );
            }
            _ => println!("{path}  (no published schema)"),
        }
        let mut rows = Vec::new();
        match (active, field) {
            (Some(e), _) => rows.push(vec![
                "now".to_owned(),
                view::value_text(&e.value),
                format!("since {} ({})", instant(e.at), relative(e.at, now)),
                view::origin_text(e),
            ]),
            (None, Some(f)) => rows.push(vec![
                "now".to_owned(),
                view::short(&f.default.to_string()),
                "the default: nothing written is active yet".to_owned(),
            ]),
            (None, None) => rows.push(vec!["now".to_owned(), "(nothing written)".to_owned()]),
        }
        for e in &pending {
            rows.push(vec![
                "pending".to_owned(),
                view::value_text(&e.value),
                format!("at {} ({})", instant(e.at), relative(e.at, now)),
                view::origin_text(e),
            ]);
        }
        print!("{}", table(&rows, "  "));
        Ok(())
    }

    async fn history(&self, path: &FieldPath) -> Result<(), Failure> {
        let (_, entries, now) = self.field_entries(path).await?;
        let (active, _) = split(&entries, now);
        let state = |e: &StoredEntry| {
            if e.at > now {
                "pending"
            } else if active.is_some_and(|a| a.at == e.at) {
                "active"
            } else {
                "past"
            }
        };
        if self.json {
            let shown: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut out = view::entry_json(e);
                    out["state"] = json!(state(e));
                    out
                })
                .collect();
            print_json(&json!({
                "namespace": path.namespace,
                "field": path.key,
                "now": instant(now),
                "entries": shown,
            }));
            return Ok(());
        }
        if entries.is_empty() {
            println!("{path}: no entries (it reads as its default)");
            return Ok(());
        }
        let mut rows = vec![vec![
            "AT".to_owned(),
            "VALUE".to_owned(),
            "STATE".to_owned(),
            "WRITTEN".to_owned(),
            "BY".to_owned(),
        ]];
        for e in &entries {
            let (written, by) = match &e.origin {
                Some(o) => (instant(o.written_at), o.by.clone()),
                None => ("?".to_owned(), "?".to_owned()),
            };
            rows.push(vec![
                instant(e.at),
                view::value_text(&e.value),
                state(e).to_owned(),
                written,
                by,
            ]);
        }
        println!("{path} at {}", instant(now));
        print!("{}", table(&rows, "  "));
        Ok(())
    }

    /// The namespaces to show: `only`, checked to exist, or all.
    async fn namespaces(&self, only: Option<&str>) -> Result<Vec<String>, Failure> {
        match only {
            Some(namespace) => {
                self.registry(namespace).await?;
                Ok(vec![namespace.to_owned()])
            }
            None => Ok(self.store.namespaces().await?),
        }
    }

    /// One registry's schema and fetched entries.
    async fn snapshot(&self, namespace: &str) -> Result<Registry, Failure> {
        let schema = self.store.schema(namespace).await?;
        let fetched = match &schema {
            Some(schema) => {
                let keys: Vec<&str> = schema.fields.iter().map(|f| f.key.as_str()).collect();
                Some(self.store.fetch(namespace, &keys).await?)
            }
            None => None,
        };
        Ok(Registry {
            namespace: namespace.to_owned(),
            schema,
            fetched,
        })
    }

    async fn ls(&self, only: Option<String>) -> Result<(), Failure> {
        let names = self.namespaces(only.as_deref()).await?;
        let mut registries = Vec::new();
        for name in &names {
            registries.push(self.snapshot(name).await?);
        }
        let now = registries
            .iter()
            .find_map(|r| r.fetched.as_ref())
            .map(store_now)
            .unwrap_or_else(|| Utc::now().timestamp_millis());
        if self.json {
            print_json(&json!({
                "store": self.store.describe(),
                "now": instant(now),
                "namespaces": registries.iter().map(|r| r.json(now)).collect::<Vec<_>>(),
            }));
        } else if registries.is_empty() {
            println!(
                "{} holds no registries yet (a registry publishes its schema when it starts)",
                self.store.describe()
            );
        } else {
            let texts: Vec<String> = registries.iter().map(|r| r.text(now)).collect();
            print!("{}", texts.join("\n"));
        }
        Ok(())
    }

    async fn watch(
        &self,
        only: Option<String>,
        count: Option<u64>,
        duration: Option<Duration>,
    ) -> Result<(), Failure> {
        let started = tokio::time::Instant::now();
        let tty = std::io::stdout().is_terminal() && !self.json;
        let mut names = self.namespaces(only.as_deref()).await?;
        let mut names_at = started;
        let mut registries: Vec<(Registry, tokio::time::Instant)> = Vec::new();
        // The store's clock minus this machine's, from the latest fetch.
        let mut offset_ms = 0i64;
        let mut frames = 0u64;
        loop {
            let now_instant = tokio::time::Instant::now();
            if only.is_none() && now_instant - names_at >= Duration::from_secs(10) {
                names = self.namespaces(None).await?;
                names_at = now_instant;
            }
            let mut next_registries = Vec::new();
            for name in &names {
                let cached = registries
                    .iter()
                    .position(|(r, _)| r.namespace == *name)
                    .map(|i| registries.swap_remove(i));
                // Fetch once a tick, like a registry does.
                let due = match &cached {
                    Some((r, at)) => now_instant - *at >= r.tick(),
                    None => true,
                };
                if due {
                    let fresh = self.snapshot(name).await?;
                    if let Some(f) = &fresh.fetched {
                        offset_ms = store_now(f) - Utc::now().timestamp_millis();
                    }
                    next_registries.push((fresh, tokio::time::Instant::now()));
                } else if let Some(cached) = cached {
                    next_registries.push(cached);
                }
            }
            registries = next_registries;
            let now = Utc::now().timestamp_millis() + offset_ms;
            let next = registries
                .iter()
                .filter_map(|(r, _)| r.next_change(now))
                .min_by_key(|(at, _, _)| *at);
            if self.json {
                let next = next.as_ref().map(|(at, key, value)| {
                    json!({"field": key, "at": instant(*at), "at_ms": at, "in_ms": at - now,
                           "value": view::value_json(value)})
                });
                print_json(&json!({
                    "now": instant(now),
                    "namespaces": registries.iter().map(|(r, _)| r.json(now)).collect::<Vec<_>>(),
                    "next": next,
                }));
            } else {
                let mut frame = String::new();
                if tty {
                    // Home and clear: redraw in place.
                    frame.push_str("\x1b[H\x1b[2J");
                }
                frame.push_str(&format!(
                    "{}  {}\n",
                    self.store.describe(),
                    instant(now - now.rem_euclid(1000))
                ));
                frame.push_str(&match &next {
                    Some((at, key, value)) => format!(
                        "next change: {key} = {} at {} ({})\n\n",
                        view::value_text(value),
                        instant(*at),
                        relative(*at, now)
                    ),
                    None => "next change: none pending\n\n".to_owned(),
                });
                let texts: Vec<String> = registries.iter().map(|(r, _)| r.text(now)).collect();
                frame.push_str(&texts.join("\n"));
                if !tty {
                    frame.push_str("---\n");
                }
                print!("{frame}");
            }
            let _ = std::io::stdout().flush();
            frames += 1;
            if count.is_some_and(|n| frames >= n) {
                return Ok(());
            }
            // Next frame just after the next whole second of the store's
            // clock, so that the countdown moves in step with activations.
            let now = Utc::now().timestamp_millis() + offset_ms;
            let wait = Duration::from_millis((1000 - now.rem_euclid(1000) + 20) as u64);
            let wake = tokio::time::Instant::now() + wait;
            if let Some(limit) = duration
                && wake - started > limit
            {
                let left = limit.saturating_sub(started.elapsed());
                tokio::time::sleep(left).await;
                return Ok(());
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A registry as `ls` and `watch` show it.
struct Registry {
    namespace: String,
    schema: Option<Schema>,
    fetched: Option<Fetched>,
}

impl Registry {
    fn tick(&self) -> Duration {
        let secs = self.schema.as_ref().map_or(1, |s| s.tick_secs.max(1));
        Duration::from_secs(u64::from(secs))
    }

    fn entries(&self, key: &str) -> &[StoredEntry] {
        self.fetched
            .as_ref()
            .and_then(|f| f.fields.get(key))
            .map_or(&[], Vec::as_slice)
    }

    /// The first pending entry of any field: instant, `namespace.key`, value.
    fn next_change(&self, now: i64) -> Option<(i64, String, Result<String, String>)> {
        let schema = self.schema.as_ref()?;
        schema
            .fields
            .iter()
            .filter_map(|f| {
                let (_, pending) = split(self.entries(&f.key), now);
                pending.first().map(|e| {
                    (
                        e.at,
                        format!("{}.{}", self.namespace, f.key),
                        e.value.clone(),
                    )
                })
            })
            .min_by_key(|(at, _, _)| *at)
    }

    fn text(&self, now: i64) -> String {
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
            let (active, pending) = split(self.entries(&field.key), now);
            let value = match active {
                Some(e) => view::value_text(&e.value),
                None => format!("{} (default)", view::short(&field.default.to_string())),
            };
            let next = match pending.first() {
                Some(e) => {
                    let more = match pending.len() {
                        1 => String::new(),
                        n => format!(", {} more", n - 1),
                    };
                    format!(
                        "next: {} at {} ({}{more})",
                        view::value_text(&e.value),
                        instant(e.at),
                        relative(e.at, now)
                    )
                }
                None => String::new(),
            };
            rows.push(vec![
                field.key.clone(),
                field.rust_type.clone(),
                value,
                next,
            ]);
        }
        out.push_str(&table(&rows, "  "));
        out
    }

    fn json(&self, now: i64) -> Value {
        let Some(schema) = &self.schema else {
            return json!({"namespace": self.namespace, "schema": false});
        };
        let fields: Vec<Value> = schema
            .fields
            .iter()
            .map(|field| {
                let (active, pending) = split(self.entries(&field.key), now);
                json!({
                    "key": field.key,
                    "rust_type": field.rust_type,
                    "type": field.value_type.as_ref().map(ValueType::to_string),
                    "value": active.map_or(field.default.clone(), |e| view::value_json(&e.value)),
                    "default": active.is_none(),
                    "since": active.map(|e| instant(e.at)),
                    "next": pending.first().map(|e| view::entry_json(e)),
                    "pending": pending.len(),
                })
            })
            .collect();
        json!({
            "namespace": self.namespace,
            "schema": true,
            "tick_secs": schema.tick_secs,
            "fields": fields,
        })
    }
}
