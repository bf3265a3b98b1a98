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

/// Sends `pipe`, whose calls are `count` (the calls of `scripts` among
/// them); when the server does not know a script yet (`NOSCRIPT`), loads
/// `scripts` and sends it again: once per server, the next calls find
/// them.
pub(super) async fn pipelined(
    connection: &mut impl ConnectionLike,
    pipe: &redis::Pipeline,
    count: usize,
    scripts: &[&Lua],
) -> RedisResult<Vec<Value>> {
    let replies = connection.req_packed_commands(pipe, 0, count).await?;
    let unknown = |reply: &Value| matches!(reply, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript));
    if !replies.iter().any(unknown) {
        return Ok(replies);
    }
    for script in scripts {
        script.load().exec_async(&mut *connection).await?;
    }
    connection.req_packed_commands(pipe, 0, count).await
}

/// Every script of the store.
pub(super) struct Scripts {
    pub(super) fetch: Lua,
    pub(super) fetch_reporting: Lua,
    /// The record of a process, in a script of its own: of a fetch a
    /// replica served, kept on the primary, or sent before the read-only
    /// fetch for a user that may write only the fleet's keys. `report.lua`
    /// after what `fetch.lua` would leave it; `KEYS`: the fleet's two keys
    /// alone (a script's keys need write access); `ARGV[10]`: the revision
    /// served, or empty for the one the registry's meta hash, named by
    /// `ARGV[11]`, holds now (read, not named as a key).
    pub(super) record: Lua,
    pub(super) reports: Lua,
    pub(super) publish: Lua,
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
                    "local fleet_key, expiry_key = KEYS[2], KEYS[3]\n",
                    include_str!("lua/report.lua")
                ),
                false,
            ),
            record: Lua::new(
                concat!(
                    "#!lua flags=allow-oom\n",
                    "local t = redis.call('TIME')\n",
                    "local fleet_key, expiry_key = KEYS[1], KEYS[2]\n",
                    "local revision = tonumber(ARGV[10])\n",
                    "  or tonumber(redis.call('HGET', ARGV[11], 'revision') or '0')\n",
                    "local out = {0, 0, 0, 0, 0, 0, false}\n",
                    include_str!("lua/report.lua")
                ),
                false,
            ),
            reports: Lua::new(
                concat!("#!lua flags=no-writes\n", include_str!("lua/reports.lua")),
                true,
            ),
            publish: Lua::new(concat!("#!lua\n", include_str!("lua/publish.lua")), false),
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
