//! SQLite: the embedded default for a single machine. Its store is the
//! plain one ([`Sql`]); this module says how to open the file and what its
//! dialect is.
//!
//! WAL lets readers proceed while one connection writes; `synchronous =
//! FULL` makes every acknowledged claim durable, because a claim lost in a
//! power cut would let a single-use token be used again.

use std::{path::Path, str::FromStr, sync::LazyLock};

use sqlx::{
    Row, Sqlite,
    migrate::Migrator,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    types::Json,
};
use tracing::warn;

use super::{
    Dialect, Sql,
    statements::{Statements, Syntax},
};
use crate::config::DatabaseConfig;

impl Dialect for Sqlite {
    const SYNTAX: Syntax = Syntax {
        // Unix microseconds (millisecond resolution).
        now: "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
        ids: "SELECT value FROM json_each($1)",
        touched: "(SELECT i.value AS id, a.value AS at FROM json_each($1) i \
                  JOIN json_each($2) a ON a.key = i.key) AS t",
        least: "MIN",
        // One writer at a time needs no row locks.
        sweep_lock: "",
    };

    fn migrator() -> &'static Migrator {
        static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
        &MIGRATOR
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> =
            LazyLock::new(|| Statements::new(&Sqlite::SYNTAX));
        &STATEMENTS
    }

    /// JSON arrays, which `json_each` reads back.
    type Texts<'q> = Json<&'q [String]>;
    type Times<'q> = Json<&'q [i64]>;

    fn texts(items: &[String]) -> Json<&[String]> {
        Json(items)
    }

    fn times(items: &[i64]) -> Json<&[i64]> {
        Json(items)
    }

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn read_texts(row: &SqliteRow, column: &str) -> sqlx::Result<Vec<String>> {
        Ok(row.try_get::<Json<Vec<String>>, _>(column)?.0)
    }
}

/// SQLite's store: every call run plainly, one statement or one
/// transaction (see `store/plain.rs`).
pub type SqliteStore = Sql<Sqlite>;

impl Sql<Sqlite> {
    /// Opens (creating if missing) the database file named by the URL.
    pub fn connect_lazy(db: &DatabaseConfig) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&db.url)?;
        create_private(options.get_filename())?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(db.acquire_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(db.max_connections)
            .acquire_timeout(db.acquire_timeout)
            // A connection to a local file does not drop: no ping before use.
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        let health = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(db.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool, health })
    }
}

/// Creates the database file, if missing, readable and writable by this
/// user only (0600): it holds token hashes, audiences and sealed payloads.
/// SQLite gives its `-wal` and `-shm` files the database file's mode. An
/// existing file keeps its mode (the operator chose it), with a warning if
/// others may read it.
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "the database file is readable by other users; chmod 600 it"
                );
            }
            Ok(())
        }
        Err(err) => Err(anyhow::Error::new(err)
            .context(format!("creating the database file {}", path.display()))),
    }
}
