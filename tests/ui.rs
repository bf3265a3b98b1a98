//! Compile-fail cases of `#[lockstep]`: one file a mistake, grouped by kind
//! under `tests/ui/<kind>/`. Each `.stderr` is what rustc prints; regenerate
//! them with `TRYBUILD=overwrite cargo test --test ui` and read the diff.
//!
//! Not here: a `backend = "redis"` registry in a crate that depends on
//! lockstep without its `redis` feature. This package builds lockstep with
//! its default features, so the case cannot compile-fail here, and a separate
//! crate built with `default-features = false` would rebuild lockstep and its
//! dependencies once more for one message. The macro expands the backend to
//! `::lockstep::__backend_redis!{}`, spanned at the backend literal, and
//! `lockstep/src/private.rs` defines that macro as a `compile_error!` naming
//! the feature under `#[cfg(not(feature = "redis"))]`; `backend_redis_is_
//! available_with_default_features` below checks the other half.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
