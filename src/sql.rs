//! SQL databases for the tests: a PostgreSQL schema of the test's own, a
//! MySQL or MariaDB database of its own, and a SQLite file in a temporary
//! directory of its own.
//!
//! PostgreSQL comes from `LOCKSTEP_TEST_POSTGRES` (a URL of a server where
//! the user may create schemas, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`), else from a throwaway cluster
//! this process starts with `initdb` and `postgres` (found on `PATH` or
//! under `/usr/lib/postgresql/*/bin`) in a temporary directory, on a free
//! port, stopped and removed when the process exits. With neither, the test
//! fails saying how to provide one: a SQL test never passes without its
//! database.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::wait::PATIENCE;

/// The environment variable naming the PostgreSQL server of the tests.
pub const POSTGRES_ENV: &str = "LOCKSTEP_TEST_POSTGRES";

/// A schema of the test's own on the test PostgreSQL server, dropped (with
/// everything in it) on drop.
pub struct PostgresSchema {
    server: String,
    name: String,
    url: String,
}

impl PostgresSchema {
    /// A new, empty schema. Panics, saying how to provide a server, when
    /// there is none.
    pub fn create() -> PostgresSchema {
        let server = server_url();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "lockstep_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(|| sweep(&server));
        run(
            &server,
            vec![
                format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
                format!("CREATE SCHEMA {name}"),
            ],
        );
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-c%20search_path%3D{name}");
        PostgresSchema { server, name, url }
    }

    /// The URL of the server, its `search_path` set to the schema: tables
    /// created through it go in the schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `statements` on the server, in the schema.
    pub fn execute(&self, statements: &[&str]) {
        run(
            &self.url,
            statements.iter().map(|s| (*s).to_owned()).collect(),
        );
    }
}

impl Drop for PostgresSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = self.server.clone();
        // Never panic in drop (a test may be failing already).
        let _ = std::thread::spawn(move || {
            run(
                &server,
                vec![format!("DROP SCHEMA IF EXISTS {name} CASCADE")],
            );
        })
        .join();
    }
}

/// A SQLite database file in a temporary directory of its own, removed on
/// drop.
pub struct SqliteFile {
    dir: PathBuf,
}

impl SqliteFile {
    /// A new directory; the file is created by its first user.
    pub fn create() -> SqliteFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockstep-sqlite-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        SqliteFile { dir }
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("lockstep.db")
    }

    /// `sqlite://<dir>/lockstep.db`.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The environment variable naming the MySQL or MariaDB server of the tests
/// (a URL without a database, of a user who may create databases).
pub const MYSQL_ENV: &str = "LOCKSTEP_TEST_MYSQL";

/// A database of the test's own on the test MySQL or MariaDB server
/// (`LOCKSTEP_TEST_MYSQL`, else `mysql://root@127.0.0.1:3306`), dropped on
/// drop.
pub struct MysqlDatabase {
    server: String,
    name: String,
}

impl MysqlDatabase {
    /// A new, empty database. Panics, saying how to provide a server, when
    /// there is none.
    pub fn create() -> MysqlDatabase {
        let server = match std::env::var(MYSQL_ENV) {
            Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
            _ => "mysql://root@127.0.0.1:3306".to_owned(),
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "lockstep_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let db = MysqlDatabase { server, name };
        db.on_server(vec![
            format!("DROP DATABASE IF EXISTS {}", db.name),
            format!("CREATE DATABASE {}", db.name),
        ]);
        db
    }

    /// The URL of the database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `statements` in the database.
    pub fn execute(&self, statements: &[&str]) {
        mysql_run(
            &self.url(),
            statements.iter().map(|s| (*s).to_owned()).collect(),
        );
    }

    /// The one integer `query` returns, in the database.
    pub fn scalar(&self, query: &str) -> i64 {
        let (url, query) = (self.url(), query.to_owned());
        on_thread(async move {
            let mut c = sqlx::MySqlConnection::connect(&url).await?;
            let n: i64 = sqlx::query_scalar(&query).fetch_one(&mut c).await?;
            c.close().await?;
            Ok(n)
        })
        .unwrap_or_else(|e| panic!("the test MySQL failed: {e}"))
    }

    /// Kills (`KILL CONNECTION`) every connection to the database but the
    /// one this call makes: lockstep's, as `information_schema.processlist`
    /// lists them. Returns their ids.
    pub fn kill_connections(&self) -> Vec<u64> {
        let url = self.url();
        let name = self.name.clone();
        on_thread(async move {
            let mut c = sqlx::MySqlConnection::connect(&url).await?;
            let ids: Vec<u64> = sqlx::query_scalar(
                "SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist \
                 WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind(name)
            .fetch_all(&mut c)
            .await?;
            for id in &ids {
                sqlx::Executor::execute(&mut c, format!("KILL CONNECTION {id}").as_str()).await?;
            }
            c.close().await?;
            Ok(ids)
        })
        .unwrap_or_else(|e| panic!("the test MySQL failed: {e}"))
    }

    fn on_server(&self, statements: Vec<String>) {
        mysql_run(&format!("{}/mysql", self.server), statements);
    }
}

impl Drop for MysqlDatabase {
    fn drop(&mut self) {
        let url = format!("{}/mysql", self.server);
        let drop = format!("DROP DATABASE IF EXISTS {}", self.name);
        // Never panic in drop (a test may be failing already).
        let _ = std::thread::spawn(move || mysql_run(&url, vec![drop])).join();
    }
}

fn mysql_run(url: &str, statements: Vec<String>) {
    mysql_execute(url, statements).unwrap_or_else(|e| {
        panic!(
            "the test MySQL failed: {e}. {MYSQL_ENV} must name a MySQL or MariaDB server \
             where the user may create databases (e.g. mysql://root@127.0.0.1:3306); unset, \
             the local server on 127.0.0.1:3306 is used as root (`bash .ci/run` installs \
             and starts MariaDB)"
        )
    })
}

/// Whether a connection of kind `C` to `url` can be opened now: how a test
/// server that was just launched is waited for. On a thread and runtime of
/// its own, like [`on_own_runtime`].
pub(crate) fn connects<C: Connection>(url: &str) -> bool {
    let url = url.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move { C::connect(&url).await.is_ok() })
    })
    .join()
    .unwrap_or(false)
}

/// Runs `statements` on a MySQL connection of their own to `url`, in turn.
pub(crate) fn mysql_execute(url: &str, statements: Vec<String>) -> Result<(), sqlx::Error> {
    let url = url.to_owned();
    on_thread(async move {
        let mut c = sqlx::MySqlConnection::connect(&url).await?;
        for statement in statements {
            sqlx::Executor::execute(&mut c, statement.as_str()).await?;
        }
        c.close().await
    })
}

/// Runs `fut` to completion on a runtime of its own, on a thread of its own
/// (the caller may be inside a runtime already), and returns what it did.
pub(crate) fn on_thread<T: Send + 'static>(
    fut: impl Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, sqlx::Error> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(fut)
    })
    .join()
    .expect("the SQL thread panicked")
}

/// [`on_thread`], for the test PostgreSQL.
fn on_own_runtime<T: Send + 'static>(
    fut: impl Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> T {
    on_thread(fut).unwrap_or_else(|e| {
        panic!(
            "the test PostgreSQL failed: {e}. {POSTGRES_ENV} must name a server where the user \
             may create schemas (e.g. postgres://postgres@127.0.0.1:5432/test); unset, the tests \
             start a throwaway cluster with initdb"
        )
    })
}

fn run(url: &str, statements: Vec<String>) {
    let url = url.to_owned();
    on_own_runtime(async move {
        let mut c = sqlx::PgConnection::connect(&url).await?;
        for statement in statements {
            sqlx::Executor::execute(&mut c, statement.as_str()).await?;
        }
        c.close().await
    })
}

/// Drops the schemas left by test processes that are gone (killed before
/// their drops ran), when the server is on this machine.
fn sweep(server: &str) {
    let url = server.to_owned();
    let names: Vec<String> = on_own_runtime(async move {
        let mut c = sqlx::PgConnection::connect(&url).await?;
        sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'lockstep_t\\_%'",
        )
        .fetch_all(&mut c)
        .await
    });
    let gone: Vec<String> = names
        .into_iter()
        .filter(|n| {
            n.split('_')
                .nth(2)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                })
        })
        .map(|n| format!("DROP SCHEMA IF EXISTS {n} CASCADE"))
        .collect();
    if !gone.is_empty()
        && (server.contains("127.0.0.1")
            || server.contains("localhost")
            || server.contains("host=/"))
    {
        run(server, gone);
    }
}

/// The URL of the test server: `LOCKSTEP_TEST_POSTGRES`, else a throwaway
/// cluster of this process's own.
pub fn server_url() -> String {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => THROWAWAY.get_or_init(Throwaway::start).url.clone(),
    }
}

static THROWAWAY: OnceLock<Throwaway> = OnceLock::new();

/// A cluster of this test process's own. It lives until the process exits:
/// a shell started with it waits for its standard input to close (which
/// the process's exit does, however it ends), then stops the server and
/// removes its directory.
struct Throwaway {
    url: String,
    _shell: Child,
    _stdin: ChildStdin,
}

fn no_postgres(why: &str) -> ! {
    panic!(
        "no PostgreSQL for the tests ({why}). Provide one: set {POSTGRES_ENV} to the URL of a \
         server where the user may create schemas (e.g. \
         {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test), or install PostgreSQL \
         (apt-get install postgresql) so that the tests start a throwaway cluster with initdb \
         in a temporary directory. `bash .ci/run` does the first."
    )
}

/// The directory of `initdb` and `postgres`: `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .collect();
        versions.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        versions.pop()
    })
}

impl Throwaway {
    fn start() -> Throwaway {
        let Some(bin) = postgres_bin() else {
            no_postgres(&format!(
                "{POSTGRES_ENV} is not set and no initdb was found"
            ));
        };
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("lockstep-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        // initdb refuses to run as root: run the cluster as `postgres`.
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let command = |program: &str| {
            let mut c = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c
        };
        if as_root {
            let chowned = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !chowned {
                no_postgres("running as root, and there is no `postgres` user to run a cluster as");
            }
        }
        let data = dir.join("data");
        let initdb = command(&bin.join("initdb").display().to_string())
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| no_postgres(&format!("cannot run initdb: {e}")));
        if !initdb.status.success() {
            no_postgres(&format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&initdb.stderr).trim()
            ));
        }
        let script = format!(
            "'{}' -D '{}' -p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off >'{}/log' 2>&1 & pid=$!; \
             read _; kill -INT $pid; wait $pid; rm -rf '{}'",
            bin.join("postgres").display(),
            data.display(),
            dir.display(),
            dir.display(),
            dir.display(),
        );
        let mut shell = command("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| no_postgres(&format!("cannot start postgres: {e}")));
        let stdin = shell.stdin.take().expect("the shell's stdin");
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if connects::<sqlx::PgConnection>(&url) {
                break;
            }
            let exited = shell.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                no_postgres(&format!(
                    "the throwaway cluster's shell exited ({exited:?}) or the cluster did not \
                     accept a connection within {} s; its log: {log}",
                    PATIENCE.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Throwaway {
            url,
            _shell: shell,
            _stdin: stdin,
        }
    }
}
