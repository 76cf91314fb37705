//! SQLite: the embedded default for a single machine.
//!
//! WAL lets readers proceed while one connection writes; `synchronous =
//! FULL` makes every acknowledged claim durable, because a claim lost in a
//! power cut would let a single-use token be used again.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Row, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    types::Json,
};

use super::{
    Delegation, Grant, Invalidation, Keyed, ListPage, ListQuery, Lookup, Micros, NewGrant, Prior,
    Result, RevokeReason, RevokeTarget, Revoked, Rotated, Rotation, Store, StoreError, sql, to_u32,
};

use tracing::warn;

use crate::{config::DatabaseConfig, token::TokenHash};

mod credentials;
mod dialect;

/// SQLite's clock, in unix microseconds (millisecond resolution).
macro_rules! lite {
    ($statement:ident $(, $arg:literal)*) => {
        sql::$statement!("CAST(unixepoch('subsec') * 1000000 AS INTEGER)" $(, $arg)*)
    };
}

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection of its own for readiness checks (see `PgStore`).
    health: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by the URL.
    /// The pool, for the sign-in rows kept beside the grants
    /// ([`crate::signin::store`]).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

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

fn grant_from_row(row: &SqliteRow) -> std::result::Result<Grant, sqlx::Error> {
    Ok(Grant {
        grant_id: row.try_get("grant_id")?,
        token_hint: row.try_get("token_hint")?,
        subject: row.try_get("subject")?,
        audience: row.try_get::<Json<_>, _>("audience")?.0,
        run_id: row.try_get("run_id")?,
        scopes: row.try_get::<Json<_>, _>("scopes")?.0,
        labels: row.try_get::<Json<_>, _>("labels")?.0,
        max_uses: to_u32(row.try_get("max_uses")?),
        use_count: to_u32(row.try_get("use_count")?),
        issued_by: row.try_get("issued_by")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoke_reason: RevokeReason::from_code(row.try_get("revoke_reason")?),
        last_used_at: row.try_get("last_used_at")?,
        revoke_run_on_replay: row.try_get("revoke_run_on_replay")?,
        parent_grant_id: row.try_get("parent_grant_id")?,
        depth: to_u32(row.try_get("depth")?),
        rotated_from: row.try_get("rotated_from")?,
        rotated_to: row.try_get("rotated_to")?,
        payload_credential: super::CredentialRef::from_columns(
            row.try_get("credential_bearer_id")?,
            row.try_get("credential_name")?,
        ),
    })
}

impl SqliteStore {
    /// The migrations this binary carries that the database has not applied.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        let migrator = sqlx::migrate!("migrations/sqlite");
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(super::unapplied(&migrator, &applied))
    }
}

impl Store for SqliteStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    async fn insert(&self, grant: &NewGrant) -> Result<Grant> {
        Ok(dialect::insert(&self.pool, grant).await?)
    }

    async fn find(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        dialect::find(&self.pool, hash).await
    }

    async fn find_keyed(
        &self,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Option<(Lookup, Option<Prior>)>> {
        dialect::find_keyed(&self.pool, hash, client_id, key_hash).await
    }

    async fn touch(&self, touches: &[(String, Micros)]) -> Result<()> {
        dialect::touch(&self.pool, touches).await
    }

    async fn consume(&self, grant_id: &str) -> Result<Option<(Grant, Vec<u8>)>> {
        dialect::consume(&self.pool, grant_id).await
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
            self.pool.clone(),
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
        dialect::revoke(&self.pool, target, issued_by, reason).await
    }

    async fn payload(&self, grant_id: &str) -> Result<Option<Vec<u8>>> {
        dialect::payload(&self.pool, grant_id).await
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Option<Rotated>> {
        dialect::rotate(&self.pool, rotation).await
    }

    async fn delegate(&self, child: &Delegation) -> Result<Option<Grant>> {
        dialect::delegate(&self.pool, child).await
    }

    async fn count_replay(&self, grant_id: &str) -> Result<Option<u64>> {
        dialect::count_replay(&self.pool, grant_id).await
    }

    async fn get(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        dialect::get(&self.pool, grant_id, issued_by).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        dialect::list(&self.pool, query).await
    }

    async fn sweep(&self, retention: Duration, batch: u32) -> Result<u64> {
        dialect::sweep(&self.pool, retention, batch).await
    }

    async fn ping(&self) -> Result<()> {
        dialect::ping(&self.health).await
    }

    async fn count_live(&self) -> Result<u64> {
        dialect::count_live(&self.pool).await
    }

    fn pool_probe(&self) -> crate::metrics::PoolProbe {
        dialect::pool_probe(&self.pool)
    }

    /// One process owns the file in practice: its own changes invalidate
    /// its cache directly, and nothing else announces changes. Other
    /// processes sharing the file see them within `--cache-max-age`.
    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        on(Invalidation::Resumed);
        std::future::pending::<()>().await;
    }

    async fn close(&self) {
        dialect::close(&self.pool, &self.health).await;
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
    let reserved = sqlx::query(sql::reserve_key!())
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if reserved == 0 {
        let row = sqlx::query(sql::prior_claim!())
            .bind(grant_id)
            .bind(client_id)
            .bind(&key_hash[..])
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(replayed_from_row(&row)?);
    }
    let Some(row) = sqlx::query(lite!(consume))
        .bind(grant_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        tx.rollback().await?;
        return Ok(Keyed::Refused);
    };
    let grant = grant_from_row(&row)?;
    sqlx::query(sql::record_key!())
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .bind(i64::from(grant.use_count))
        .bind(grant.last_used_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Keyed::Consumed(grant, row.try_get("sealed_payload")?))
}
sql::row_readers!(SqliteRow);
