//! Lockstep's benchmarks that start servers and processes of their own:
//! see `benches/`. The package has no library code; cargo needs a target
//! besides the benchmarks to call it a package.
