//! The write builder's tests, and the pending bound's.

use super::*;
use serde_json::json;

fn tick() -> Tick {
    Tick::from_secs(10).unwrap()
}

#[test]
fn instants_round_up_and_respect_the_horizon() {
    let write = |at| {
        Write::builder("ns", tick())
            .set("k", json!(1))
            .when(at)
            .build()
            .unwrap()
    };
    // now = 1000 ms: horizon = ceil(1000 + 10000 + 2500) = 20000
    assert_eq!(
        resolve_instants(&write(StepAt::Horizon { after: 0 }), 1_000).unwrap(),
        vec![20_000]
    );
    assert_eq!(
        resolve_instants(&write(StepAt::Horizon { after: 1 }), 1_000).unwrap(),
        vec![30_000]
    );
    assert_eq!(
        resolve_instants(&write(StepAt::At(20_001)), 1_000).unwrap(),
        vec![30_000]
    );
    // 19.999 s rounds up to 20 s: allowed; 10 s is before the horizon.
    assert_eq!(
        resolve_instants(&write(StepAt::At(19_999)), 1_000).unwrap(),
        vec![20_000]
    );
    let err = resolve_instants(&write(StepAt::At(10_000)), 1_000).unwrap_err();
    assert!(matches!(err, Error::BeforeHorizon { .. }), "{err}");
    assert!(err.to_string().contains("1970-01-01 00:00:20 UTC"), "{err}");
    assert!(err.to_string().contains("is in the past"), "{err}");
    // Too soon, but not past: named as such, with the earliest instant.
    let now = crate::tick::now_millis();
    let err = resolve_instants(&write(StepAt::At(now + 1_000)), now).unwrap_err();
    let e = err.to_string();
    assert!(
        e.contains("is too soon for `ns`") && !e.contains("past"),
        "{e}"
    );
}

#[test]
fn a_step_replaces_an_earlier_value_of_the_same_key() {
    let write = Write::builder("ns", tick())
        .set("a", json!(1))
        .set("b", json!("x"))
        .set("a", json!(2))
        .build()
        .unwrap();
    assert_eq!(
        write.steps()[0].values,
        [("b".into(), "\"x\"".into()), ("a".into(), "2".into())]
    );
    assert!(write.by().contains(" pid "), "{}", write.by());
    assert_eq!(write.id().len(), 32);
}

#[test]
fn a_step_that_is_not_a_whole_number_of_ticks_after_the_last_is_refused() {
    let b = || Write::builder("ns", tick()).set("a", json!(1));
    let e = b()
        .then_after(Duration::from_secs(15))
        .set("a", json!(2))
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::NotWholeTicks { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("15s after the previous one"), "{e}");
    assert!(
        e.contains("the tick is 10s") && e.contains("use 10s or 20s"),
        "{e}"
    );
    let e = b()
        .then_after(Duration::from_millis(2_500))
        .set("a", json!(2))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("use 10s;"), "{e}");
    let ok = b().then_after(Duration::from_secs(30)).set("a", json!(2));
    assert_eq!(
        ok.build().unwrap().steps[1].at,
        StepAt::Horizon { after: 30_000 }
    );
}

#[test]
fn what_a_store_would_refuse_is_refused_at_build() {
    let refused = |b: WriteBuilder| b.build().unwrap_err().to_string();
    let b = || Write::builder("ns", tick());
    assert!(refused(b()).contains("at least one field"));
    assert!(refused(b().set("a", json!(1)).then_at(50_000)).contains("at least one field"));
    assert!(refused(Write::builder("a.b", tick()).set("a", json!(1))).contains("namespace"));
    assert!(refused(b().set("a b", json!(1))).contains("key `a b`"));
    let big = json!("x".repeat(MAX_VALUE_BYTES));
    let e = refused(b().set("a", big).set("b", json!(1)));
    assert!(e.contains("65538 bytes") && e.contains("`ns.a`"), "{e}");
    let e = refused(b().set("a", json!(1)).at(MAX_INSTANT + 1));
    assert!(e.contains("9999-12-31"), "{e}");
    assert!(
        b().set("a", json!(1))
            .at(MAX_INSTANT - 10_000)
            .build()
            .is_ok()
    );
    let e = refused(
        b().set("a", json!(1))
            .after_horizon(Duration::from_secs(400_000 * 365 * 86_400)),
    );
    assert!(e.contains("9999-12-31"), "{e}");
    let mut ramp = b().set("a", json!(0));
    for i in 1..=MAX_STEPS {
        ramp = ramp.then_after(Duration::from_secs(10)).set("a", json!(i));
    }
    let e = refused(ramp);
    assert!(e.contains("1001 steps") && e.contains("1000"), "{e}");
}

use crate::store::stored::{MAX_PENDING_BYTES, SMALL_WRITE_BYTES};

#[test]
fn the_pending_bound_refuses_only_what_grows_a_registry_beyond_it() {
    let limit = MAX_PENDING_BYTES;
    assert!(check_pending("ns", 0, 0, limit).is_ok());
    let refused = check_pending("ns", limit - 10, 0, 11).unwrap_err();
    assert!(
        matches!(refused, Error::TooMuchPending { pending, limit: l, .. } if pending == limit + 1 && l == limit)
    );
    assert!(
        refused.to_string().contains("over the 4194304 bytes"),
        "{refused}"
    );
    // What it replaces is taken off first.
    assert!(check_pending("ns", limit, 100, 100).is_ok());
    assert!(check_pending("ns", limit, 100, 101).is_err());
    // Replacing by as much or less passes, however full.
    assert!(check_pending("ns", 3 * limit, 100, 100).is_ok());
    // A small write to a registry already beyond the bound passes (its
    // kill switch), a larger one does not.
    assert!(check_pending("ns", 3 * limit, 0, SMALL_WRITE_BYTES).is_ok());
    assert!(check_pending("ns", 3 * limit, 0, SMALL_WRITE_BYTES + 1).is_err());
}
