//! The SQL calls' tests.

use super::*;
use crate::store::stored::Epoch;
use crate::store::write::StepAt;

#[test]
fn the_same_field_and_instant_keeps_the_last_value() {
    let write = Write::builder("ns", Tick::from_secs(1).unwrap())
        .at(1_500)
        .set("a", serde_json::json!(1))
        .set("a", serde_json::json!(2))
        .then(StepAt::At(1_900))
        .set("a", serde_json::json!(3))
        .set("b", serde_json::json!(4))
        .build()
        .unwrap();
    let entries = last_write_wins(&write, &[2_000, 2_000]);
    let got: Vec<_> = entries.iter().map(|e| (e.field, e.at, e.value)).collect();
    assert_eq!(got, vec![("a", 2_000, "3"), ("b", 2_000, "4")]);
    assert_eq!(written_keys(&write), vec!["a", "b"]);
}

#[test]
fn rows_become_a_fetch() {
    let t = |s: Option<&str>| Cell::Text(s.map(str::to_owned));
    let i = |n: Option<i64>| Cell::Int(n);
    let row = |field: Option<&str>, at, value: Option<&str>, size, written_at| {
        vec![
            t(field),
            i(Some(at)),
            t(value),
            i(size),
            i(written_at),
            t(field.map(|_| "w")),
            t(Some("me")),
            i(Some(if field.is_some() { at / 1000 } else { 9 })),
            i(None),
        ]
    };
    let fetched = assemble(
        vec![
            row(Some("a"), 3_000, Some("3"), Some(1), Some(1)),
            row(None, 7_000_123, Some("epoch"), Some(1), Some(5)),
            row(Some("a"), 2_000, Some("2"), Some(1), Some(1)),
            row(Some("b"), 2_000, None, Some(10_000_000), Some(1)),
        ],
        &["a", "b", "c"],
    )
    .ok()
    .unwrap();
    assert_eq!(fetched.store_micros, Some(7_000_123));
    assert_eq!(fetched.revision, 9);
    assert_eq!(
        fetched.fields["a"][1].origin.as_ref().map(|o| o.revision),
        Some(3)
    );
    assert!(fetched.schema_held);
    assert_eq!(
        fetched.epoch,
        Some(Epoch {
            id: "epoch".into(),
            created: 5
        })
    );
    let ats: Vec<_> = fetched.fields["a"].iter().map(|e| e.at).collect();
    assert_eq!(ats, vec![2_000, 3_000]);
    assert_eq!(
        fetched.fields["b"][0].value,
        Err("10000000 bytes, over the limit of 65536".to_owned())
    );
    assert!(fetched.fields["c"].is_empty());
    assert_eq!(fetched.fields["a"][0].origin.as_ref().unwrap().by, "me");
    let empty = assemble(vec![row(None, 1, None, Some(0), None)], &[])
        .ok()
        .unwrap();
    assert_eq!(empty.epoch, None);
    assert!(!empty.schema_held);
    assert!(assemble(vec![], &[]).is_err());
    assert_eq!(parse_instants("").ok(), Some(vec![]));
    assert_eq!(parse_instants("1,2").ok(), Some(vec![1, 2]));
    assert!(parse_instants("x").is_err());
}

#[test]
fn the_entries_of_a_field_not_shipped_read_as_not_fetched_with_their_origin() {
    let t = |s: Option<&str>| Cell::Text(s.map(str::to_owned));
    let i = |n: Option<i64>| Cell::Int(n);
    let row = |field: Option<&str>, at, value: Option<&str>, size, unshipped| {
        vec![
            t(field),
            i(Some(at)),
            t(value),
            i(Some(size)),
            i(Some(5)),
            t(field.map(|_| "w")),
            t(Some("me")),
            i(Some(2)),
            i(unshipped),
        ]
    };
    let fetched = assemble(
        vec![
            row(None, 7_000_000, Some("epoch"), 0, None),
            row(Some("small"), 1_000, Some("1"), 1, None),
            row(Some("wide"), 2_000, None, 60_000, Some(9_000_000)),
            // Over the size limit, in a field not shipped: not fetched too.
            row(Some("wide"), 1_000, None, 70_000, Some(9_000_000)),
        ],
        &["small", "wide"],
    )
    .ok()
    .unwrap();
    assert_eq!(fetched.fields["small"][0].value.as_deref(), Ok("1"));
    let wide = &fetched.fields["wide"];
    assert_eq!(
        wide.iter().map(|e| e.at).collect::<Vec<_>>(),
        [1_000, 2_000]
    );
    for entry in wide {
        assert_eq!(
            entry.value,
            Err(crate::store::stored::not_fetched(9_000_000))
        );
        let origin = entry.origin.as_ref().expect("who wrote it");
        assert_eq!((origin.write.as_str(), origin.revision), ("w", 2));
    }
    assert!(fetched.unplaced.is_empty());
}

#[test]
fn rows_become_reports_and_schemas() {
    let t = |s: Option<&str>| Cell::Text(s.map(str::to_owned));
    let i = |n: Option<i64>| Cell::Int(n);
    let record = |process: Option<&str>, now| {
        vec![
            t(process),
            i(process.map(|_| 10)),
            i(process.map(|_| 3)),
            t(process.map(|_| "{}")),
            i(Some(now)),
            t(None),
        ]
    };
    let schema = |digest: &str, json: &str| {
        vec![
            t(None),
            i(Some(5)),
            i(None),
            t(Some(json)),
            i(None),
            t(Some(digest)),
        ]
    };
    let reports = assemble_records(vec![
        schema("00000000000000aa", r#"{"a":1}"#),
        record(Some("p1"), 1_000),
        record(Some("p2"), 1_000),
    ])
    .ok()
    .unwrap();
    assert_eq!(reports.store_now, 1_000);
    let ids: Vec<_> = reports.records.iter().map(|r| r.process.as_str()).collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(reports.records[0].revision, 3);
    assert_eq!(
        reports.schemas,
        [StoredSchema::stored("00000000000000aa", r#"{"a":1}"#)]
    );
    // No record: the clock row alone.
    let empty = assemble_records(vec![record(None, 7)]).ok().unwrap();
    assert_eq!((empty.store_now, empty.records.len()), (7, 0));
    // Schemas without the clock row are no answer.
    assert!(assemble_records(vec![schema("x", "{}")]).is_err());
}
