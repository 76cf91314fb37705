//! PostgreSQL: the production store that many replicas share. Given the
//! members of a replicated cluster, it writes only to the one that accepts
//! writes and follows it through a failover ([`primary`]).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use sqlx::{
    PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
    types::Json,
};

use super::{
    Delegation, Grant, Invalidation, Keyed, ListPage, ListQuery, Lookup, Micros, NewGrant, Prior,
    Result, RevokeReason, RevokeTarget, Revoked, Rotated, Rotation, Store, StoreError,
    batch::{self, Answer, Batcher},
    sql, to_u32,
};
use tracing::warn;

use crate::{config::DatabaseConfig, token::TokenHash};

/// `tessera_now_us()` is a SQL function from the first migration.
macro_rules! pg {
    ($statement:ident $(, $arg:literal)*) => {
        sql::$statement!("tessera_now_us()" $(, $arg)*)
    };
}

mod credentials;
mod dialect;
mod hosts;
mod keyed;
mod listen;
mod primary;
mod retry;

/// The statements each hot RPC runs on success, in order and by name, for
/// `tessera-bench --print-sql`: bench/compare.py hands them to pgbench.
pub const HOT_PATH: [(&str, &[(&str, &str)]); 4] = [
    ("validate", &[("find", pg!(find))]),
    ("claim", &[("find", pg!(find)), ("consume", pg!(consume))]),
    (
        "claim-keyed",
        &[
            ("find_keyed", pg!(find_keyed)),
            ("consume_keyed", pg!(consume_keyed)),
        ],
    ),
    ("mint", &[("insert", pg!(insert))]),
];

/// Idle time after which a pooled connection is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// Lookup batches running at once (see [`super::batch`]). Fewer slots make
/// larger batches: at 64 calls in flight two slots carried 1.2 to 1.5
/// times the Validates of four, for half of PostgreSQL's CPU per call; a
/// lone call still finds a slot free and waits for nothing.
const LOOKUP_SLOTS: u32 = 2;

/// Write batches (claims, keyed claims, mints) of each kind running at
/// once: each waits for its commit, so more of them overlap their fsyncs;
/// two carried fewer mints than four, eight no more than four.
const WRITE_SLOTS: u32 = 4;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// One connection of its own for readiness checks, so a pool busy with
    /// calls does not read as a database that is down.
    health: PgPool,
    /// With several members: whether the one that accepts writes has been
    /// found yet (see [`primary`]).
    primary_found: Option<tokio::sync::watch::Receiver<bool>>,
    /// Validate's lookups and Mint's inserts, batched (see
    /// [`super::batch`]); started on first use, on the runtime that serves.
    batches: Arc<OnceLock<Batches>>,
    /// Lookup and write slots, within the pool.
    batch_slots: (usize, usize),
}

struct Batches {
    lookups: Batcher<TokenHash, Option<Lookup>>,
    uses: Batcher<String, batch::Taken>,
    keyed: Batcher<keyed::Claim, keyed::Taken>,
    inserts: Batcher<NewGrant, Grant>,
}

impl PgStore {
    /// Builds the pools; connections are opened on first use, so a replica
    /// can start (and report NOT_SERVING) while the database is away.
    /// The pool, for the sign-in rows kept beside the grants
    /// ([`crate::signin::store`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

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
            pool,
            health,
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
            let (pool, (reads, writes)) = (&self.pool, self.batch_slots);
            Batches {
                lookups: Batcher::start(reads, pool.clone(), batch::find),
                uses: Batcher::start(writes, pool.clone(), batch::consume),
                keyed: Batcher::start(writes, pool.clone(), keyed::consume_many),
                inserts: Batcher::start(writes, pool.clone(), batch::insert),
            }
        })
    }
}

/// Inserts one grant and returns it as stored.
pub(super) async fn insert_one<'e>(
    db: impl sqlx::PgExecutor<'e>,
    grant: &NewGrant,
) -> std::result::Result<Grant, sqlx::Error> {
    dialect::insert(db, grant).await
}

pub(super) fn grant_from_row(row: &PgRow) -> std::result::Result<Grant, sqlx::Error> {
    Ok(Grant {
        grant_id: row.try_get("grant_id")?,
        token_hint: row.try_get("token_hint")?,
        subject: row.try_get("subject")?,
        audience: row.try_get("audience")?,
        run_id: row.try_get("run_id")?,
        scopes: row.try_get("scopes")?,
        labels: row.try_get::<Json<_>, _>("labels")?.0,
        max_uses: to_u32(row.try_get("max_uses")?),
        use_count: to_u32(row.try_get("use_count")?),
        issued_by: row.try_get("issued_by")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoke_reason: RevokeReason::from_code(row.try_get::<i16, _>("revoke_reason")?.into()),
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

impl PgStore {
    /// The migrations this binary carries that the database has not applied.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        self.primary_found().await;
        let migrator = sqlx::migrate!("migrations/postgres");
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(super::unapplied(&migrator, &applied))
    }
}

impl PgStore {
    /// With several members, waits (at most the acquire timeout) until the
    /// one that accepts writes is found, so that a first member that is
    /// down or a standby does not fail the start; if none is, the caller's
    /// own connection then fails with the reason.
    async fn primary_found(&self) {
        if let Some(mut found) = self.primary_found.clone() {
            let wait = self.pool.options().get_acquire_timeout();
            let _ = tokio::time::timeout(wait, found.wait_for(|found| *found)).await;
        }
    }
}

impl Store for PgStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        self.primary_found().await;
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert(&self, grant: &NewGrant) -> Result<Grant> {
        match self.batches().inserts.submit(grant.clone()).await {
            Answer::Done(grant) => Ok(grant),
            Answer::Failed(err) => Err(err.into()),
            // Only if the batcher is gone (shutting down).
            Answer::Alone => Ok(insert_one(&self.pool, grant).await?),
        }
    }

    async fn find(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        match self.batches().lookups.submit(*hash).await {
            Answer::Done(found) => return Ok(found),
            Answer::Failed(err) => return Err(err.into()),
            Answer::Alone => {}
        }
        // The batch failed: alone, with the retry and the error of its own.
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
        match self.batches().uses.submit(grant_id.to_owned()).await {
            Answer::Done(taken) => return Ok(taken),
            Answer::Failed(err) => return Err(err.into()),
            Answer::Alone => {}
        }
        dialect::consume(&self.pool, grant_id).await
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
        dialect::close(&self.pool, &self.health).await;
    }
}

sql::row_readers!(PgRow);
