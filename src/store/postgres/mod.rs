//! PostgreSQL: the production store that many replicas share. Given the
//! members of a replicated cluster, it writes only to the one that accepts
//! writes and follows it through a failover ([`primary`]).

use std::{
    sync::{Arc, LazyLock, OnceLock},
    time::Duration,
};

use sqlx::{
    Postgres, Row,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
};
use tracing::warn;

use super::{
    Delegation, Dialect, Invalidation, Keyed, ListPage, ListQuery, Lookup, NewGrant, Prior, Result,
    Revision, RevokeTarget, Revoked, Rotated, Rotation, Sql, SqlStore, Store, StoreError,
    statements::{Statements, Syntax},
};
use crate::{
    config::DatabaseConfig,
    grant::{Grant, Micros, RevokeReason},
    token::TokenHash,
};
use batch::{Answer, Batcher, Taken};

mod batch;
mod batched;
mod hosts;
mod keyed;
mod listen;
mod primary;
mod replica;
mod retry;
mod revisions;
mod statements;

pub use statements::{BatchStatements, batch_statements};

impl Dialect for Postgres {
    const SYNTAX: Syntax = Syntax {
        // A SQL function from the first migration.
        now: "tessera_now_us()",
        ids: "SELECT unnest($1::text[])",
        touched: "unnest($1::text[], $2::bigint[]) AS t(id, at)",
        least: "LEAST",
        sweep_lock: " FOR UPDATE SKIP LOCKED",
    };

    fn migrator() -> &'static Migrator {
        static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");
        &MIGRATOR
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> =
            LazyLock::new(|| Statements::new(&Postgres::SYNTAX));
        &STATEMENTS
    }

    /// Arrays (`text[]`, `bigint[]`).
    type Texts<'q> = &'q [String];
    type Times<'q> = &'q [i64];

    fn texts(items: &[String]) -> &[String] {
        items
    }

    fn times(items: &[i64]) -> &[i64] {
        items
    }

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn read_texts(row: &PgRow, column: &str) -> sqlx::Result<Vec<String>> {
        row.try_get(column)
    }
}

/// Idle time after which a pooled connection is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// Lookup batches running at once (see [`batch`]). Fewer slots make larger
/// batches, for less of PostgreSQL's CPU per call; a lone call still finds
/// a slot free and waits for nothing. (BENCHMARKS.md has the measurements
/// behind this number and the next.)
const LOOKUP_SLOTS: u32 = 2;

/// Write batches (claims, keyed claims, mints) of each kind running at
/// once: each waits for its commit, so more of them overlap their fsyncs.
const WRITE_SLOTS: u32 = 4;

#[derive(Clone)]
pub struct PgStore {
    /// The pool serving calls, and one connection of its own for readiness.
    sql: Sql<Postgres>,
    /// With several members: whether the one that accepts writes has been
    /// found yet (see [`primary`]).
    primary_found: Option<tokio::sync::watch::Receiver<bool>>,
    /// Validate's lookups, Claim's uses and Mint's inserts, batched (see
    /// [`batch`]); started on first use, on the runtime that serves.
    batches: Arc<OnceLock<Batches>>,
    /// Lookup and write slots, within the pool.
    batch_slots: (usize, usize),
    /// The standbys of `--database-read-url`, if given.
    replicas: Option<Arc<replica::Replicas>>,
}

struct Batches {
    lookups: Batcher<TokenHash, Option<Lookup>>,
    uses: Batcher<String, Option<Taken>>,
    keyed: Batcher<keyed::Claim, Taken>,
    inserts: Batcher<NewGrant, Grant>,
}

impl PgStore {
    /// The pool, for the sign-in rows kept beside the grants
    /// ([`crate::signin::store`]).
    pub fn pool(&self) -> &sqlx::PgPool {
        self.sql.pool()
    }

    /// Builds the pools; connections are opened on first use, so a replica
    /// can start (and report NOT_SERVING) while the database is away.
    pub fn connect_lazy(db: &DatabaseConfig) -> anyhow::Result<Self> {
        let members = hosts::parse(&db.url).map_err(anyhow::Error::msg)?;
        let options = members
            .urls
            .iter()
            .map(|url| Ok(hosts::configure(url.parse()?, db)))
            .collect::<anyhow::Result<Vec<PgConnectOptions>>>()?;
        let wake = primary::Wake::default();
        // Several members, or `target_session_attrs=read-write`: every new
        // connection checks that its member accepts writes.
        let checked = |pool: PgPoolOptions| match members.read_write {
            true => primary::check_writable(pool, wake.clone()),
            false => pool,
        };
        let pool = checked(PgPoolOptions::new())
            .max_connections(db.max_connections)
            .acquire_timeout(db.acquire_timeout)
            // A ping before every query would double the round trips of the
            // hot path. Only a connection that sat idle long enough to have
            // been cut (a database restart, a proxy's idle timeout) is
            // checked; a busy one proves itself with every query.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options[0].clone());
        // Its one query is the check: a ping before it would double the
        // round trips, and under a slow network push the answer past the
        // readiness deadline.
        let health = checked(PgPoolOptions::new())
            .max_connections(1)
            .acquire_timeout(db.acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options[0].clone());
        let mut primary_found = None;
        if members.read_write {
            let (found, found_rx) = tokio::sync::watch::channel(false);
            primary_found = Some(found_rx);
            let follower = primary::Follower {
                members: options,
                pools: vec![pool.clone(), health.clone()],
                wake,
                current: 0,
                searching: false,
                found,
            };
            // Outside a runtime (never, for `serve` and `migrate`) the
            // pools stay on the first member, still refusing standbys.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(follower.run());
            }
        }
        Ok(Self {
            replicas: replica::Replicas::start(db, &pool)?,
            sql: Sql { pool, health },
            primary_found,
            batches: Arc::default(),
            batch_slots: (
                LOOKUP_SLOTS.min(db.max_connections).max(1) as usize,
                WRITE_SLOTS.min(db.max_connections).max(1) as usize,
            ),
        })
    }
}

impl PgStore {
    fn batches(&self) -> &Batches {
        self.batches.get_or_init(|| {
            let (pool, (reads, writes)) = (&self.sql.pool, self.batch_slots);
            Batches {
                lookups: Batcher::start(reads, pool.clone(), batched::find),
                uses: Batcher::start(writes, pool.clone(), batched::consume),
                keyed: Batcher::start(writes, pool.clone(), keyed::consume_many),
                inserts: Batcher::start(writes, pool.clone(), batched::insert),
            }
        })
    }
}

impl PgStore {
    /// The migrations this binary carries that the database has not applied.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        self.primary_found().await;
        self.sql.unapplied_migrations().await
    }
}

impl PgStore {
    /// With several members, waits (at most the acquire timeout) until the
    /// one that accepts writes is found, so that a first member that is
    /// down or a standby does not fail the start; if none is, the caller's
    /// own connection then fails with the reason.
    async fn primary_found(&self) {
        if let Some(mut found) = self.primary_found.clone() {
            let wait = self.sql.pool.options().get_acquire_timeout();
            let _ = tokio::time::timeout(wait, found.wait_for(|found| *found)).await;
        }
    }
}

impl SqlStore for PgStore {
    type Db = Postgres;

    fn sql(&self) -> &Sql<Postgres> {
        &self.sql
    }
}

impl Store for PgStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        self.primary_found().await;
        self.sql.migrate().await
    }

    async fn insert(&self, grant: &NewGrant) -> Result<Grant> {
        match self.batches().inserts.submit(grant.clone()).await {
            Answer::Done(grant) => Ok(grant),
            Answer::Failed(err) => Err(err.into()),
            // Only if the batcher is gone (shutting down).
            Answer::RunAlone => self.sql.insert(grant).await,
        }
    }

    async fn find(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        match self.batches().lookups.submit(*hash).await {
            Answer::Done(found) => return Ok(found),
            Answer::Failed(err) => return Err(err.into()),
            Answer::RunAlone => {}
        }
        // The batch failed: alone, with the retry and the error of its own.
        Ok(retry::read(|| Sql::find(&self.sql.pool, hash)).await?)
    }

    async fn find_replica(&self, hash: &TokenHash) -> Result<(Option<Lookup>, Duration)> {
        self.find_on_standby(hash).await
    }

    async fn find_at(&self, hash: &TokenHash, revision: &Revision) -> Result<Option<Lookup>> {
        self.find_past(hash, revision).await
    }

    async fn revision(&self) -> Result<Option<Revision>> {
        self.revision_now().await
    }

    async fn find_keyed(
        &self,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Option<(Lookup, Option<Prior>)>> {
        Ok(retry::read(|| Sql::find_keyed(&self.sql.pool, hash, client_id, key_hash)).await?)
    }

    async fn touch(&self, touches: &[(String, Micros)]) -> Result<()> {
        self.sql.touch(touches).await
    }

    async fn consume(&self, grant_id: &str) -> Result<Option<Taken>> {
        match self.batches().uses.submit(grant_id.to_owned()).await {
            Answer::Done(taken) => return Ok(taken),
            Answer::Failed(err) => return Err(err.into()),
            Answer::RunAlone => {}
        }
        self.sql.consume(grant_id).await
    }

    async fn consume_keyed(
        &self,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Keyed> {
        // On a task of its own, so that the claim completes even if its
        // caller goes away (in its batch, or alone after it), and a retry
        // with the key finds it.
        let claim = keyed::Claim {
            grant_id: grant_id.to_owned(),
            client_id: client_id.to_owned(),
            key_hash: *key_hash,
        };
        let store = self.clone();
        tokio::spawn(async move { store.claim_keyed(claim).await })
            .await
            .map_err(|_| StoreError::Internal(sqlx::Error::WorkerCrashed))?
    }

    async fn revoke(
        &self,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: RevokeReason,
    ) -> Result<Revoked> {
        self.sql.revoke(target, issued_by, reason).await
    }

    async fn payload(&self, grant_id: &str) -> Result<Option<Vec<u8>>> {
        self.sql.payload(grant_id).await
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Option<Rotated>> {
        self.sql.rotate(rotation).await
    }

    async fn delegate(&self, child: &Delegation) -> Result<Option<Grant>> {
        self.sql.delegate(child).await
    }

    async fn count_replay(&self, grant_id: &str) -> Result<Option<u64>> {
        self.sql.count_replay(grant_id).await
    }

    async fn get(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        self.sql.get(grant_id, issued_by).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        self.sql.list(query).await
    }

    async fn get_recent(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        self.get_on_standby(grant_id, issued_by).await
    }

    async fn list_recent(&self, query: &ListQuery) -> Result<ListPage> {
        self.list_on_standby(query).await
    }

    async fn sweep(&self, retention: Duration, batch: u32) -> Result<u64> {
        self.sql.sweep(retention, batch).await
    }

    async fn ping(&self) -> Result<()> {
        self.sql.ping().await
    }

    async fn count_live(&self) -> Result<u64> {
        self.sql.count_live().await
    }

    fn pool_probe(&self) -> crate::metrics::PoolProbe {
        self.sql.pool_probe()
    }

    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        loop {
            match self.listen_once(&on).await {
                Ok(()) => warn!("invalidation listener lost its connection; reconnecting"),
                Err(err) => warn!(error = %err, "invalidation listener failed; retrying"),
            }
            on(Invalidation::Lost);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn close(&self) {
        self.sql.close().await;
    }
}
