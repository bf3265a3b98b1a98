//! The fleet view's tests: a model test of who holds what, and the rules
//! a view applies to the records it reads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::store::fetch::Fetch;
use crate::store::model::{Change, Model, change};
use crate::store::stored::Record;
use crate::store::stored::StoredRecord;

const KEYS: [&str; 2] = ["a", "b"];

fn record_of(id: &str) -> Record {
    Record::new(
        id.to_owned(),
        format!(r#"{{"id":"{id}","host":"h","pid":1,"program":"p"}}"#),
        600_000,
    )
}

/// What one step of the model does: a change to the store, or process
/// `p` fetching with its record.
#[derive(Clone, Debug)]
enum Op {
    Change(Change),
    Fetch(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let value = |_, v, _| serde_json::json!(v);
    prop_oneof![
        6 => change(KEYS.len(), value, false, 2_500).prop_map(Op::Change),
        4 => (0..3usize).prop_map(Op::Fetch),
    ]
}

/// An entry as a process holds it: field, instant, value, write.
type Held = (String, Millis, Result<String, String>, Option<String>);

fn held(fetched: &crate::store::fetch::Fetched) -> BTreeSet<Held> {
    fetched
        .fields
        .iter()
        .flat_map(|(key, entries)| {
            entries.iter().map(move |e| {
                (
                    key.clone(),
                    e.at,
                    e.value.clone(),
                    e.origin.as_ref().map(|o| o.write.clone()),
                )
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever commits, overwrites, cancels, purges and fetches
    /// interleave, the view says a process holds a pending change
    /// exactly when that very entry (field, instant, value, write) was in
    /// the last fetch the process was served.
    #[test]
    fn the_view_says_held_exactly_when_the_last_fetch_served_it(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let model = Model::new("m", &KEYS);
            let s: &dyn Store = &model.store;
            let mut served: BTreeMap<String, BTreeSet<Held>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Change(change) => model.make(&change).await,
                    Op::Fetch(p) => {
                        let id = format!("p{p}");
                        let fetched = s
                            .fetch_with(Fetch::new("m", &KEYS).reporting(Some(&record_of(&id))))
                            .await
                            .unwrap();
                        served.insert(id, held(&fetched));
                    }
                }
                let view = fleet(s, "m", &KEYS, None).await.unwrap();
                prop_assert_eq!(view.processes.len(), served.len());
                for change in &view.pending {
                    let entry: Held = (
                        change.field.clone(),
                        crate::tick::from_datetime(change.at),
                        change.value.clone(),
                        change.write.clone(),
                    );
                    for process in &view.processes {
                        let holds = !change.missing.contains(&process.id);
                        prop_assert_eq!(
                            holds,
                            served[&process.id].contains(&entry),
                            "{} and {:?}", process.id, entry
                        );
                    }
                    prop_assert_eq!(change.held_by + change.missing.len(), change.of);
                }
            }
            Ok(())
        })?;
    }
}

/// A schema of `roll` whose `level` is a `T`, with `extra` or not.
fn roll<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(
    extra: bool,
) -> crate::store::stored::StoredSchema {
    let field = |key: &str, value_type: crate::schema::ValueType| crate::schema::FieldSchema {
        key: key.into(),
        rust_type: value_type.to_string(),
        value_type: Some(value_type),
        default: 0.into(),
        doc: String::new(),
    };
    let mut fields = vec![field("level", crate::schema::ValueType::of::<T>())];
    if extra {
        fields.push(field("extra", crate::schema::ValueType::of::<u32>()));
    }
    crate::store::StoredSchema::of(&crate::schema::Schema {
        namespace: "roll".into(),
        tick_secs: 1,
        fields,
    })
}

#[test]
fn a_process_holds_an_entry_only_if_its_build_decodes_it_and_it_did_not_refuse_it() {
    let (v1, v2) = (roll::<u8>(false), roll::<u32>(true));
    let record = |id: &str, digest: Option<&str>, revision: u64, refused: &str| StoredRecord {
        process: id.into(),
        seen: 0,
        revision,
        body: serde_json::json!({
            "id": id, "host": "h", "pid": 1, "program": "p", "schema": digest,
            "refused": serde_json::from_str::<serde_json::Value>(refused).unwrap(),
        })
        .to_string(),
    };
    let entry = |at: Millis, value: &str| StoredEntry {
        at,
        value: Ok(value.into()),
        origin: Some(crate::store::stored::Origin {
            write: format!("w{at}"),
            written_at: 0,
            by: "t".into(),
            revision: 3,
        }),
    };
    let fetched = Fetched {
        store_micros: Some(0),
        revision: 3,
        fields: [
            (
                "level".to_owned(),
                vec![entry(1_000, "300"), entry(2_000, "7")],
            ),
            ("extra".to_owned(), vec![entry(1_000, "6")]),
        ]
        .into(),
        ..Fetched::default()
    };
    let reports = Records {
        store_now: 0,
        records: vec![
            record("old", Some(v1.digest()), 5, "[]"),
            record("new", Some(v2.digest()), 5, "[]"),
            // Fetched it, and said it could not decode it.
            record(
                "said",
                Some(v2.digest()),
                5,
                r#"[{"field":"level","at":2000}]"#,
            ),
            // Not fetched since it was written.
            record("slow", Some(v2.digest()), 2, "[]"),
        ],
        schemas: vec![v1.clone(), v2.clone()],
    };
    let fleet = Fleet::of("roll", None, &fetched, reports);
    assert_eq!(fleet.builds.len(), 2);
    let change = |field: &str, at: Millis| {
        fleet
            .pending
            .iter()
            .find(|c| c.field == field && crate::tick::from_datetime(c.at) == at)
            .unwrap()
    };
    let ids = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };

    // 300 is out of range for the old build's u8.
    let high = change("level", 1_000);
    assert_eq!((high.held_by, high.of), (2, 4));
    assert_eq!(ids(&high.missing), set(&["old", "slow"]));
    assert_eq!(high.rejected.len(), 1);
    assert_eq!(high.rejected[0].processes, ["old"]);
    assert!(
        high.rejected[0].reason.contains("out of range for u8"),
        "{:?}",
        high.rejected
    );
    assert!(high.rejected[0].build.contains(&v1.digest()[..8]));

    // The old build has no `extra`.
    let extra = change("extra", 1_000);
    assert_eq!(ids(&extra.missing), set(&["old", "slow"]));
    assert_eq!(extra.rejected[0].reason, "it has no field `extra`");

    // 7 every build decodes; one process said it could not.
    let low = change("level", 2_000);
    assert_eq!(ids(&low.missing), set(&["said", "slow"]));
    assert_eq!(low.rejected.len(), 1);
    assert_eq!(low.rejected[0].processes, ["said"]);
    assert!(
        low.rejected[0].reason.contains("reported"),
        "{:?}",
        low.rejected
    );
}

#[test]
fn a_schema_changed_in_the_store_is_not_trusted() {
    let v1 = roll::<u8>(false);
    let damaged = crate::store::StoredSchema::stored(v1.digest(), v1.json().replace("255", "999"));
    let process: Process = serde_json::from_value(serde_json::json!({
        "id": "a", "host": "h", "pid": 1, "program": "p", "schema": v1.digest(),
    }))
    .unwrap();
    let builds = crate::store::Builds::of(std::slice::from_ref(&process), &[damaged]);
    let build = &builds.all()[0];
    assert!(build.schema.is_none());
    assert!(
        build
            .unknown
            .as_deref()
            .unwrap()
            .contains("does not match its digest"),
        "{:?}",
        build.unknown
    );
    // Its values cannot be checked: none is refused for it.
    assert!(builds.refusals("level", &serde_json::json!(300)).is_empty());
    assert_eq!(builds.unchecked().count(), 1);
}

#[test]
fn an_unreadable_record_still_counts_under_its_id() {
    let process = record_process(StoredRecord {
        process: "odd".into(),
        seen: 1_000,
        revision: 2,
        body: "not json".into(),
    });
    assert_eq!((process.id.as_str(), process.revision), ("odd", 2));
    assert!(
        process.host.contains("unreadable record"),
        "{}",
        process.host
    );
}

#[test]
fn a_process_served_an_older_revision_than_was_written_a_fetch_timeout_before_is_behind() {
    let entry = |at: Millis, written_at: Millis, revision: u64| StoredEntry {
        at,
        value: Ok("1".into()),
        origin: Some(crate::store::stored::Origin {
            write: format!("w{revision}"),
            written_at,
            by: "test".into(),
            revision,
        }),
    };
    // Revisions 1, 2 and 3 written at 1 s, 2 s and 3 s.
    let fetched = Fetched {
        store_micros: Some(3_400_000),
        revision: 3,
        fields: BTreeMap::from([
            (
                "f".to_owned(),
                vec![entry(0, 1_000, 1), entry(5_000, 2_000, 2)],
            ),
            ("g".to_owned(), vec![entry(9_000, 3_000, 3)]),
        ]),
        ..Fetched::default()
    };
    let record = |id: &str, seen: Millis, revision: u64, tick_ms: i64| StoredRecord {
        process: id.into(),
        seen,
        revision,
        body: serde_json::json!({
            "id": id, "host": "h", "pid": 1, "program": "p", "tick_ms": tick_ms
        })
        .to_string(),
    };
    // A 1 s tick: a fetch timeout of 250 ms.
    let records = vec![
        // Fetched 100 ms after revision 3: a replica may not hold it yet.
        record("fresh", 3_100, 2, 1_000),
        // Fetched 300 ms after it, and served revision 1.
        record("behind", 3_300, 1, 1_000),
        record("current", 3_300, 3, 1_000),
        // A record that does not say its tick is not judged.
        record("untold", 3_300, 1, 0),
    ];
    let fleet = Fleet::of(
        "ns",
        None,
        &fetched,
        Records {
            store_now: 3_400,
            records,
            schemas: Vec::new(),
        },
    );
    let behind: BTreeMap<&str, Option<u64>> = fleet
        .processes
        .iter()
        .map(|p| (p.id.as_str(), p.behind))
        .collect();
    assert_eq!(
        behind,
        BTreeMap::from([
            ("behind", Some(3)),
            ("current", None),
            ("fresh", None),
            ("untold", None)
        ])
    );
}

#[test]
fn records_that_outlive_the_expiry_rule_are_ignored() {
    let record = |id: &str, seen: Millis| StoredRecord {
        process: id.into(),
        seen,
        revision: 1,
        body: serde_json::json!({"id": id, "host": "h", "pid": 1, "program": "p"}).to_string(),
    };
    let now = 100_000;
    // A 1 s tick: records live 3 s, give or take a fetch timeout (250 ms).
    let records = vec![
        record("now", now),
        record("three ticks ago", now - 3_000),
        record("just in the margin", now - 3_249),
        record("older", now - 3_251),
        record("a year old", now - 31_536_000_000),
        record("clocks a little apart", now + 250),
        record("from the future", now + 251),
    ];
    let reports = || Records {
        store_now: now,
        records: records.clone(),
        schemas: Vec::new(),
    };
    // A fetch made a while before the records were read (a tool that
    // reads them anew each frame): they are judged when read.
    let fetched = Fetched {
        store_micros: Some((now - 900) * 1000),
        ..Fetched::default()
    };
    let tick = Tick::new(Duration::from_secs(1)).ok();
    let view = Fleet::of("ns", tick, &fetched, reports());
    let ids: BTreeSet<&str> = view.processes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            "now",
            "three ticks ago",
            "just in the margin",
            "clocks a little apart"
        ])
    );
    assert_eq!(view.ignored, 3);
    // Without the registry's tick, every record the store returns.
    let view = Fleet::of("ns", None, &fetched, reports());
    assert_eq!((view.processes.len(), view.ignored), (7, 0));
}
