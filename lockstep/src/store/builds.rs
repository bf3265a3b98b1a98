//! Builds: the versions of a registry's struct that run at once, as during a
//! rolling deploy (promise 17).
//!
//! Each process names its build's schema by digest in its record
//! ([`Process::schema`]), and the store keeps every build's schema under its
//! digest ([`StoredSchema`]): so a tool knows which schemas are live, checks a
//! value against each before it writes it, and counts a process as holding a
//! change only if its build can decode it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::contract::Store;
use super::member::{Process, record_lives, record_process};
use super::stored::{Records, StoredSchema};
use super::write::Write;
use crate::error::{Error, Refusal};
use crate::schema::Schema;
use crate::tick::Tick;

/// The live builds of a registry: its live processes, grouped by the schema
/// their records name.
///
/// ```
/// use lockstep::store::{Builds, StoredSchema};
/// use lockstep::schema::{FieldSchema, Schema, ValueType};
///
/// let build = |ty: ValueType| Schema {
///     namespace: "roll".into(),
///     tick_secs: 1,
///     fields: vec![FieldSchema {
///         key: "level".into(),
///         rust_type: String::new(),
///         value_type: Some(ty),
///         default: 0.into(),
///         doc: String::new(),
///     }],
/// };
/// let v1 = StoredSchema::of(&build(ValueType::of::<u8>()));
/// let v2 = StoredSchema::of(&build(ValueType::of::<u32>()));
/// let record = |id: &str, digest: &str| {
///     serde_json::from_value(serde_json::json!({
///         "id": id, "host": "h", "pid": 1, "program": "app", "schema": digest,
///     }))
///     .unwrap()
/// };
/// let processes = [record("a", v1.digest()), record("b", v2.digest())];
/// let builds = Builds::of(&processes, &[v1.clone(), v2]);
/// assert!(builds.differ());
///
/// let refusals = builds.refusals("level", &serde_json::json!(300));
/// assert_eq!(refusals.len(), 1);
/// assert_eq!(refusals[0].processes, ["a"]);
/// assert!(refusals[0].reason.contains("out of range for u8"), "{}", refusals[0].reason);
/// assert!(builds.refusals("level", &serde_json::json!(200)).is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Builds {
    builds: Vec<Build>,
}

/// One build of a registry and its live processes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Build {
    /// The digest of its schema, as its processes' records name it; `None`
    /// for processes of lockstep versions that do not say.
    pub digest: Option<String>,
    /// Its schema, where the store holds it intact.
    #[serde(skip)]
    pub schema: Option<Schema>,
    /// Why its schema is unknown, when it is: the store does not hold it
    /// (yet), or holds it damaged. Its values cannot be checked.
    pub unknown: Option<String>,
    /// The ids of its live processes.
    pub processes: Vec<String>,
    /// The programs they run (file names), sorted, once each.
    pub programs: Vec<String>,
}

impl Build {
    /// How messages name it: `build 3f2a9c1b (2 processes of checkout)`
    /// (the first 8 digits of its digest, and at most three programs).
    pub fn name(&self) -> String {
        let digest = self
            .digest
            .as_deref()
            .map_or_else(|| "without a schema digest".to_owned(), short);
        let count = match self.processes.len() {
            1 => "1 process".to_owned(),
            n => format!("{n} processes"),
        };
        let mut programs = self
            .programs
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if self.programs.len() > 3 {
            programs.push_str(", …");
        }
        if programs.is_empty() {
            format!("build {digest} ({count})")
        } else {
            format!("build {digest} ({count} of {programs})")
        }
    }

    /// Why this build cannot decode `value` as field `key`, if it cannot:
    /// it has no such field, or the value is outside the field's type.
    /// `None` when it can, or when its schema (or the field's type) is
    /// unknown.
    pub fn refuses(&self, key: &str, value: &serde_json::Value) -> Option<String> {
        let schema = self.schema.as_ref()?;
        let Some(field) = schema.field(key) else {
            return Some(format!("it has no field `{key}`"));
        };
        let value_type = field.value_type.as_ref()?;
        value_type
            .check(value)
            .err()
            .map(|e| format!("its `{key}` is {}: {e}", field.rust_type))
    }
}

/// The first 8 digits of a digest, as messages show it.
fn short(digest: &str) -> String {
    digest.chars().take(8).collect()
}

impl Builds {
    /// The builds of `processes` (live ones), with the schemas the store
    /// keeps (see [`Records::schemas`]): one per digest the records name,
    /// largest first.
    pub fn of(processes: &[Process], schemas: &[StoredSchema]) -> Builds {
        let mut by_digest: BTreeMap<Option<&str>, Vec<&Process>> = BTreeMap::new();
        for process in processes {
            by_digest
                .entry(process.schema.as_deref())
                .or_default()
                .push(process);
        }
        let mut builds: Vec<Build> = by_digest
            .into_iter()
            .map(|(digest, members)| {
                let stored = digest.and_then(|d| schemas.iter().find(|s| s.digest() == d));
                let (schema, unknown) = match (digest, stored.map(StoredSchema::read)) {
                    (None, _) => (
                        None,
                        Some("its processes run a lockstep that does not name its schema".into()),
                    ),
                    (Some(_), None) => (None, Some("the store does not hold its schema".into())),
                    (Some(_), Some(Ok(schema))) => (Some(schema), None),
                    (Some(_), Some(Err(e))) => (None, Some(e)),
                };
                let mut programs: Vec<String> = members.iter().map(|p| p.program.clone()).collect();
                programs.sort();
                programs.dedup();
                Build {
                    digest: digest.map(str::to_owned),
                    schema,
                    unknown,
                    processes: members.iter().map(|p| p.id.clone()).collect(),
                    programs,
                }
            })
            .collect();
        builds.sort_by(|a, b| (b.processes.len(), &a.digest).cmp(&(a.processes.len(), &b.digest)));
        Builds { builds }
    }

    /// The live builds of `namespace` in `store`, read in one call
    /// ([`Store::records`]): with the registry's `tick`, records that
    /// outlive the expiry rule are left out, as in [`Fleet::of`](super::Fleet::of).
    pub async fn read(
        store: &dyn Store,
        namespace: &str,
        tick: Option<Tick>,
    ) -> Result<Builds, Error> {
        let reports = store.records(namespace).await?;
        Ok(Builds::from_reports(tick, reports))
    }

    /// The builds of the live records of `reports`.
    pub(crate) fn from_reports(tick: Option<Tick>, reports: Records) -> Builds {
        let now = reports.store_now;
        let processes: Vec<Process> = reports
            .records
            .into_iter()
            .filter(|record| tick.is_none_or(|tick| record_lives(record, tick, now)))
            .map(record_process)
            .collect();
        Builds::of(&processes, &reports.schemas)
    }

    /// The registry as its live builds see it, for tools that list its
    /// fields and write to it: the largest build's schema whose schema is
    /// known (else `latest`, the one published last), with the fields only
    /// other builds, or `latest`, have appended, and the longest tick of
    /// the live builds (a write must land beyond every build's horizon).
    /// `None` when no schema is known.
    pub fn merged(&self, latest: Option<&Schema>) -> Option<Schema> {
        let mut known = self.builds.iter().filter_map(|b| b.schema.as_ref());
        let mut merged = known.next().or(latest)?.clone();
        let others = self.builds.iter().filter_map(|b| b.schema.as_ref());
        for schema in others {
            merged.tick_secs = merged.tick_secs.max(schema.tick_secs);
        }
        let others = self.builds.iter().filter_map(|b| b.schema.as_ref());
        for schema in others.chain(latest) {
            for field in &schema.fields {
                if merged.field(&field.key).is_none() {
                    merged.fields.push(field.clone());
                }
            }
        }
        Some(merged)
    }

    /// Every build, largest first.
    pub fn all(&self) -> &[Build] {
        &self.builds
    }

    /// Whether the live processes run more than one build.
    pub fn differ(&self) -> bool {
        self.builds.len() > 1
    }

    /// The build of the process with id `id`.
    pub fn of_process(&self, id: &str) -> Option<&Build> {
        self.builds
            .iter()
            .find(|b| b.processes.iter().any(|p| p == id))
    }

    /// The builds that cannot decode `value` as field `key`, and why.
    pub fn refusals(&self, key: &str, value: &serde_json::Value) -> Vec<Refusal> {
        self.builds
            .iter()
            .filter_map(|build| {
                build.refuses(key, value).map(|reason| Refusal {
                    build: build.name(),
                    processes: build.processes.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// Refuses `write` if some live build cannot decode one of its values,
    /// or ticks slower than the write assumes (its processes might not
    /// hold it before it activates): [`Error::NotServed`], naming the first
    /// such value, the builds and why. Values of fields every build has,
    /// of types every build decodes, pass.
    pub fn check(&self, write: &Write) -> Result<(), Error> {
        let tick_secs = write.tick().as_secs();
        for step in write.steps() {
            for (key, text) in step.values() {
                let mut refusals = match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(value) => self.refusals(key, &value),
                    // The writer encoded it: it is JSON. Stores refuse it
                    // otherwise.
                    Err(_) => continue,
                };
                for build in &self.builds {
                    let Some(schema) = &build.schema else {
                        continue;
                    };
                    if schema.tick_secs > tick_secs
                        && !refusals.iter().any(|r| r.build == build.name())
                    {
                        refusals.push(Refusal {
                            build: build.name(),
                            processes: build.processes.clone(),
                            reason: format!(
                                "it ticks every {} s, slower than this write's {tick_secs} s: \
                                 its processes may not hold it before it activates (write \
                                 with the longer tick)",
                                schema.tick_secs
                            ),
                        });
                    }
                }
                if !refusals.is_empty() {
                    return Err(Error::NotServed {
                        namespace: write.namespace().to_owned(),
                        key: key.clone(),
                        value: text.clone(),
                        refusals,
                    });
                }
            }
        }
        Ok(())
    }

    /// The builds whose values cannot be checked: their schema is unknown.
    pub fn unchecked(&self) -> impl Iterator<Item = &Build> {
        self.builds.iter().filter(|b| b.schema.is_none())
    }
}
