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

/// A write of `steps` with each value's text exactly as given (JSON or
/// not), for tests that plant what a registry must cope with: built with
/// the write builder, which still refuses what no store may hold.
pub fn raw_write(
    namespace: &str,
    tick: lockstep::Tick,
    by: &str,
    steps: Vec<(lockstep::store::StepAt, Vec<(&str, &str)>)>,
) -> lockstep::store::Write {
    raw_builder(namespace, tick, by, steps)
        .build()
        .expect("a write the builder accepts")
}

/// The builder of [`raw_write`], for a test that wants to see what
/// [`WriteBuilder::build`](lockstep::store::WriteBuilder::build) says.
pub fn raw_builder(
    namespace: &str,
    tick: lockstep::Tick,
    by: &str,
    steps: Vec<(lockstep::store::StepAt, Vec<(&str, &str)>)>,
) -> lockstep::store::WriteBuilder {
    let mut builder = lockstep::store::Write::builder(namespace, tick).by(by);
    for (i, (at, values)) in steps.into_iter().enumerate() {
        builder = if i == 0 {
            builder.when(at)
        } else {
            builder.then(at)
        };
        for (key, text) in values {
            builder = builder.set_text(key, text);
        }
    }
    builder
}

/// The fleet report a typical process sends with its fetch (a body of
/// about 270 bytes, kept for 30 s), as the benchmarks that price
/// reporting send it.
pub fn sample_record() -> lockstep::store::driver::Record {
    let body = serde_json::json!({
        "id": "0123456789abcdef", "host": "web-17.example.internal", "pid": 48213,
        "program": "checkout-service", "version": "0.1.0", "started": 1_767_225_600_000_i64,
        "tick_ms": 10_000, "fetches": 8_640, "failed_fetches": 3, "late_flips": 0,
        "rejected": 0, "refused": [], "clock_offset_ms": -0.42, "store_lost": false
    });
    lockstep::store::driver::Record::new("0123456789abcdef".to_owned(), body.to_string(), 30_000)
}
