//! Writes the tests plant: many entries at once, or exact texts; and the
//! fleet report a typical process sends, for the benchmarks.

/// A write that gives every one of `keys` `entries` entries, one tick
/// apart from the horizon on (values 1000, 1001, …): what the fetch-cost
/// measurements read back.
pub fn entries_write(
    namespace: &str,
    tick: lockstep::Tick,
    by: &str,
    keys: &[String],
    entries: usize,
) -> lockstep::store::Write {
    let mut write = lockstep::store::Write::builder(namespace, tick).by(by);
    for k in 0..entries {
        if k > 0 {
            write = write.then_after(tick.as_duration());
        }
        for key in keys {
            write = write.set(key.as_str(), serde_json::json!(1000 + k));
        }
    }
    write.build().expect("a valid write")
}

/// A write of `steps` exactly as given (names, texts, duplicates and
/// empty steps all), for tests of what a store does with what it is handed:
/// built with the write builder, then its parts put in place, as a hostile
/// or buggy writer could.
pub fn raw_write(
    namespace: &str,
    tick: lockstep::Tick,
    by: &str,
    steps: Vec<(lockstep::store::StepAt, Vec<(&str, &str)>)>,
) -> lockstep::store::Write {
    let mut builder = lockstep::store::Write::builder("raw", tick).by(by);
    for (i, (at, _)) in steps.iter().enumerate() {
        builder = if i == 0 {
            builder.when(*at)
        } else {
            builder.then(*at)
        };
        builder = builder.set("raw", serde_json::Value::Null);
    }
    let mut write = builder.build().expect("a valid write");
    write.namespace = namespace.to_owned();
    for (step, (_, values)) in write.steps.iter_mut().zip(steps) {
        step.values = values
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }
    write
}

/// The fleet report a typical process sends with its fetch (a body of
/// about 270 bytes, kept for 30 s), as the benchmarks that price
/// reporting send it.
pub fn sample_report() -> lockstep::store::Report {
    let body = serde_json::json!({
        "id": "0123456789abcdef", "host": "web-17.example.internal", "pid": 48213,
        "program": "checkout-service", "version": "0.1.0", "started": 1_767_225_600_000_i64,
        "tick_ms": 10_000, "fetches": 8_640, "failed_fetches": 3, "late_flips": 0,
        "rejected": 0, "refused": [], "clock_offset_ms": -0.42, "store_lost": false
    });
    lockstep::store::Report {
        process: "0123456789abcdef".to_owned(),
        body: body.to_string(),
        expires_after: 30_000,
    }
}
