//! Compile-fail cases of `#[lockstep]`: one file a mistake, grouped by kind
//! under `tests/ui/<kind>/`. Each `.stderr` is what rustc prints; regenerate
//! them with `TRYBUILD=overwrite cargo test --test ui` and read the diff.
//!
//! One kind of case cannot be a file here: a `store = "redis"` (or
//! `"postgres"`, `"sqlite"`) registry in a crate that turns the store's
//! feature off, since this package builds lockstep with them on.
//! `a_store_needs_its_feature` checks it with a tiny crate of its own
//! (`cargo check`, a few seconds the first time); `tests/hygiene.rs` checks
//! that the same registry compiles with the feature on.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}

/// A `store = "redis"`, `"postgres"` or `"sqlite"` registry in a crate
/// that turns lockstep's default features off fails to compile, with the
/// message naming the feature, at the store's literal. A tiny crate,
/// checked (not built) in trybuild's target directory, so only lockstep
/// itself is checked anew.
#[test]
fn a_store_needs_its_feature() {
    use std::path::Path;
    use std::process::Command;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/tests/trybuild");
    let dir = target.join("no-redis-feature");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let lockstep = root.join("lockstep");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"no-redis-feature\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[workspace]\n\n[dependencies]\n\
             lockstep = {{ path = {lockstep:?}, default-features = false }}\n"
        ),
    )
    .unwrap();
    let source: String = ["redis", "postgres", "sqlite"]
        .iter()
        .enumerate()
        .map(|(i, store)| {
            format!(
                "#[lockstep::lockstep(tick = \"10m\", store = \"{store}\")]\n\
                 pub struct Flags{i} {{\n    pub enabled: bool,\n}}\n"
            )
        })
        .collect();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    // The workspace's versions, so nothing is resolved (or fetched) anew.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    let output = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["check", "--quiet", "--offline", "--color=never"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "compiled without the feature");
    for (store, line) in [("redis", 1), ("postgres", 5), ("sqlite", 9)] {
        assert!(
            stderr.contains(&format!(
                "store \"{store}\" needs the cargo feature `{store}` of lockstep"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("src/lib.rs:{line}:44")),
            "{store} not at the literal: {stderr}"
        );
    }
}
