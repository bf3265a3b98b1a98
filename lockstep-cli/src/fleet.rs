//! `fleet`: a registry's live processes and, for each pending change, how
//! many of them hold it and which do not (promise 14).

use std::collections::HashMap;

use lockstep::store::Fleet;
use lockstep::store::from_datetime;
use lockstep::store::{Build, PendingChange, Process};

use crate::context::{Ctx, tick_of};
use crate::failure::Failure;
use crate::outcome::Outcome;
use crate::view::{self, instant, relative, span, table};
use crate::wait::NAMED;

/// The fleet view of `namespace`, over the fields its live builds and its
/// latest published schema list (none when it published none: the
/// processes alone).
pub async fn read(ctx: &Ctx, namespace: &str) -> Result<(Fleet, bool), Failure> {
    let (schema, _) = ctx.live(namespace).await?;
    let keys: Vec<&str> = schema
        .iter()
        .flat_map(|s| s.fields.iter().map(|f| f.key.as_str()))
        .collect();
    // A schema whose tick is invalid leaves the records unjudged.
    let tick = schema.as_ref().and_then(|s| tick_of(s).ok());
    let fleet = lockstep::store::fleet(&*ctx.store, namespace, &keys, tick).await?;
    Ok((fleet, schema.is_some()))
}

/// `fleet NS`: the view, as a table of processes and a list of pending
/// changes; as JSON, the library's [`Fleet`] as it serializes.
pub async fn fleet(ctx: &Ctx, namespace: &str) -> Result<Outcome, Failure> {
    let (fleet, schema) = read(ctx, namespace).await?;
    let json = serde_json::to_value(&fleet)
        .map_err(|e| Failure::refused(format!("cannot show the fleet as JSON: {e}")))?;
    Ok(Outcome::new(text(&fleet, schema), json))
}

/// `N/M hold it`, or who does not report.
pub fn held_text(change: &PendingChange) -> String {
    if change.of == 0 {
        "no live process reports".to_owned()
    } else {
        format!("{}/{} hold it", change.held_by, change.of)
    }
}

/// The pending change of `fleet` of `field` at `at`, if the view has it.
pub fn change_at<'a>(fleet: &'a Fleet, field: &str, at: i64) -> Option<&'a PendingChange> {
    fleet
        .pending
        .iter()
        .find(|c| c.field == field && from_datetime(c.at) == at)
}

/// The view for a person.
fn text(fleet: &Fleet, schema: bool) -> String {
    let now = from_datetime(fleet.store_time);
    let count = fleet.processes.len();
    let mut out = format!(
        "{}  revision {}  {count} live process{}  {}\n",
        fleet.namespace,
        fleet.revision,
        if count == 1 { "" } else { "es" },
        instant(now)
    );
    if count == 0 {
        out.push_str(
            "  no live process reports (reporting is off — Builder::report(false) — or none \
             fetched in the last 3 ticks)\n",
        );
    } else {
        let mut rows = vec![
            [
                "HOST",
                "PID",
                "PROGRAM",
                "ID",
                "LAST FETCH",
                "REVISION",
                "LATE FLIPS",
                "REJECTED",
                "CLOCK OFFSET",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        rows.extend(fleet.processes.iter().map(|p| process_row(p, now)));
        // During a rolling deploy, which build each process runs.
        if fleet.builds.len() > 1 {
            rows[0].push("BUILD".to_owned());
            for (row, p) in rows[1..].iter_mut().zip(&fleet.processes) {
                let digest = p.schema.as_deref().unwrap_or("-");
                row.push(digest.chars().take(8).collect());
            }
        }
        out.push_str(&table(&rows, "  "));
        out.push_str(&behind_text(fleet));
        out.push_str(&builds_text(&fleet.builds));
    }
    if fleet.ignored > 0 {
        out.push_str(&format!(
            "  {} record{} left out: {} to live longer than the registry's expiry rule allows \
             (a last fetch over 3 ticks ago, or after the store's clock): planted by hand, or \
             kept while the store's clock stepped back\n",
            fleet.ignored,
            if fleet.ignored == 1 { "" } else { "s" },
            if fleet.ignored == 1 {
                "it claims"
            } else {
                "they claim"
            },
        ));
    }
    out.push('\n');
    if !schema {
        out.push_str(&format!(
            "pending: unknown (`{}` published no schema, so its fields are not known)\n",
            fleet.namespace
        ));
    } else if fleet.pending.is_empty() {
        out.push_str("pending: none\n");
    } else {
        out.push_str("pending:\n");
        let by_id: HashMap<&str, &Process> =
            fleet.processes.iter().map(|p| (p.id.as_str(), p)).collect();
        for change in &fleet.pending {
            out.push_str(&change_text(fleet, &by_id, change, now));
        }
    }
    out
}

fn process_row(p: &Process, now: i64) -> Vec<String> {
    vec![
        p.host.clone(),
        p.pid.to_string(),
        p.program.clone(),
        p.id.clone(),
        format!("{} ago", span(now - from_datetime(p.last_fetch))),
        match p.behind {
            Some(due) => format!("{} BEHIND {due}", p.revision),
            None => p.revision.to_string(),
        },
        p.late_flips.to_string(),
        p.rejected.to_string(),
        match p.clock_offset_ms {
            None => "-".to_owned(),
            Some(ms) if ms.abs() < 0.05 => "0.0 ms".to_owned(),
            Some(ms) => format!("{ms:+.1} ms"),
        },
    ]
}

/// What the processes behind the registry's revision mean, if there are
/// any.
fn behind_text(fleet: &Fleet) -> String {
    let behind = fleet
        .processes
        .iter()
        .filter(|p| p.behind.is_some())
        .count();
    if behind == 0 {
        return String::new();
    }
    format!(
        "  {behind} process{} BEHIND: the last fetch was served an older revision than the \
         store held a fetch timeout before it; such a process reads a server that lags far \
         behind or no longer follows the primary, and will not switch to what it lacks\n",
        if behind == 1 { " is" } else { "es are" }
    )
}

/// The builds the live processes run, when they run more than one (a
/// rolling deploy) or one whose schema is unknown.
pub fn builds_text(builds: &[Build]) -> String {
    if builds.len() < 2 && builds.iter().all(|b| b.unknown.is_none()) {
        return String::new();
    }
    let mut out = format!("  {} builds run:\n", builds.len());
    for build in builds {
        out.push_str(&format!("    {}", build.name()));
        if let Some(why) = &build.unknown {
            out.push_str(&format!(": its values cannot be checked ({why})"));
        }
        out.push('\n');
    }
    out
}

/// A pending change, who holds it and (the first [`NAMED`]) who does not.
fn change_text(
    fleet: &Fleet,
    by_id: &HashMap<&str, &Process>,
    change: &PendingChange,
    now: i64,
) -> String {
    let at = from_datetime(change.at);
    let mut out = format!(
        "  {}.{} = {} at {} ({})  {}\n",
        fleet.namespace,
        change.field,
        view::value_text(&change.value),
        instant(at),
        relative(at, now),
        held_text(change)
    );
    for refusal in &change.rejected {
        out.push_str(&format!(
            "    rejected by {}: {}\n",
            refusal.build, refusal.reason
        ));
    }
    for id in change.missing.iter().take(NAMED) {
        let name = by_id
            .get(id.as_str())
            .map_or_else(|| id.clone(), |p| p.name());
        out.push_str(&format!("    not held by {name}\n"));
    }
    if change.missing.len() > NAMED {
        out.push_str(&format!(
            "    and {} more (`--json` lists them all)\n",
            change.missing.len() - NAMED
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use lockstep::store::driver::Record;
    use lockstep::store::{Fetch, MemoryStore, Store, Write};
    use lockstep::{ManualClock, Tick};
    use serde_json::json;

    fn report(id: &str, pid: u32) -> Record {
        Record::new(
            id.to_owned(),
            json!({"id": id, "host": "vm", "pid": pid, "program": "shop",
                         "late_flips": 2, "clock_offset_ms": 1.5})
            .to_string(),
            3_000,
        )
    }

    #[test]
    fn the_view_names_who_does_not_hold_a_change_and_json_is_the_librarys() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
                let store = MemoryStore::with_clock(&clock);
                let tick = Tick::from_secs(1).unwrap();
                for (id, pid) in [("a", 10), ("b", 11)] {
                    store
                        .fetch_with(
                            Fetch::new("shop", &["limit"]).reporting(Some(&report(id, pid))),
                        )
                        .await
                        .unwrap();
                }
                let write = Write::builder("shop", tick)
                    .set("limit", json!(5))
                    .build()
                    .unwrap();
                let at = store.commit(&write).await.unwrap().instants[0];
                store
                    .fetch_with(Fetch::new("shop", &["limit"]).reporting(Some(&report("a", 10))))
                    .await
                    .unwrap();
                let fleet = lockstep::store::fleet(&store, "shop", &["limit"], None)
                    .await
                    .unwrap();
                let shown = text(&fleet, true);
                assert!(shown.contains("2 live processes"), "{shown}");
                assert!(
                    shown.contains(&format!("shop.limit = 5 at {}", instant(at))),
                    "{shown}"
                );
                assert!(shown.contains("1/2 hold it"), "{shown}");
                assert!(shown.contains("not held by vm pid 11 (shop, b)"), "{shown}");
                assert!(!shown.contains("not held by vm pid 10"), "{shown}");
                assert!(shown.contains("+1.5 ms"), "{shown}");
                let held = change_at(&fleet, "limit", at).unwrap();
                assert_eq!(held_text(held), "1/2 hold it");
                let json = serde_json::to_value(&fleet).unwrap();
                let process = &json["processes"][0];
                for key in ["id", "host", "pid", "last_fetch", "revision", "late_flips"] {
                    assert!(process.get(key).is_some(), "{key}: {json}");
                }
                assert_eq!(
                    json["pending"][0],
                    json!({"field": "limit", "at": json["pending"][0]["at"], "value": 5,
                           "write": write.id(), "by": json["pending"][0]["by"], "revision": 1,
                           "held_by": 1, "of": 2, "missing": ["b"], "rejected": []})
                );
            });
    }
}
