//! What a fetch costs on each SQL store when a registry is wider than one
//! fetch's budget (`lockstep::store::driver::FETCH_BUDGET_BYTES`): 300 fields of 10
//! pending values of 60 000 bytes each (180 MB, put there by SQL, as the
//! bound on pending entries now keeps a commit from doing), beside a
//! registry within the budget (300 fields of 10 values of 2 700 bytes,
//! 8.1 MB, all shipped) and an everyday one (10 fields of 2 small values).
//!
//! ```text
//! cargo run --release -p lockstep-bench --example wide_fetch_cost [-- N]     # N = 20 by default
//! ```
//!
//! PostgreSQL (`LOCKSTEP_TEST_POSTGRES`, else a throwaway cluster),
//! MySQL/MariaDB (`LOCKSTEP_TEST_MYSQL`, else the local server on
//! 127.0.0.1:3306) and a SQLite file in a temporary directory, all on this
//! machine. The values are random letters and digits, so that PostgreSQL
//! cannot compress them. For each registry: the median and the slowest of
//! `N` fetches through `lockstep::store`, one after another after two to
//! warm up, as the caller waits for them (the database's work, the transfer
//! and the decoding of what is shipped), with the bytes of values shipped
//! and the entries not fetched, as planted and after one small commit to
//! the registry (which, on MySQL, stores the length of each value planted
//! without it); then the median of `N` commits of one
//! value: a small one to the everyday registry (accepted; it sums its
//! pending entries first), a small one to the wide registry (accepted: a
//! registry already beyond the pending bound still takes writes within
//! `lockstep::store::driver::SMALL_WRITE_BYTES`, its kill switch) and one of 8 000
//! bytes to it (refused: beyond the bound).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockstep::store::{MysqlStore, PostgresStore, SqliteStore, StepAt, Store};
use lockstep_suite::sql::{MysqlDatabase, PostgresSchema, SqliteFile};
use sqlx::Connection;

/// A registry the example plants: its name, fields, entries per field and
/// bytes per value.
struct Shape {
    namespace: &'static str,
    fields: usize,
    entries: usize,
    value_bytes: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        namespace: "wide",
        fields: 300,
        entries: 10,
        value_bytes: 60_000,
    },
    Shape {
        namespace: "within",
        fields: 300,
        entries: 10,
        value_bytes: 2_700,
    },
    Shape {
        namespace: "everyday",
        fields: 10,
        entries: 2,
        value_bytes: 4,
    },
];

/// How rows are put in a database: one statement of many rows at a time.
type Execute = Box<dyn Fn(String) -> lockstep::store::driver::BoxFuture<'static, ()>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _context = runtime.enter();
    let schema = PostgresSchema::create();
    let file = SqliteFile::create();
    let mysql = MysqlDatabase::create();
    let (pg_url, lite_url, my_url) = (schema.url().to_owned(), file.url(), mysql.url());
    let subjects: Vec<(&str, Arc<dyn Store>, Execute)> = vec![
        (
            "PostgreSQL",
            Arc::new(PostgresStore::open(&pg_url)?),
            Box::new(move |sql| {
                let url = pg_url.clone();
                Box::pin(async move {
                    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::Executor::execute(&mut c, sql.as_str()).await.unwrap();
                })
            }),
        ),
        (
            "SQLite",
            Arc::new(SqliteStore::open(&lite_url)?),
            Box::new(move |sql| {
                let url = lite_url.clone();
                Box::pin(async move {
                    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    sqlx::Executor::execute(&mut c, sql.as_str()).await.unwrap();
                })
            }),
        ),
        (
            "MariaDB",
            Arc::new(MysqlStore::open(&my_url)?),
            Box::new(move |sql| {
                let url = my_url.clone();
                Box::pin(async move {
                    let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
                    sqlx::Executor::execute(&mut c, sql.as_str()).await.unwrap();
                })
            }),
        ),
    ];
    println!(
        "{n} fetches of each registry, one after another, on this machine ({} cores); ms\n",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "| store | registry | values held | fetch, median | fetch, slowest | values shipped | \
         entries not fetched | when |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut commits = Vec::new();
    for (name, store, execute) in &subjects {
        runtime.block_on(async {
            // The first call creates the tables.
            store.fetch("clock", &[]).await?;
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
            for shape in &SHAPES {
                plant(execute, shape, &mut seed).await;
                let row = measure(&**store, shape, n).await?;
                println!("| {name} | {} | as planted |", row.join(" | "));
                // A commit measures the rows written without lockstep
                // (MySQL keeps each value's length apart).
                commit_ms(&**store, shape.namespace, 1, 4, true).await?;
                let row = measure(&**store, shape, n).await?;
                println!("| {name} | {} | after a commit |", row.join(" | "));
            }
            let everyday = commit_ms(&**store, "everyday", n, 4, true).await?;
            let small = commit_ms(&**store, "wide", n, 4, true).await?;
            let large = commit_ms(&**store, "wide", n, 8_000, false).await?;
            commits.push((*name, everyday, small, large));
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
    }
    println!("\nmedian of {n} commits of one value, ms\n");
    println!(
        "| store | 4 B to the everyday registry (accepted) | 4 B to the wide one (accepted) | \
         8 000 B to the wide one (refused) |"
    );
    println!("|---|---|---|---|");
    for (name, everyday, small, large) in commits {
        println!("| {name} | {everyday:.2} | {small:.2} | {large:.2} |");
    }
    Ok(())
}

/// Puts `shape`'s entries in the database, a day after now, by `INSERT`s
/// of at most 6 MB each (MySQL takes up to 16 MB a statement by default).
async fn plant(execute: &Execute, shape: &Shape, seed: &mut u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let first = (now.as_millis() as i64 / 1000 + 86_400) * 1000;
    let per_statement = (6_000_000 / shape.value_bytes).max(1);
    let mut rows = Vec::new();
    for f in 0..shape.fields {
        for e in 0..shape.entries {
            let value = random_text(shape.value_bytes, seed);
            let at = first + e as i64 * 1000;
            rows.push(format!(
                "('{}', 'f{f:03}', {at}, '{value}', 'planted', {at}, 'plant')",
                shape.namespace
            ));
            if rows.len() == per_statement {
                execute(insert(&rows)).await;
                rows.clear();
            }
        }
    }
    if !rows.is_empty() {
        execute(insert(&rows)).await;
    }
}

fn insert(rows: &[String]) -> String {
    format!(
        "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, written_at, \
         writer) VALUES {}",
        rows.join(", ")
    )
}

/// A JSON string of `bytes` bytes of random letters and digits.
fn random_text(bytes: usize, seed: &mut u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut text = String::with_capacity(bytes);
    text.push('"');
    for _ in 0..bytes - 2 {
        // xorshift64
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        text.push(ALPHABET[(*seed % ALPHABET.len() as u64) as usize] as char);
    }
    text.push('"');
    text
}

/// The row of `shape` in the table: what it holds, the median and slowest
/// fetch, what was shipped and how many entries were not.
async fn measure(
    store: &dyn Store,
    shape: &Shape,
    n: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let keys: Vec<String> = (0..shape.fields).map(|f| format!("f{f:03}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    for _ in 0..2 {
        store.fetch(shape.namespace, &keys).await?;
    }
    let mut took = Vec::with_capacity(n);
    let (mut shipped, mut not_fetched) = (0, 0);
    for _ in 0..n {
        let start = Instant::now();
        let fetched = store.fetch(shape.namespace, &keys).await?;
        took.push(start.elapsed().as_secs_f64() * 1e3);
        let entries = fetched.fields.values().flatten();
        shipped = entries
            .clone()
            .filter_map(|e| e.value.as_ref().ok())
            .map(String::len)
            .sum::<usize>();
        not_fetched = entries
            .filter(|e| {
                e.value
                    .as_ref()
                    .is_err_and(|e| e.starts_with("not fetched"))
            })
            .count();
    }
    took.sort_by(f64::total_cmp);
    let held = shape.fields * shape.entries * shape.value_bytes;
    Ok(vec![
        format!(
            "{} fields × {} × {} B",
            shape.fields, shape.entries, shape.value_bytes
        ),
        format!("{:.1} MB", held as f64 / 1e6),
        format!("{:.2}", took[n / 2]),
        format!("{:.2}", took[n - 1]),
        format!("{:.2} MB", shipped as f64 / 1e6),
        not_fetched.to_string(),
    ])
}

/// The median time of `n` commits of one small value to `namespace`, ms;
/// each is accepted, or refused for the pending bound, as `accepted` says.
async fn commit_ms(
    store: &dyn Store,
    namespace: &str,
    n: usize,
    bytes: usize,
    accepted: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let tick = lockstep::Tick::new(Duration::from_secs(1))?;
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let write = lockstep::store::Write::builder(namespace, tick)
            .by("wide_fetch_cost example")
            .when(StepAt::Horizon {
                after: 60_000 + i as i64 * 1000,
            })
            .set("switch", serde_json::json!("x".repeat(bytes - 2)))
            .build()?;
        let start = Instant::now();
        let result = store.commit(&write).await;
        took.push(start.elapsed().as_secs_f64() * 1e3);
        match result {
            Ok(_) if accepted => {}
            Err(lockstep::Error::TooMuchPending { .. }) if !accepted => {}
            other => return Err(format!("{namespace}: {other:?}").into()),
        }
    }
    took.sort_by(f64::total_cmp);
    Ok(took[n / 2])
}
