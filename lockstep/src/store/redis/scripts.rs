//! The Lua scripts (in `lua/`), and how they are run: by their SHA1, loaded
//! once per server when it does not know them. The fetch is flagged
//! `no-writes` and run with `EVALSHA_RO`, so a user that may only read
//! lockstep's keys can fetch, as is the read of the fleet's records; the
//! fetch with a report is the same `fetch.lua` followed by `report.lua`;
//! the scripts that write entries share `horizon.lua`.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};

/// A script and its SHA1.
pub(super) struct Lua {
    code: &'static str,
    hash: String,
    read_only: bool,
}

impl Lua {
    fn new(code: &'static str, read_only: bool) -> Lua {
        let hash = redis::Script::new(code).get_hash().to_owned();
        Lua {
            code,
            hash,
            read_only,
        }
    }

    /// The call of the script with `keys` and `args`, by its SHA1, for a
    /// pipeline.
    pub(super) fn call(&self, keys: &[String], args: &[String]) -> redis::Cmd {
        let mut call = redis::cmd(if self.read_only {
            "EVALSHA_RO"
        } else {
            "EVALSHA"
        });
        call.arg(&self.hash).arg(keys.len()).arg(keys).arg(args);
        call
    }

    /// `SCRIPT LOAD` of the script.
    pub(super) fn load(&self) -> redis::Cmd {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(self.code);
        load
    }

    /// Runs the script with `keys` and `args`, loading it first if the
    /// server does not know it.
    pub(super) async fn run(
        &self,
        connection: &mut impl ConnectionLike,
        keys: &[String],
        args: &[String],
    ) -> RedisResult<Value> {
        let call = self.call(keys, args);
        match call.query_async(connection).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load().exec_async(connection).await?;
                call.query_async(connection).await
            }
            reply => reply,
        }
    }
}

/// Every script of the store.
pub(super) struct Scripts {
    pub(super) fetch: Lua,
    pub(super) fetch_reporting: Lua,
    /// The record of a process whose fetch a replica served, kept on the
    /// primary: `report.lua` after what `fetch.lua` would leave it
    /// (`ARGV[10]`: the revision served).
    pub(super) record: Lua,
    pub(super) reports: Lua,
    pub(super) commit: Lua,
    pub(super) cancel: Lua,
    pub(super) purge: Lua,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        // `#!lua`: a script that may write is refused whole on a server out
        // of memory or a read-only replica, rather than failing at its first
        // write.
        Scripts {
            fetch: Lua::new(
                concat!(
                    "#!lua flags=no-writes\n",
                    include_str!("lua/fetch.lua"),
                    "return out\n"
                ),
                true,
            ),
            // Its only writes are the fleet's record, a few hundred bytes
            // that replace the process's previous one: allowed when the
            // server is out of memory, so that a fetch is served then too.
            fetch_reporting: Lua::new(
                concat!(
                    "#!lua flags=allow-oom\n",
                    include_str!("lua/fetch.lua"),
                    include_str!("lua/report.lua")
                ),
                false,
            ),
            record: Lua::new(
                concat!(
                    "#!lua flags=allow-oom\n",
                    "local t = redis.call('TIME')\n",
                    "local revision = tonumber(ARGV[10])\n",
                    "local out = {0, 0, 0, 0, 0, 0, false}\n",
                    include_str!("lua/report.lua")
                ),
                false,
            ),
            reports: Lua::new(
                concat!("#!lua flags=no-writes\n", include_str!("lua/reports.lua")),
                true,
            ),
            commit: Lua::new(
                concat!(
                    "#!lua\n",
                    include_str!("lua/horizon.lua"),
                    include_str!("lua/commit.lua")
                ),
                false,
            ),
            cancel: Lua::new(
                concat!(
                    "#!lua\n",
                    include_str!("lua/horizon.lua"),
                    include_str!("lua/cancel.lua")
                ),
                false,
            ),
            purge: Lua::new(
                concat!(
                    "#!lua\n",
                    include_str!("lua/horizon.lua"),
                    include_str!("lua/purge.lua")
                ),
                false,
            ),
        }
    }
}
