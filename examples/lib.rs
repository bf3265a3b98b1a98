//! Runnable examples of lockstep, each a file beside this one:
//!
//! - `quick_start.rs`: declare a registry, start it, read it, write to it
//!   (`cargo run -p lockstep-examples --example quick_start`);
//! - `dark_launch.rs`: a ramp 0 → 10 → 25 → 50 → 100 % watched by four
//!   worker processes sharing one SQLite file
//!   (`cargo run -p lockstep-examples --features sqlite --example dark_launch`).
//!
//! This library is empty: a package needs one target besides its examples.
