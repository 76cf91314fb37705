//! SQLite: the embedded default for a single machine.
//!
//! WAL lets readers proceed while one connection writes; `synchronous =
//! FULL` makes every acknowledged claim durable, because a claim lost in a
//! power cut would let a single-use token be used again.

use std::{path::Path, str::FromStr, sync::LazyLock, time::Duration};

use sqlx::{
    Row, Sqlite, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    types::Json,
};
use tracing::warn;

use super::{
    Delegation, Dialect, Invalidation, Keyed, ListPage, ListQuery, Lookup, NewGrant, Prior, Result,
    RevokeTarget, Revoked, Rotated, Rotation, Sql, SqlStore, Store, StoreError,
    statements::{Statements, Syntax},
};
use crate::{
    config::DatabaseConfig,
    grant::{Grant, Micros, RevokeReason},
    token::TokenHash,
};

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

/// Reserves a key for a keyed claim: `$1` grant, `$2` client, `$3` key
/// hash. Inserts nothing if the key is already recorded; waits for a
/// racing insert of the same key to commit or roll back first.
const RESERVE_KEY: &str = "INSERT INTO claim_keys (grant_id, client_id, key_hash, use_number, \
     claimed_at) VALUES ($1, $2, $3, 0, 0) ON CONFLICT DO NOTHING";

/// Records the use a reserved key took: `$4` use number, `$5` time.
const RECORD_KEY: &str = "UPDATE claim_keys SET use_number = $4, claimed_at = $5 \
     WHERE grant_id = $1 AND client_id = $2 AND key_hash = $3";

#[derive(Clone)]
pub struct SqliteStore {
    /// Its pool, and one connection of its own for readiness checks.
    sql: Sql<Sqlite>,
}

impl SqliteStore {
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
        Ok(Self {
            sql: Sql { pool, health },
        })
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

impl SqliteStore {
    /// The migrations this binary carries that the database has not applied.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        let migrator = sqlx::migrate!("migrations/sqlite");
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.sql.pool)
                .await
                .unwrap_or_default();
        Ok(super::unapplied(&migrator, &applied))
    }
}

impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn sql(&self) -> &Sql<Sqlite> {
        &self.sql
    }
}

impl Store for SqliteStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.sql.pool)
            .await?;
        Ok(())
    }

    async fn insert(&self, grant: &NewGrant) -> Result<Grant> {
        Ok(self.sql.insert(grant).await?)
    }

    async fn find(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        Ok(self.sql.find(hash).await?)
    }

    async fn find_keyed(
        &self,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Option<(Lookup, Option<Prior>)>> {
        Ok(self.sql.find_keyed(hash, client_id, key_hash).await?)
    }

    async fn touch(&self, touches: &[(String, Micros)]) -> Result<()> {
        Ok(self.sql.touch(touches).await?)
    }

    async fn consume(&self, grant_id: &str) -> Result<Option<(Grant, Vec<u8>)>> {
        Ok(self.sql.consume(grant_id).await?)
    }

    async fn consume_keyed(
        &self,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Keyed> {
        // On a task of its own: a caller that goes away mid-transaction must
        // not leave it open (or half done) on a pooled connection. The claim
        // completes, and a retry with the key finds it.
        let (pool, grant_id, client_id, key_hash) = (
            self.sql.pool.clone(),
            grant_id.to_owned(),
            client_id.to_owned(),
            *key_hash,
        );
        tokio::spawn(async move { keyed_claim(&pool, &grant_id, &client_id, &key_hash).await })
            .await
            .map_err(|_| StoreError::Internal(sqlx::Error::WorkerCrashed))?
    }

    async fn revoke(
        &self,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: RevokeReason,
    ) -> Result<Revoked> {
        Ok(self.sql.revoke(target, issued_by, reason).await?)
    }

    async fn payload(&self, grant_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.sql.payload(grant_id).await?)
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Option<Rotated>> {
        Ok(self.sql.rotate(rotation).await?)
    }

    async fn delegate(&self, child: &Delegation) -> Result<Option<Grant>> {
        Ok(self.sql.delegate(child).await?)
    }

    async fn count_replay(&self, grant_id: &str) -> Result<Option<u64>> {
        Ok(self.sql.count_replay(grant_id).await?)
    }

    async fn get(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        Ok(self.sql.get(grant_id, issued_by).await?)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        Ok(self.sql.list(query).await?)
    }

    async fn sweep(&self, retention: Duration, batch: u32) -> Result<u64> {
        Ok(self.sql.sweep(retention, batch).await?)
    }

    async fn ping(&self) -> Result<()> {
        Ok(self.sql.ping().await?)
    }

    async fn count_live(&self) -> Result<u64> {
        Ok(self.sql.count_live().await?)
    }

    fn pool_probe(&self) -> crate::metrics::PoolProbe {
        self.sql.pool_probe()
    }

    /// One process owns the file in practice: its own changes invalidate
    /// its cache directly, and nothing else announces changes. Other
    /// processes sharing the file see them within `--cache-max-age`.
    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        on(Invalidation::Resumed);
        std::future::pending::<()>().await;
    }

    async fn close(&self) {
        self.sql.close().await;
    }
}

/// The transaction behind a keyed claim (SQLite has no writes inside
/// `WITH`, so PostgreSQL's one statement is three here): reserve the key,
/// take the use, record it. A key already recorded returns its claim; a
/// racing insert of the same key waits for the writer lock first.
async fn keyed_claim(
    pool: &SqlitePool,
    grant_id: &str,
    client_id: &str,
    key_hash: &[u8; 32],
) -> Result<Keyed> {
    let mut tx = pool.begin().await?;
    let reserved = sqlx::query(RESERVE_KEY)
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if reserved == 0 {
        let prior = Sql::prior_claim(&mut *tx, grant_id, client_id, key_hash).await?;
        tx.commit().await?;
        // Reserved before, so recorded: its claim is there.
        return prior.ok_or(StoreError::Internal(sqlx::Error::RowNotFound));
    }
    let Some(row) = sqlx::query(Sqlite::statements().consume)
        .bind(grant_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        tx.rollback().await?;
        return Ok(Keyed::Refused);
    };
    let (grant, sealed) = Sql::<Sqlite>::taken_from_row(&row)?;
    sqlx::query(RECORD_KEY)
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .bind(i64::from(grant.use_count))
        .bind(grant.last_used_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Keyed::Consumed(grant, sealed))
}
