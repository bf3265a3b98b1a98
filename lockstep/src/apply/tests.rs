//! The timeline work's tests: a model test of the conditional fetch, and
//! the check of an unchanged answer.

use proptest::prelude::*;

use super::*;
use crate::engine::State;
use crate::store::model::{Change, Model as ModelStore, change};
use crate::store::{Fetch, Store};

#[crate::lockstep(tick = "1s", store = "memory")]
struct Model {
    #[lockstep(default = 1)]
    level: u8,
    #[lockstep(default = "a")]
    name: String,
    #[lockstep(default = 0)]
    other: u8,
}

const KEYS: [&str; 3] = ["level", "name", "other"];

/// A value for field `k`: `bad` ones do not decode as its type.
fn json(k: usize, v: u8, bad: bool) -> serde_json::Value {
    match (k, bad) {
        (1, false) => serde_json::json!(format!("n{v}")),
        (1, true) => serde_json::json!(v),
        (_, false) => serde_json::json!(v),
        (_, true) => serde_json::json!(format!("not a number {v}")),
    }
}

/// What one step of the model does: a change to the store, or both
/// processes fetching (the conditional one's fetch fails if the flag says,
/// and the full one's then too, so both saw the same).
#[derive(Clone, Debug)]
enum Op {
    Change(Change),
    Fetch(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => change(KEYS.len(), json, true, 3_000).prop_map(Op::Change),
        6 => proptest::bool::weighted(0.15).prop_map(Op::Fetch),
    ]
}

/// What a process holds, to compare: each timeline's entries as
/// (instant, text), its bad entries, its revision and epoch.
type Holding = (Vec<Vec<(Millis, String)>>, Vec<String>, u64, Option<String>);

fn holding(state: &State) -> Holding {
    let state = state.timelines();
    let timelines = state
        .fields
        .iter()
        .zip(Model::DEF.fields)
        .map(|(t, field)| {
            t.entries()
                .iter()
                .map(|(at, d)| (*at, (field.encode)(&d.value)))
                .collect()
        })
        .collect();
    (
        timelines,
        state.bad.clone(),
        state.revision,
        state.epoch.as_ref().map(|e| e.id.clone()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever commits, cancels, purges, losses of the store, failed
    /// fetches and pauses interleave, a process fetching conditionally
    /// holds, after every fetch, exactly what a process fetching in full
    /// at the same moments holds: it never misses a change because of
    /// the revision, and an unchanged answer reads no entry.
    #[test]
    fn a_conditional_fetcher_holds_what_a_full_fetcher_holds(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let model = ModelStore::new("model", &KEYS);
            let s: &dyn Store = &model.store;
            let mut conditional = State::new(KEYS.len());
            let mut full = State::new(KEYS.len());
            for op in ops {
                let now = model.clock.now_millis();
                match op {
                    Op::Change(change) => model.make(&change).await,
                    Op::Fetch(fails) => {
                        let held = conditional.holding();
                        let answer = s
                            .fetch_with(Fetch::new("model", &KEYS).holding(held.as_ref()))
                            .await
                            .unwrap();
                        prop_assert_eq!(check_unchanged(&answer, held.as_ref()), Ok(()));
                        if answer.unchanged {
                            prop_assert!(answer.fields.is_empty());
                        }
                        let whole = s.fetch("model", &KEYS).await.unwrap();
                        if fails {
                            // As `refresh::record` does with a failure.
                            let down = crate::Error::Store {
                                store: s.describe(),
                                message: "down".into(),
                            };
                            conditional.failed(&down, now);
                            full.failed(&down, now);
                        } else {
                            conditional.answered::<Model>(answer, held, now);
                            full.answered::<Model>(whole, None, now);
                            prop_assert_eq!(holding(&conditional), holding(&full));
                            for ((a, b), field) in conditional
                                .timelines()
                                .fields
                                .iter()
                                .zip(&full.timelines().fields)
                                .zip(Model::DEF.fields)
                            {
                                let text = |(at, d): &(Millis, Decoded)| {
                                    (*at, (field.encode)(&d.value))
                                };
                                prop_assert_eq!(
                                    a.active_at(now).map(text),
                                    b.active_at(now).map(text)
                                );
                            }
                            prop_assert_eq!(
                                conditional.status().store_lost(),
                                full.status().store_lost()
                            );
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn an_unchanged_answer_for_another_revision_is_refused() {
    let fetched = Fetched {
        epoch: Some(crate::store::driver::Epoch {
            id: "e".into(),
            created: 0,
        }),
        revision: 3,
        unchanged: true,
        ..Fetched::default()
    };
    let held = |revision| Held {
        epoch: "e".into(),
        revision,
    };
    assert_eq!(check_unchanged(&fetched, Some(&held(3))), Ok(()));
    assert!(check_unchanged(&fetched, Some(&held(2))).is_err());
    assert!(check_unchanged(&fetched, None).is_err());
    let full = Fetched {
        unchanged: false,
        ..fetched
    };
    assert_eq!(check_unchanged(&full, None), Ok(()));
}
