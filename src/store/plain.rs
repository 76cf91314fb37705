//! [`Store`] for a database run plainly, one call one statement (or one
//! transaction): what SQLite runs, and what PostgreSQL's store runs for
//! every operation it does not batch (see `postgres/mod.rs`).

use std::{collections::BTreeMap, time::Duration};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Type, types::Json};

use super::{
    Delegation, Invalidation, Keyed, ListPage, ListQuery, Lookup, NewGrant, Prior, Result,
    RevokeTarget, Revoked, Rotated, Rotation, Sql, SqlStore, Store, StoreError, dialect::Dialect,
};
use crate::{
    grant::{Grant, Micros, RevokeReason},
    token::TokenHash,
};

type Labels = BTreeMap<String, String>;

impl<DB: Dialect> SqlStore for Sql<DB>
where
    Pool<DB>: Send + Sync,
{
    type Db = DB;

    fn sql(&self) -> &Sql<DB> {
        self
    }
}

impl<DB> Store for Sql<DB>
where
    DB: Dialect,
    Pool<DB>: Send + Sync,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Connection: sqlx::migrate::Migrate,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Decode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Labels>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<Labels>: Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i16: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn migrate(&self) -> anyhow::Result<()> {
        DB::migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn insert(&self, grant: &NewGrant) -> Result<Grant> {
        Ok(Sql::insert(&self.pool, grant).await?)
    }

    async fn find(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        Ok(Sql::find(&self.pool, hash).await?)
    }

    async fn find_keyed(
        &self,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Option<(Lookup, Option<Prior>)>> {
        Ok(Sql::find_keyed(&self.pool, hash, client_id, key_hash).await?)
    }

    async fn touch(&self, touches: &[(String, Micros)]) -> Result<()> {
        Ok(Sql::touch(&self.pool, touches).await?)
    }

    async fn consume(&self, grant_id: &str) -> Result<Option<(Grant, Vec<u8>)>> {
        Ok(Sql::consume(&self.pool, grant_id).await?)
    }

    /// On a task of its own: a caller that goes away mid-transaction must
    /// not leave it open (or half done) on a pooled connection. The claim
    /// completes, and a retry with the key finds it.
    async fn consume_keyed(
        &self,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Keyed> {
        let (pool, grant_id, client_id, key_hash) = (
            self.pool.clone(),
            grant_id.to_owned(),
            client_id.to_owned(),
            *key_hash,
        );
        tokio::spawn(async move { Sql::keyed_claim(&pool, &grant_id, &client_id, &key_hash).await })
            .await
            .map_err(|_| StoreError::Internal(sqlx::Error::WorkerCrashed))?
    }

    async fn revoke(
        &self,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: RevokeReason,
    ) -> Result<Revoked> {
        Ok(Sql::revoke(&self.pool, target, issued_by, reason).await?)
    }

    async fn payload(&self, grant_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(Sql::payload(&self.pool, grant_id).await?)
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Option<Rotated>> {
        Ok(Sql::rotate(&self.pool, rotation).await?)
    }

    async fn delegate(&self, child: &Delegation) -> Result<Option<Grant>> {
        Ok(Sql::delegate(&self.pool, child).await?)
    }

    async fn count_replay(&self, grant_id: &str) -> Result<Option<u64>> {
        Ok(Sql::count_replay(&self.pool, grant_id).await?)
    }

    async fn get(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        Ok(Sql::get(&self.pool, grant_id, issued_by).await?)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        Ok(Sql::list(&self.pool, query).await?)
    }

    async fn sweep(&self, retention: Duration, batch: u32) -> Result<u64> {
        Ok(Sql::sweep(&self.pool, retention, batch).await?)
    }

    async fn ping(&self) -> Result<()> {
        Ok(Sql::ping(&self.health).await?)
    }

    async fn count_live(&self) -> Result<u64> {
        Ok(Sql::count_live(&self.pool).await?)
    }

    /// Reads the connection pool's state, for each metrics scrape.
    fn pool_probe(&self) -> crate::metrics::PoolProbe {
        let pool = self.pool.clone();
        Box::new(move || crate::metrics::PoolState {
            size: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        })
    }

    /// A database run plainly announces nothing: one process owns the
    /// file in practice (SQLite), its own changes invalidate its cache
    /// directly, and other processes sharing the file see them within
    /// `--cache-max-age`.
    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        on(Invalidation::Resumed);
        std::future::pending::<()>().await;
    }

    /// Closes both pools, waiting for connections in use to be returned.
    async fn close(&self) {
        self.health.close().await;
        self.pool.close().await;
    }
}
