//! Support for lockstep's own integration tests and examples: not part of
//! lockstep's API. One module per tool, each re-exported at the root:
//!
//! - [`server`]: [`RedisServer`], a private `redis-server` (from
//!   `REDIS_SERVER`, or `PATH`) on a free loopback port in a temporary
//!   directory, killed on drop, that can be hurt the ways the fault tests
//!   need;
//! - [`cluster`]: [`RedisCluster`], three of them joined into a cluster;
//! - [`replicas`]: [`RedisReplicas`], a primary and its replicas, each
//!   replica's link to it through a [`Proxy`] that can be cut;
//! - [`proxy`]: [`Proxy`], a TCP proxy that breaks, cuts or slows the link;
//! - [`hammer`]: [`Hammer`], a reader hammering the accessors, and
//!   [`check`] of what it saw;
//! - [`probe`]: [`Probe`], a fleet member (`src/bin/probe.rs`) or another
//!   helper binary in a process of its own, that lives until its test ends
//!   it or ends;
//! - [`writes`]: [`entries_write`], [`raw_write`] and [`raw_builder`], the writes tests plant;
//!   [`sample_record`], a typical process's fleet record;
//! - [`clock`]: [`manual_clock`], the manual clock tests start from;
//! - [`browser`]: [`Console`], `lockstep console` in a process of its
//!   own, [`Chromedriver`], a headless chromium to drive, and [`http`], one
//!   plain HTTP request;
//! - [`cli`]: [`cli_binary`], the workspace's `lockstep` binary, and
//!   [`run_cli`], one run of it;
//! - [`sql`]: a PostgreSQL schema, a MySQL/MariaDB database or a SQLite
//!   file of a test's own;
//! - [`mariadb`]: [`MariadbServer`], a private `mariadbd` that can be
//!   killed and restarted;
//! - [`wait`]: [`wait_for`] an event, polling, for up to [`PATIENCE`],
//!   and [`wait_for_switch`] of a value at its instant.

pub mod browser;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod forwarding;
pub mod hammer;
pub mod mariadb;
pub mod probe;
pub mod proxy;
pub mod replicas;
pub mod server;
pub mod sql;
pub mod wait;
pub mod writes;

pub use browser::{Chromedriver, Console, http};
pub use cli::{CliRun, cli_binary, fleet_view, run_cli};
pub use clock::manual_clock;
pub use cluster::RedisCluster;
pub use forwarding::Forwarding;
pub use hammer::{Hammer, Seen, Switched, assert_all_switched_within_5_ms, check, ms_after};
pub use mariadb::MariadbServer;
pub use probe::{Probe, in_a_session_of_its_own};
pub use proxy::Proxy;
pub use replicas::RedisReplicas;
pub use server::{RedisServer, documented_reader};
pub use wait::{PATIENCE, wait_for, wait_for_async, wait_for_switch};
pub use writes::{entries_write, raw_builder, raw_write, sample_record};

/// A free loopback port (the SQL helpers' servers use it too).
pub(crate) use server::free_port;
