//! The SQL calls' tests.

use super::*;
use crate::store::StepAt;

#[test]
fn the_same_field_and_instant_keeps_the_last_value() {
    let write = Write::builder("ns", Tick::__from_secs(1))
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
