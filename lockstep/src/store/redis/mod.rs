//! The Redis store: one server (`redis://`, `rediss://`, `redis+unix://`),
//! a primary and its replicas
//! (`redis://[user[:password]@]primary:port[/db]?replicas=host:port,host:port`,
//! see [`replicas`]: fetches from one replica per process, writes to the
//! primary, which waits for the replicas), or a Redis Cluster
//! (`redis+cluster://host:port,…`).
//!
//! # Layout
//!
//! Every key of a registry shares the Redis Cluster hash tag `{namespace}`,
//! so a registry lives in one slot ([`keys`]):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `lockstep:{ns}:meta` | hash | `epoch` (random id), `created` (ms, store clock), `schema` (JSON), `revision` (advanced by every commit, cancel and purge) |
//! | `lockstep:{ns}:field:<key>` | hash | one entry per instant: field = instant in ms since the Unix epoch, value = an envelope `{"f":1,"w":"<write id>","t":<written at, ms>,"by":"<writer>","r":<revision>,"v":<value JSON>}` |
//! | `lockstep:{ns}:write:<id>` | string | the instants a write took effect at, for a day, so a retried write takes effect once |
//! | `lockstep:{ns}:fleet` | hash | one record per process that fetched with a report: field = its id, value = `{"seen":<ms, store clock>,"revision":<served>,"body":"<its report>"}` ([`fleet`]) |
//! | `lockstep:{ns}:fleet:expiry` | sorted set | when each record expires (ms, store clock) |
//! | `lockstep:{ns}:schemas` | hash | every build's schema: field = its digest ([`StoredSchema`]), value = its JSON |
//! | `lockstep:{ns}:fields` | set | the keys of the fields lockstep has written, which a commit weighs for [`MAX_PENDING_BYTES`] |
//! | `lockstep:{ns}:schemas:published` | sorted set | when each build's schema was last published (ms, store clock); one not published for [`SCHEMA_KEPT`] goes at the next publish |
//!
//! A fetch is one `EVALSHA_RO` of a `no-writes` script returning `TIME`,
//! the epoch, whether the fetching build's schema is held (at its digest,
//! with a text of its length: `HSTRLEN`), the revision and every field's
//! hash; a conditional fetch whose held epoch and revision are the meta
//! hash's returns that header alone, before it touches any field key
//! (the fields' names travel as one argument, a JSON array the script
//! decodes only when it reads them, with the prefix of their keys: not as
//! `KEYS`, which the server sets up one by one; the keys share the meta
//! key's hash tag, so a cluster serves them on its node). What an unchanged
//! fetch still costs in proportion to the fields is the server receiving
//! their names, about a nanosecond a byte. An envelope
//! over the size limit replaced by its length and never copied (a hash whose
//! `MEMORY USAGE` is within the limit is read whole; a larger one field by
//! field, by `HSTRLEN` first); a field whose key has the
//! wrong type is reported for that field alone. A commit is one script that
//! checks every key and value, reads `TIME`, checks the horizon, creates
//! the epoch if needed, writes every entry and prunes superseded history,
//! atomically: whatever it refuses, it refuses before its first write.
//! A fetch with a report is one `EVALSHA` of the same fetch followed by the
//! record of the process ([`fleet`]).

mod connection;
mod envelope;
mod errors;
mod fetch;
mod fleet;
mod keys;
mod open;
mod replicas;
mod replication;
mod reply;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use redis::Value;

pub use envelope::open_envelope;

use self::connection::{Connection, Connector};
use self::errors::{before_horizon, classify, closed_under_us, refused, too_much_pending};
use self::fleet::RecordApart;
use self::keys::{
    META_PATTERN, field_key, fleet_expiry_key, fleet_key, meta_key, namespace_of_meta, schemas_key,
    schemas_published_key, write_key,
};
use self::replicas::Replicas;
use self::scripts::{Lua, Scripts};
use super::reporting::Reporting;
use crate::error::Error;
use crate::schema::Schema;
use crate::store::contract::BoxFuture;
use crate::store::fetch::{Fetch, Fetched};
use crate::store::stored::{
    HISTORY, MAX_PENDING_BYTES, Records, SCHEMA_KEPT, SMALL_WRITE_BYTES, StoredEntry, StoredSchema,
    check_name,
};
use crate::store::url::redact;
use crate::store::write::{Committed, StepAt, Write};
use crate::tick::{Millis, Tick};
use crate::value::MAX_VALUE_BYTES;

/// The largest envelope a fetch ships: a value at the size limit plus what
/// the envelope holds besides (a write id of at most 100 bytes, a writer
/// name of at most [`MAX_WRITER_BYTES`], escaped).
const MAX_ENVELOPE_BYTES: usize = MAX_VALUE_BYTES + 8 * 1024;

/// The longest writer name (`Write::by`) this store keeps.
const MAX_WRITER_BYTES: usize = 1024;

/// A Redis store (`redis://`, `rediss://`, `redis+unix://`, `unix://`).
///
/// The connection is made lazily and re-made in the background after a
/// failure; every call has its own deadline in the registry, so a call that
/// waits for a reconnect never holds anything up for long.
#[derive(Clone)]
pub struct RedisStore {
    shown: Arc<str>,
    connector: Connector,
    scripts: Arc<Scripts>,
    reporting: Arc<Reporting>,
    record_apart: Arc<RecordApart>,
    /// With `?replicas=`: the replicas fetches go to.
    replicas: Option<Arc<Replicas>>,
    /// With `?replicas=`: the primary's connection for commits, each
    /// followed by a `WAIT` that holds its connection, so that the
    /// fetches the primary answers do not queue behind it.
    writes: Connector,
    /// Whether a record sent to the primary after a replica's fetch is
    /// still under way (there is at most one).
    recording: Arc<AtomicBool>,
}

impl RedisStore {
    /// A store at `url`. Does not connect yet: the first call does.
    ///
    /// For `rediss://`, the server's certificate is checked against the
    /// system's root certificates, or against the PEM file named by the
    /// environment variable `LOCKSTEP_CA_FILE` (a private CA).
    pub fn open(url: &str) -> Result<RedisStore, Error> {
        let ca = open::ca_from_env(url, &redact(url))?;
        RedisStore::open_with_ca(url, ca)
    }

    /// A store at `url` whose TLS certificate must chain to one of the root
    /// certificates in `ca_pem` (PEM); `None` trusts the system's roots.
    pub fn open_with_ca(url: &str, ca_pem: Option<Vec<u8>>) -> Result<RedisStore, Error> {
        let shown: Arc<str> = redact(url).into();
        let (connector, writes, replicas) = open::connectors(url, &shown, ca_pem)?;
        Ok(RedisStore {
            shown,
            connector,
            scripts: Arc::new(Scripts::new()),
            reporting: Arc::default(),
            record_apart: Arc::default(),
            replicas: replicas.map(Arc::new),
            writes,
            recording: Arc::default(),
        })
    }

    /// The replicas this store reads (`host:port`), in the URL's order;
    /// empty without `?replicas=`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = lockstep::store::RedisStore::open(
    ///     "redis://app:secret@primary:6379?replicas=r1:6379,r2:6380",
    /// )
    /// .unwrap();
    /// assert_eq!(store.replicas(), ["r1:6379", "r2:6380"]);
    /// assert!(!format!("{store:?}").contains("secret"));
    /// # }
    /// ```
    pub fn replicas(&self) -> Vec<String> {
        self.replicas
            .iter()
            .flat_map(|r| r.names().map(str::to_owned))
            .collect()
    }

    async fn connection(&self) -> Result<Connection, Error> {
        self.connector
            .connection()
            .await
            .map_err(|e| self.error(&e))
    }

    /// Runs `script`; an idempotent one is sent again once if its
    /// connection was closed under it. A refusal of the script is mapped
    /// by `refusal`, any other error classified.
    async fn run(
        &self,
        script: &Lua,
        keys: &[String],
        args: &[String],
        idempotent: bool,
        refusal: impl Fn(&redis::RedisError) -> Option<Error>,
    ) -> Result<Value, Error> {
        self.send(script, keys, args, idempotent)
            .await?
            .map_err(|e| refusal(&e).unwrap_or_else(|| self.error(&e)))
    }

    /// Runs `script` as [`RedisStore::run`] does, the server's reply as
    /// it came: only a failure to connect is an error.
    async fn send(
        &self,
        script: &Lua,
        keys: &[String],
        args: &[String],
        idempotent: bool,
    ) -> Result<redis::RedisResult<Value>, Error> {
        let mut connection = self.connection().await?;
        let mut reply = script.run(&mut connection, keys, args).await;
        if idempotent && reply.as_ref().is_err_and(closed_under_us) {
            reply = script.run(&mut connection, keys, args).await;
        }
        Ok(reply)
    }

    /// The scripts' refusals of a write to `namespace`.
    fn refusal(&self, namespace: &str, tick: Tick) -> impl Fn(&redis::RedisError) -> Option<Error> {
        let namespace = namespace.to_owned();
        let shown = self.shown.clone();
        move |e| {
            before_horizon(e, &namespace, tick)
                .or_else(|| too_much_pending(e, &namespace))
                .or_else(|| refused(e, &shown))
        }
    }

    fn error(&self, e: &redis::RedisError) -> Error {
        self.connector.after(e);
        classify(e, &self.shown)
    }

    fn garbled(&self, what: &str) -> Error {
        Error::Store {
            store: self.shown.to_string(),
            message: format!("unexpected reply to {what}"),
        }
    }
}

fn margin(tick: Tick) -> Millis {
    tick.fetch_timeout().as_millis() as Millis
}

fn no_such_entry(namespace: &str, key: &str, at: Millis) -> Error {
    Error::NoSuchEntry {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        at: crate::tick::to_datetime(at),
    }
}

/// Refuses what the store could not keep whole: a writer name too long for
/// the envelope's allowance (the write's builder checked its names).
fn check_write(write: &Write) -> Result<(), Error> {
    if write.by().len() > MAX_WRITER_BYTES {
        let key = write.steps().iter().flat_map(|s| s.values()).next();
        return Err(Error::InvalidValue {
            namespace: write.namespace().to_owned(),
            key: key.map(|(k, _)| k.clone()).unwrap_or_default(),
            reason: format!(
                "the writer name (`by`) is {} bytes; at most {MAX_WRITER_BYTES} are kept",
                write.by().len()
            ),
        });
    }
    Ok(())
}

impl crate::store::contract::Store for RedisStore {
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
        Box::pin(self.fetch_one(fetch))
    }

    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            let keys = [
                fleet_key(namespace),
                fleet_expiry_key(namespace),
                schemas_key(namespace),
            ];
            let reply = self
                .run(&self.scripts.reports, &keys, &[], true, |_| None)
                .await?;
            fleet::records(reply).ok_or_else(|| self.garbled("a read of the fleet"))
        })
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        Box::pin(async move {
            let namespace = write.namespace();
            check_write(write)?;
            let mut field_keys: Vec<&str> = Vec::new();
            let mut steps = Vec::new();
            for step in write.steps() {
                let mut values = Vec::new();
                for (k, json) in step.values() {
                    let index = match field_keys.iter().position(|f| f == k) {
                        Some(i) => i,
                        None => {
                            field_keys.push(k);
                            field_keys.len() - 1
                        }
                    };
                    // KEYS[1] is meta, KEYS[2] the write id; fields from 3 (Lua is 1-based).
                    values.push(serde_json::json!([index + 3, json]));
                }
                steps.push(match step.at() {
                    StepAt::Horizon { after } => serde_json::json!({"h": after, "v": values}),
                    StepAt::At(at) => serde_json::json!({"a": at, "v": values}),
                });
            }
            let mut keys = vec![meta_key(namespace), write_key(namespace, write.id())];
            keys.extend(field_keys.iter().map(|k| field_key(namespace, k)));
            let args = [
                write.tick().as_millis().to_string(),
                margin(write.tick()).to_string(),
                HISTORY.to_string(),
                crate::store::write::new_write_id(),
                serde_json::Value::Array(steps).to_string(),
                write.id().to_owned(),
                write.by().to_owned(),
                MAX_VALUE_BYTES.to_string(),
                MAX_PENDING_BYTES.to_string(),
                SMALL_WRITE_BYTES.to_string(),
            ];
            // The write's id makes a retried write take effect once.
            let refusal = self.refusal(namespace, write.tick());
            let script = &self.scripts.commit;
            let (reply, connection) = match &self.replicas {
                None => (self.run(script, &keys, &args, true, refusal).await?, None),
                Some(_) => {
                    // On the connection the `WAIT` then waits on.
                    let mut connection = self.writes.connection().await.map_err(|e| {
                        self.writes.after(&e);
                        classify(&e, &self.shown)
                    })?;
                    let mut reply = script.run(&mut connection, &keys, &args).await;
                    if reply.as_ref().is_err_and(closed_under_us) {
                        reply = script.run(&mut connection, &keys, &args).await;
                    }
                    let reply = reply.map_err(|e| {
                        refusal(&e).unwrap_or_else(|| {
                            self.writes.after(&e);
                            classify(&e, &self.shown)
                        })
                    })?;
                    (reply, Some(connection))
                }
            };
            let instants = reply::text(&reply)
                .ok_or_else(|| self.garbled("a commit"))?
                .split(',')
                .map(|p| p.parse::<Millis>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| self.garbled("a commit"))?;
            let mut committed = Committed::at(instants);
            if let (Some(replicas), Some(mut connection)) = (&self.replicas, connection) {
                let first = committed.instants.iter().copied().min().unwrap_or(0);
                committed.lagging = replicas
                    .wait(&mut connection, &self.shown, write.tick(), first)
                    .await;
            }
            Ok(committed)
        })
    }

    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        field: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            check_name("key", field)?;
            let keys = [field_key(namespace, field), meta_key(namespace)];
            let args = [
                tick.as_millis().to_string(),
                margin(tick).to_string(),
                at.to_string(),
                MAX_ENVELOPE_BYTES.to_string(),
            ];
            // Not sent again: a cancel that was applied would then say
            // there was nothing to cancel.
            let refusal = self.refusal(namespace, tick);
            let removed = self
                .run(&self.scripts.cancel, &keys, &args, false, refusal)
                .await?;
            if removed == Value::Nil {
                return Err(no_such_entry(namespace, field, at));
            }
            let (value, origin) = reply::value(&removed);
            Ok(StoredEntry { at, value, origin })
        })
    }

    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        field: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            check_name("key", field)?;
            let keys = [field_key(namespace, field), meta_key(namespace)];
            let args = [
                tick.as_millis().to_string(),
                margin(tick).to_string(),
                at.to_owned(),
                if undecodable { "1" } else { "0" }.to_owned(),
                MAX_ENVELOPE_BYTES.to_string(),
            ];
            // Not sent again, as a cancel.
            let refusal = self.refusal(namespace, tick);
            let removed = self
                .run(&self.scripts.purge, &keys, &args, false, refusal)
                .await?;
            match removed {
                Value::Int(1) => Ok(()),
                Value::Int(0) => Err(no_such_entry(
                    namespace,
                    field,
                    keys::instant(at).unwrap_or(Millis::MIN),
                )),
                _ => Err(self.garbled("a purge")),
            }
        })
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let namespace = schema.namespace.as_str();
            check_name("namespace", namespace)?;
            let stored = StoredSchema::of(schema);
            let keys = [
                meta_key(namespace),
                schemas_key(namespace),
                schemas_published_key(namespace),
            ];
            let args = [
                stored.json().to_owned(),
                stored.digest().to_owned(),
                SCHEMA_KEPT.as_millis().to_string(),
            ];
            // Publishing again is harmless: sent again as a fetch is.
            self.run(&self.scripts.publish, &keys, &args, true, |_| None)
                .await
                .map(drop)
        })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let keys: Vec<String> = match &connection {
                // SCAN does not block the server; a cluster's KEYS runs on
                // every primary.
                Connection::Single(_) => {
                    let mut keys = Vec::new();
                    let mut cursor = 0u64;
                    loop {
                        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(META_PATTERN)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut connection)
                            .await
                            .map_err(|e| self.error(&e))?;
                        keys.extend(batch);
                        if next == 0 {
                            break keys;
                        }
                        cursor = next;
                    }
                }
                #[cfg(feature = "cluster")]
                Connection::Cluster(_) => redis::cmd("KEYS")
                    .arg(META_PATTERN)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.error(&e))?,
            };
            let mut names: Vec<String> = keys
                .iter()
                .filter_map(|k| namespace_of_meta(k))
                .map(str::to_owned)
                .collect();
            names.sort();
            names.dedup();
            Ok(names)
        })
    }

    fn schema<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            let mut connection = self.connection().await?;
            let json: Option<String> = redis::cmd("HGET")
                .arg(meta_key(namespace))
                .arg("schema")
                .query_async(&mut connection)
                .await
                .map_err(|e| self.error(&e))?;
            json.map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| self.garbled(&format!("the schema ({e})")))
        })
    }

    fn describe(&self) -> String {
        self.shown.to_string()
    }

    fn replica_fallbacks(&self) -> u64 {
        self.replicas.as_ref().map_or(0, |r| r.fallbacks())
    }

    fn replica_failovers(&self) -> u64 {
        self.replicas.as_ref().map_or(0, |r| r.failovers())
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        for url in [
            "redis://u:s3cret@host:notaport",
            "redis://:s3cret@",
            "redis+unix://u:s3cret@",
            "redis+unix:///x.sock?pass=s3cret&db=x",
        ] {
            match RedisStore::open(url) {
                Err(e) => {
                    let shown = format!("{e} {e:?}");
                    assert!(!shown.contains("s3cret"), "{shown}");
                }
                Ok(store) => assert!(!format!("{store:?}").contains("s3cret")),
            }
        }
    }
}
