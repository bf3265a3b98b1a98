//! The fetch: one round trip per tick, with the process's record in the
//! same script, or apart from it (a user that may write only the fleet's
//! keys), or through the replicas (the record to the primary, off the
//! fetch's path).

use std::sync::atomic::Ordering;

use redis::Value;

use super::keys::{field_key, fleet_expiry_key, fleet_key, meta_key};
use super::replicas::Replicas;
use super::reply::{self, Recorded};
use super::{MAX_ENVELOPE_BYTES, RedisStore, errors, fleet, scripts};
use crate::error::Error;
use crate::store::fetch::{Fetch, Fetched};
use crate::store::stored::{FETCH_BUDGET_BYTES, Record, check_name};

impl RedisStore {
    /// One fetch, as [`Store::fetch_with`](super::Store::fetch_with) asks:
    /// through the replicas, or with its report in the same script, or
    /// with its record apart, or read-only.
    pub(super) async fn fetch_one(&self, fetch: Fetch<'_>) -> Result<Fetched, Error> {
        let (namespace, keys) = (fetch.namespace(), fetch.keys());
        let report = fetch.record();
        check_name("namespace", namespace)?;
        if let Some(replicas) = &self.replicas {
            return self.fetch_replicated(replicas, fetch).await;
        }
        let reported = match self.reporting.send(namespace, report) {
            Some(report) if self.record_apart.is_on() => {
                let args = fetch_args(&fetch, None);
                Some(self.fetch_recording_apart(namespace, &args, report).await?)
            }
            Some(report) => self.fetch_and_report(&fetch, report).await?,
            None => None,
        };
        let reply = match reported {
            Some(reply) => reply,
            None => {
                let redis_keys = [meta_key(namespace)];
                let args = fetch_args(&fetch, None);
                // A fetch only reads: sent again on a new connection if
                // need be.
                self.run(&self.scripts.fetch, &redis_keys, &args, true, |_| None)
                    .await?
            }
        };
        let (fetched, recorded) =
            reply::fetched(reply, keys).ok_or_else(|| self.garbled("a fetch"))?;
        if let Recorded::Refused(why) = recorded {
            self.reporting.not_kept(namespace, &why);
        }
        Ok(fetched)
    }

    /// A fetch through the replicas: from this process's replica, or
    /// another, or the primary (see [`super::replicas`]), all within the fetch's
    /// deadline; with a report, the record goes to the primary in a call of
    /// its own, off the fetch's path.
    async fn fetch_replicated(
        &self,
        replicas: &Replicas,
        fetch: Fetch<'_>,
    ) -> Result<Fetched, Error> {
        let (namespace, keys) = (fetch.namespace(), fetch.keys());
        let report = fetch.record();
        let redis_keys = [meta_key(namespace)];
        let args = fetch_args(&fetch, None);
        let script = &self.scripts.fetch;
        let fetched = match replicas
            .fetch(
                namespace,
                script,
                &redis_keys,
                &args,
                keys,
                fetch.deadline(),
            )
            .await
        {
            Some(fetched) => {
                // Served by a replica: the primary's connections are let go
                // when nothing took them since the last such fetch.
                self.connector.let_go_if_idle();
                self.writes.let_go_if_idle();
                fetched
            }
            None => {
                let reply = self.run(script, &redis_keys, &args, true, |_| None).await?;
                let (fetched, _) =
                    reply::fetched(reply, keys).ok_or_else(|| self.garbled("a fetch"))?;
                replicas.primary_served(namespace, fetched.revision);
                fetched
            }
        };
        if let Some(report) = self.reporting.send(namespace, report)
            && !self.recording.swap(true, Ordering::AcqRel)
        {
            let store = self.clone();
            let (namespace, report) = (namespace.to_owned(), report.clone());
            let revision = fetched.revision;
            tokio::spawn(async move {
                store.record(&namespace, &report, revision).await;
                store.recording.store(false, Ordering::Release);
            });
        }
        Ok(fetched)
    }

    /// Keeps `report` on the primary, with the revision a replica served.
    async fn record(&self, namespace: &str, report: &Record, revision: u64) {
        let (keys, args) = record_call(namespace, report, Some(revision));
        match self.send(&self.scripts.record, &keys, &args, true).await {
            Ok(answer) => self.recorded(namespace, answer),
            Err(e) => tracing::debug!(namespace, error = %e, "lockstep: no fleet record"),
        }
    }

    /// What the record script answered: a record it did not keep is told,
    /// one refused whole pauses reporting.
    fn recorded(&self, namespace: &str, answer: redis::RedisResult<Value>) {
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) if fleet::refused_whole(&e) => {
                return self.reporting.refused(namespace, &errors::message(&e));
            }
            Err(e) => {
                let error = errors::message(&e);
                return tracing::debug!(namespace, error, "lockstep: the fleet record failed");
            }
        };
        let kept = match &reply {
            Value::Array(out) => out.get(6),
            _ => None,
        };
        match kept {
            Some(Value::Int(1)) => {}
            other => {
                let why = other.and_then(reply::text).unwrap_or_default();
                self.reporting.not_kept(namespace, &why);
            }
        }
    }

    /// The fetch with its record apart, for a user that may write the
    /// fleet's keys but not the registry's: the record script, then the
    /// read-only fetch, in one pipeline. Record first: it keeps the
    /// revision the registry holds when it runs, and the fetch after it
    /// serves that one or a later one, never less than the record says.
    async fn fetch_recording_apart(
        &self,
        namespace: &str,
        fetch_args: &[String],
        report: &Record,
    ) -> Result<Value, Error> {
        let (record_keys, record_args) = record_call(namespace, report, None);
        let meta = [meta_key(namespace)];
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(self.scripts.record.call(&record_keys, &record_args))
            .add_command(self.scripts.fetch.call(&meta, fetch_args));
        let mut connection = self.connection().await?;
        let scripts = [&self.scripts.record, &self.scripts.fetch];
        let replies = scripts::pipelined(&mut connection, &pipe, 2, &scripts)
            .await
            .map_err(|e| self.error(&e))?;
        let [recorded, fetched]: [Value; 2] =
            replies.try_into().map_err(|_| self.garbled("a fetch"))?;
        self.recorded(namespace, recorded.extract_error());
        fetched.extract_error().map_err(|e| self.error(&e))
    }

    /// The fetch with a report: its reply, or `None` when the server
    /// refused it whole for its writes (the read-only fetch serves then).
    async fn fetch_and_report(
        &self,
        fetch: &Fetch<'_>,
        report: &Record,
    ) -> Result<Option<Value>, Error> {
        let namespace = fetch.namespace();
        let redis_keys = [
            meta_key(namespace),
            fleet_key(namespace),
            fleet_expiry_key(namespace),
        ];
        let args = fetch_args(fetch, Some(report));
        // Recording again is harmless: sent again as a fetch is.
        let script = &self.scripts.fetch_reporting;
        match self.send(script, &redis_keys, &args, true).await? {
            Ok(reply) => Ok(Some(reply)),
            Err(e) if fleet::refused_for_keys(&e) => {
                // A user that may not write the registry's keys: its record
                // goes apart, from now on, and this fetch is sent so.
                self.record_apart.turn_on(namespace, &errors::message(&e));
                let args = fetch_args(fetch, None);
                self.fetch_recording_apart(namespace, &args, report)
                    .await
                    .map(Some)
            }
            Err(e) if fleet::refused_whole(&e) => {
                self.reporting.refused(namespace, &errors::message(&e));
                Ok(None)
            }
            Err(e) => Err(self.error(&e)),
        }
    }
}

/// The arguments of `fetch.lua` (and, with a report, of `report.lua`
/// after it): the largest envelope shipped and the fetch's budget; the
/// fields' names as one JSON
/// array; the epoch and revision held, or empty texts; the report's
/// arguments; the schema the fetching build publishes, as
/// `<digest>:<length>`, or an empty text; last, the prefix of the fields'
/// hash keys.
fn fetch_args(fetch: &Fetch<'_>, report: Option<&Record>) -> Vec<String> {
    let mut args = vec![
        format!("{MAX_ENVELOPE_BYTES}:{FETCH_BUDGET_BYTES}"),
        serde_json::to_string(fetch.keys()).unwrap_or_else(|_| "[]".to_owned()),
    ];
    match fetch.held() {
        Some(held) => args.extend([held.epoch.clone(), held.revision.to_string()]),
        None => args.extend([String::new(), String::new()]),
    }
    if let Some(report) = report {
        args.extend(fleet::args(report));
    }
    args.push(
        fetch
            .schema()
            .map(|s| format!("{}:{}", s.digest(), s.json().len()))
            .unwrap_or_default(),
    );
    args.push(field_key(fetch.namespace(), ""));
    args
}

/// The keys and arguments of the record script (see [`scripts::Scripts::record`]):
/// with the revision served, or without, for the one the registry holds
/// when it runs.
fn record_call(
    namespace: &str,
    report: &Record,
    revision: Option<u64>,
) -> ([String; 2], Vec<String>) {
    let keys = [fleet_key(namespace), fleet_expiry_key(namespace)];
    // ARGV[1..4] are the fetch's, which this script does not read.
    let mut args = vec![String::new(); 4];
    args.extend(fleet::args(report));
    args.push(revision.map(|r| r.to_string()).unwrap_or_default());
    args.push(meta_key(namespace));
    (keys, args)
}
