//! The Redis backend: one server (`redis://`, `rediss://`,
//! `redis+unix://`) or a Redis Cluster (`redis+cluster://host:port,…`).
//!
//! # Layout
//!
//! Every key of a registry shares the Redis Cluster hash tag `{namespace}`,
//! so a registry lives in one slot:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `lockstep:{ns}:meta` | hash | `epoch` (random id), `created` (ms, store clock), `schema` (JSON) |
//! | `lockstep:{ns}:field:<key>` | hash | one entry per instant: field = instant in ms since the Unix epoch, value = an envelope `{"f":1,"v":<value JSON>,"w":"<write id>","t":<written at, ms>,"by":"<writer>"}` |
//! | `lockstep:{ns}:write:<id>` | string | the instants a write took effect at, for a day, so a retried write takes effect once |
//!
//! A fetch is one `EVALSHA` of a read-only script returning `TIME`, the epoch
//! and every field's hash; a field whose key has the wrong type is reported
//! for that field alone. A commit is one script that reads `TIME`, checks
//! the horizon, creates the epoch if needed, writes every entry and prunes
//! superseded history, atomically.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Script, Value};
use serde::Deserialize;

use super::{
    BoxFuture, Committed, Epoch, Fetched, HISTORY, Origin, StepAt, StoredEntry, Write, check_name,
    redact,
};
use crate::error::Error;
use crate::schema::Schema;
use crate::tick::{Millis, Tick};

/// The format version of stored envelopes this build reads and writes.
pub const FORMAT: u32 = 1;

const FETCH: &str = r#"
local t = redis.call('TIME')
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'created')
local out = {t[1], t[2], meta[1], meta[2]}
for i = 2, #KEYS do
  local r = redis.pcall('HGETALL', KEYS[i])
  if type(r) == 'table' and r.err then
    out[#out + 1] = r.err
  else
    out[#out + 1] = r
  end
end
return out
"#;

const COMMIT: &str = r#"
local done = redis.call('GET', KEYS[2])
if done then return done end
local tick = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local history = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ceil(x)
  local f = math.floor(x / tick) * tick
  if f == x then return x end
  return f + tick
end
local function ms(x) return string.format('%d', x) end
local horizon = ceil(now + tick + margin)
local steps = cjson.decode(ARGV[5])
local instants = {}
for i, step in ipairs(steps) do
  local at
  if step.h then
    at = ceil(horizon + step.h)
  else
    at = ceil(step.a)
    if at < horizon then
      return redis.error_reply('BEFORE_HORIZON ' .. ms(at) .. ' ' .. ms(horizon))
    end
  end
  instants[i] = at
end
if redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'created', ms(now))
end
for i, step in ipairs(steps) do
  for _, kv in ipairs(step.v) do
    local envelope = '{"f":1,"w":"' .. ARGV[6] .. '","t":' .. ms(now) .. ',"by":' .. ARGV[7] .. ',"v":' .. kv[2] .. '}'
    redis.call('HSET', KEYS[kv[1]], ms(instants[i]), envelope)
  end
end
for k = 3, #KEYS do
  local ats = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[k])) do
    local n = tonumber(f)
    if n then ats[#ats + 1] = n end
  end
  table.sort(ats)
  local active = 0
  for i, a in ipairs(ats) do
    if a <= now then active = i end
  end
  for i = 1, active - 1 - history do
    redis.call('HDEL', KEYS[k], ms(ats[i]))
  end
end
local parts = {}
for i, at in ipairs(instants) do parts[i] = ms(at) end
local result = table.concat(parts, ',')
redis.call('SET', KEYS[2], result, 'EX', 86400)
return result
"#;

const CANCEL: &str = r#"
local tick = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local at = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = now + tick + margin
local f = math.floor(h / tick) * tick
if f ~= h then h = f + tick end
if at < h then
  return redis.error_reply('BEFORE_HORIZON ' .. string.format('%d %d', at, h))
end
return redis.call('HDEL', KEYS[1], string.format('%d', at))
"#;

/// A Redis store (`redis://`, `rediss://`, `redis+unix://`, `unix://`).
///
/// The connection is made lazily and re-made in the background after a
/// failure; every call has its own deadline in the registry, so a call that
/// waits for a reconnect never holds anything up for long.
#[derive(Clone)]
pub struct RedisStore {
    shown: Arc<str>,
    connection: Connector,
    scripts: Arc<Scripts>,
}

/// How the store reaches Redis: one server, or a cluster.
#[derive(Clone)]
enum Connector {
    Single(Arc<SingleConnector>),
    #[cfg(feature = "cluster")]
    Cluster(Arc<ClusterConnector>),
}

/// One server's connection manager, and what it takes to make a new one.
///
/// The manager reconnects after a connection drops, but not after a
/// connection attempt that failed with anything but an I/O error: the error
/// of a handshake whose reply was cut off (a parse error) or whose
/// credentials were refused would be handed back to every later call, for
/// good, without trying again. Such a manager is replaced.
struct SingleConnector {
    client: Client,
    config: ConnectionManagerConfig,
    manager: std::sync::Mutex<ConnectionManager>,
}

impl SingleConnector {
    fn manager(&self) -> ConnectionManager {
        self.manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After `e`: a fresh manager if the connection is broken in a way the
    /// manager itself may not repair. The next call connects anew.
    fn repair(&self, e: &RedisError) {
        if !e.is_unrecoverable_error() || e.is_io_error() {
            return;
        }
        let config = self.config.clone();
        if let Ok(fresh) = ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            *self.manager.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
    }
}

/// A cluster client and the connection it makes on first use.
#[cfg(feature = "cluster")]
struct ClusterConnector {
    client: redis::cluster::ClusterClient,
    connection: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

/// A connection to one server or to a cluster.
enum Connection {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(any(feature = "cluster", test))]
/// The node URLs of `redis+cluster://[user:pass@]host:port,host:port[/…]`
/// (or `rediss+cluster://`), each with the shared credentials.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.strip_suffix("+cluster")?;
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

struct Scripts {
    fetch: Script,
    commit: Script,
    cancel: Script,
}

impl RedisStore {
    /// A store at `url`. Does not connect yet: the first call does.
    ///
    /// For `rediss://`, the server's certificate is checked against the
    /// system's root certificates, or against the PEM file named by the
    /// environment variable `LOCKSTEP_CA_FILE` (a private CA).
    pub fn open(url: &str) -> Result<RedisStore, Error> {
        let ca = match std::env::var_os("LOCKSTEP_CA_FILE") {
            Some(path) if url.starts_with("rediss") => {
                Some(std::fs::read(&path).map_err(|e| Error::Url {
                    url: redact(url),
                    reason: format!("cannot read LOCKSTEP_CA_FILE {}: {e}", path.display()),
                })?)
            }
            _ => None,
        };
        RedisStore::open_with_ca(url, ca)
    }

    /// A store at `url` whose TLS certificate must chain to one of the root
    /// certificates in `ca_pem` (PEM); `None` trusts the system's roots.
    pub fn open_with_ca(url: &str, ca_pem: Option<Vec<u8>>) -> Result<RedisStore, Error> {
        let shown: Arc<str> = redact(url).into();
        if url.starts_with("rediss://") || url.starts_with("rediss+cluster://") {
            tls(url, &shown)?;
        }
        if url.contains("+cluster://") {
            return RedisStore::open_cluster(url, shown);
        }
        let refused = |e: RedisError| Error::Url {
            url: shown.to_string(),
            reason: format!(
                "{}; expected redis://[user[:password]@]host[:port][/db], rediss://… for TLS, \
                 or redis+unix:///path/to/socket[?user=…&pass=…&db=…]",
                message(&e)
            ),
        };
        let client = match ca_pem {
            #[cfg(feature = "tls")]
            Some(pem) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            ),
            _ => Client::open(url),
        }
        .map_err(refused)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| Error::Store {
                store: shown.to_string(),
                message: message(&e),
            })?;
        let connector = SingleConnector {
            client,
            config,
            manager: std::sync::Mutex::new(manager),
        };
        Ok(RedisStore::with(
            shown,
            Connector::Single(Arc::new(connector)),
        ))
    }

    fn with(shown: Arc<str>, connection: Connector) -> RedisStore {
        RedisStore {
            shown,
            connection,
            scripts: Arc::new(Scripts {
                fetch: Script::new(FETCH),
                commit: Script::new(COMMIT),
                cancel: Script::new(CANCEL),
            }),
        }
    }

    #[cfg(feature = "cluster")]
    fn open_cluster(url: &str, shown: Arc<str>) -> Result<RedisStore, Error> {
        let refused = |reason: String| Error::Url {
            url: shown.to_string(),
            reason,
        };
        let nodes = cluster_nodes(url).ok_or_else(|| {
            refused("expected redis+cluster://[user:password@]host:port[,host:port…]".to_owned())
        })?;
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| refused(message(&e)))?;
        Ok(RedisStore::with(
            shown,
            Connector::Cluster(Arc::new(ClusterConnector {
                client,
                connection: tokio::sync::OnceCell::new(),
            })),
        ))
    }

    #[cfg(not(feature = "cluster"))]
    fn open_cluster(_url: &str, shown: Arc<str>) -> Result<RedisStore, Error> {
        Err(Error::Url {
            url: shown.to_string(),
            reason: "redis+cluster:// needs the cargo feature `cluster` of lockstep".to_owned(),
        })
    }

    /// A connection: the managed one, or the cluster's, made on first use.
    async fn connection(&self) -> Result<Connection, Error> {
        match &self.connection {
            Connector::Single(c) => Ok(Connection::Single(c.manager())),
            #[cfg(feature = "cluster")]
            Connector::Cluster(cluster) => cluster
                .connection
                .get_or_try_init(|| cluster.client.get_async_connection())
                .await
                .map(|c| Connection::Cluster(c.clone()))
                .map_err(|e| self.error(&e)),
        }
    }

    fn error(&self, e: &RedisError) -> Error {
        match &self.connection {
            Connector::Single(single) => single.repair(e),
            #[cfg(feature = "cluster")]
            Connector::Cluster(_) => {}
        }
        Error::Store {
            store: self.shown.to_string(),
            message: message(e),
        }
    }

    fn garbled(&self, what: &str) -> Error {
        Error::Store {
            store: self.shown.to_string(),
            message: format!("unexpected reply to {what}"),
        }
    }
}

/// Makes TLS work out of the box: installs the ring provider as the
/// process's rustls default, unless one is installed already.
#[cfg(feature = "tls")]
fn tls(_url: &str, _shown: &str) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn tls(_url: &str, shown: &str) -> Result<(), Error> {
    Err(Error::Url {
        url: shown.to_owned(),
        reason: "rediss:// needs the cargo feature `tls` of lockstep".to_owned(),
    })
}

/// A Redis error as text, never with the URL (and so never a password).
fn message(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => {
            let kind = match e.kind() {
                ErrorKind::Io => "I/O error",
                ErrorKind::AuthenticationFailed => "authentication failed",
                ErrorKind::InvalidClientConfig => "invalid client configuration",
                _ => "error",
            };
            // The first line of the crate's own text, which names no URL.
            let text = e.to_string();
            format!("{kind}: {}", text.lines().next().unwrap_or_default())
        }
    }
}

/// Whether a call failed because its connection had been closed under it (the
/// server's idle `timeout`, `CLIENT KILL`, a proxy or a restart), rather than
/// because the server cannot be reached. The connection manager reconnects
/// on such an error, so an idempotent call sent again waits for the new
/// connection instead of failing: a registry fetching less often than the
/// server's idle timeout would otherwise fail every first fetch of a tick.
fn closed_under_us(e: &RedisError) -> bool {
    e.is_connection_dropped() && !e.is_connection_refusal()
}

/// `lockstep:{ns}:<suffix>`.
pub fn key(namespace: &str, suffix: &str) -> String {
    format!("lockstep:{{{namespace}}}:{suffix}")
}

/// The hash of a field.
pub fn field_key(namespace: &str, field: &str) -> String {
    key(namespace, &format!("field:{field}"))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    f: u32,
    #[serde(borrow)]
    v: Option<&'a serde_json::value::RawValue>,
    w: Option<String>,
    t: Option<Millis>,
    by: Option<String>,
}

/// The JSON text of a stored envelope's value (or why it cannot be read),
/// and who wrote it when the envelope says.
pub fn open_envelope(bytes: &[u8]) -> (Result<String, String>, Option<Origin>) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return (Err("not UTF-8 text".to_owned()), None);
    };
    let envelope: Envelope = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(e) => return (Err(format!("not a lockstep entry ({e})")), None),
    };
    let origin = match (envelope.w, envelope.t) {
        (Some(write), Some(written_at)) => Some(Origin {
            write,
            written_at,
            by: envelope.by.unwrap_or_default(),
        }),
        _ => None,
    };
    if envelope.f != FORMAT {
        let why = format!(
            "format version {} is not the version {FORMAT} this process reads (written by a \
             newer lockstep?)",
            envelope.f
        );
        return (Err(why), origin);
    }
    match envelope.v {
        Some(v) => (Ok(v.get().to_owned()), origin),
        None => (Err("the entry has no value".to_owned()), origin),
    }
}

/// One hash field and value of a field's key, as an entry.
fn entry(at: &Value, value: &Value) -> StoredEntry {
    let (value, origin) = match value {
        Value::BulkString(b) => open_envelope(b),
        _ => (Err("not a string".to_owned()), None),
    };
    match text(at).and_then(|t| t.parse::<Millis>().ok()) {
        Some(at) => StoredEntry { at, value, origin },
        None => StoredEntry {
            at: 0,
            value: Err(format!("instant {:?} is not milliseconds", text(at))),
            origin,
        },
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn parse_fetch(reply: Value, keys: &[&str]) -> Option<Fetched> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut items = items.into_iter();
    let secs: i64 = text(&items.next()?)?.parse().ok()?;
    let micros: i64 = text(&items.next()?)?.parse().ok()?;
    let epoch_id = text(&items.next()?);
    let created = text(&items.next()?).and_then(|c| c.parse::<Millis>().ok());
    let epoch = match (epoch_id, created) {
        (Some(id), Some(created)) => Some(Epoch { id, created }),
        _ => None,
    };
    let mut fields = std::collections::BTreeMap::new();
    for (key, item) in keys.iter().zip(items) {
        let entries: Vec<StoredEntry> = match item {
            Value::Array(flat) => flat
                .chunks(2)
                .map(|pair| entry(&pair[0], pair.get(1).unwrap_or(&Value::Nil)))
                .collect(),
            Value::Map(pairs) => pairs.iter().map(|(at, value)| entry(at, value)).collect(),
            other => {
                let why = text(&other).unwrap_or_else(|| "unreadable".to_owned());
                vec![StoredEntry {
                    at: 0,
                    value: Err(format!("the field's key cannot be read: {why}")),
                    origin: None,
                }]
            }
        };
        let mut entries: Vec<StoredEntry> = entries;
        entries.sort_by_key(|e| e.at);
        fields.insert((*key).to_owned(), entries);
    }
    Some(Fetched {
        store_micros: Some(secs * 1_000_000 + micros),
        epoch,
        fields,
        // FOUNDATION PLACEHOLDER: the Redis helper reports both.
        unplaced: Default::default(),
        schema_held: true,
    })
}

/// The `BEFORE_HORIZON <requested> <horizon>` error of the scripts.
fn before_horizon(e: &RedisError, namespace: &str, tick: Tick) -> Option<Error> {
    let detail = format!("{} {}", e.code()?, e.detail().unwrap_or_default());
    let rest = detail.strip_prefix("BEFORE_HORIZON ")?;
    let mut parts = rest.split_whitespace().map(|p| p.parse::<Millis>());
    let requested = parts.next()?.ok()?;
    let horizon = parts.next()?.ok()?;
    Some(Error::BeforeHorizon {
        namespace: namespace.to_owned(),
        requested: crate::tick::to_datetime(requested),
        earliest: crate::tick::to_datetime(horizon),
        tick,
    })
}

fn margin(tick: Tick) -> Millis {
    tick.fetch_timeout().as_millis() as Millis
}

impl super::Store for RedisStore {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Fetched, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            let mut invocation = self.scripts.fetch.key(key(namespace, "meta"));
            for k in keys {
                invocation.key(field_key(namespace, k));
            }
            let mut connection = self.connection().await?;
            let mut reply = invocation.invoke_async(&mut connection).await;
            if reply.as_ref().is_err_and(closed_under_us) {
                // A fetch only reads: send it again, on the new connection.
                reply = invocation.invoke_async(&mut connection).await;
            }
            let reply: Value = reply.map_err(|e| self.error(&e))?;
            parse_fetch(reply, keys).ok_or_else(|| self.garbled("a fetch"))
        })
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        Box::pin(async move {
            let namespace = write.namespace.as_str();
            check_name("namespace", namespace)?;
            let mut field_keys: Vec<&str> = Vec::new();
            let mut steps = Vec::new();
            for step in &write.steps {
                let mut values = Vec::new();
                for (k, json) in &step.values {
                    check_name("key", k)?;
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
                steps.push(match step.at {
                    StepAt::Horizon { after } => serde_json::json!({"h": after, "v": values}),
                    StepAt::At(at) => serde_json::json!({"a": at, "v": values}),
                });
            }
            let mut invocation = self.scripts.commit.key(key(namespace, "meta"));
            invocation.key(key(namespace, &format!("write:{}", write.id)));
            for k in &field_keys {
                invocation.key(field_key(namespace, k));
            }
            invocation
                .arg(write.tick.as_millis())
                .arg(margin(write.tick))
                .arg(HISTORY)
                .arg(super::new_write_id())
                .arg(serde_json::Value::Array(steps).to_string())
                .arg(&write.id)
                .arg(serde_json::Value::String(write.by.clone()).to_string());
            let mut connection = self.connection().await?;
            let mut reply = invocation.invoke_async(&mut connection).await;
            if reply.as_ref().is_err_and(closed_under_us) {
                // The write's id makes a retried write take effect once.
                reply = invocation.invoke_async(&mut connection).await;
            }
            let reply: String = reply.map_err(|e| {
                before_horizon(&e, namespace, write.tick).unwrap_or_else(|| self.error(&e))
            })?;
            let instants = reply
                .split(',')
                .map(|p| p.parse::<Millis>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| self.garbled("a commit"))?;
            Ok(Committed { instants })
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
            let mut connection = self.connection().await?;
            let removed: i64 = self
                .scripts
                .cancel
                .key(field_key(namespace, field))
                .arg(tick.as_millis())
                .arg(margin(tick))
                .arg(at)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| {
                    before_horizon(&e, namespace, tick).unwrap_or_else(|| self.error(&e))
                })?;
            if removed == 0 {
                return Err(Error::NoSuchEntry {
                    namespace: namespace.to_owned(),
                    key: field.to_owned(),
                    at: crate::tick::to_datetime(at),
                });
            }
            // FOUNDATION PLACEHOLDER: the Redis helper returns the removed entry.
            Ok(StoredEntry {
                at,
                value: Err("the store did not say what it removed".to_owned()),
                origin: None,
            })
        })
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            check_name("namespace", &schema.namespace)?;
            let json = serde_json::to_string(schema).map_err(|e| self.garbled(&e.to_string()))?;
            let mut connection = self.connection().await?;
            redis::cmd("HSET")
                .arg(key(&schema.namespace, "meta"))
                .arg("schema")
                .arg(json)
                .exec_async(&mut connection)
                .await
                .map_err(|e| self.error(&e))
        })
    }

    fn purge<'a>(
        &'a self,
        _namespace: &'a str,
        _tick: Tick,
        _key: &'a str,
        _at: &'a str,
        _undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        // FOUNDATION PLACEHOLDER: the Redis helper implements purge.
        Box::pin(async move { Err(self.garbled("a purge")) })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let pattern = "lockstep:{*}:meta";
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
                            .arg(pattern)
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
                    .arg(pattern)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.error(&e))?,
            };
            let mut names: Vec<String> = keys
                .iter()
                .filter_map(|k| k.strip_prefix("lockstep:{")?.strip_suffix("}:meta"))
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
                .arg(key(namespace, "meta"))
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

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_envelope_reader(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = open_envelope(&bytes);
            let _ = entry(&Value::BulkString(bytes.clone()), &Value::BulkString(bytes));
        }
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            open_envelope(br#"{"f":1,"v":[1, 2]}"#).0,
            Ok("[1, 2]".to_owned())
        );
        let (value, origin) = open_envelope(br#"{"f":1,"w":"ab","t":5,"by":"me","v":1}"#);
        assert_eq!(value, Ok("1".to_owned()));
        let origin = origin.unwrap();
        assert_eq!(
            (origin.write.as_str(), origin.written_at, origin.by.as_str()),
            ("ab", 5, "me")
        );
        assert!(
            open_envelope(br#"{"f":2,"v":1}"#)
                .0
                .unwrap_err()
                .contains("version 2")
        );
        assert!(open_envelope(b"\xff\xfe").0.unwrap_err().contains("UTF-8"));
        assert!(open_envelope(b"12").0.is_err());
    }

    #[test]
    fn cluster_urls_name_every_node() {
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@h1:7000,h2:7001/0").unwrap(),
            vec!["redis://u:p@h1:7000/0", "redis://u:p@h2:7001/0"]
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://h1:7000").unwrap(),
            vec!["rediss://h1:7000"]
        );
        assert!(cluster_nodes("redis://h1").is_none());
        assert!(cluster_nodes("redis+cluster://").is_none());
    }

    #[test]
    fn keys_share_a_hash_tag() {
        assert_eq!(key("flags", "meta"), "lockstep:{flags}:meta");
        assert_eq!(field_key("flags", "theme"), "lockstep:{flags}:field:theme");
    }
}
