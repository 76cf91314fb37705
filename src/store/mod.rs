//! Storage: one trait, one implementation per database.
//!
//! Both databases run the same statements ([`statements`]), built once per
//! database from the words that differ ([`Dialect`]); the code that runs
//! them is written once, as plain generic methods of [`Sql`] (`grants.rs`,
//! `lineage.rs`, `credentials/sql.rs`). A store adds only what is its own:
//! PostgreSQL its batches, its retried reads, its listener and its cluster
//! members (`postgres/`); SQLite its file and its three-statement keyed
//! claim (`sqlite/`).
//!
//! The store knows rows, not rules: the authority decides who may see what
//! and which denial applies. Two things the store does own, because only the
//! database can do them atomically across replicas: the compare-and-set of
//! [`Store::consume`], and the clock that decides expiry (every time column
//! is set and compared by the database, so replicas with skewed clocks
//! agree). Times are unix microseconds.

use std::{future::Future, time::Duration};

use crate::token::TokenHash;

pub mod credentials;
mod dialect;
mod grants;
mod lineage;
mod plain;
pub mod postgres;
mod revision;
pub mod sqlite;
pub mod statements;
mod types;

pub use credentials::CredentialStore;
pub use dialect::Dialect;
pub use grants::Sql;
pub use postgres::PgStore;
pub use revision::Revision;
pub use sqlite::SqliteStore;
pub use types::{
    Delegation, Invalidation, Keyed, ListPage, ListQuery, Lookup, NewGrant, Prior, RevokeTarget,
    Revoked, Rotated, Rotation,
};

use crate::grant::{Grant, Micros, RevokeReason};

/// How stale `last_used_at` may get on Validate: at most one write per grant
/// per interval keeps Validate read-mostly.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or the pool is exhausted: retryable.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug, a broken schema or a corrupt row.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match classify(&err) {
            Failure::Connection | Failure::Unavailable => Self::Unavailable(err),
            Failure::Internal => Self::Internal(err),
        }
    }
}

/// What a database error means for the call that got it. Every database
/// error is classified here, once: for the caller ([`StoreError`]) and for
/// PostgreSQL's retried reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection failed under the statement (not the statement
    /// itself): a read may be run again on another connection.
    Connection,
    /// The database cannot be reached now, is busy, or the pool is
    /// exhausted: the call may succeed if retried later.
    Unavailable,
    /// Anything else: a bug, a broken schema or a corrupt row.
    Internal,
}

pub(crate) fn classify(err: &sqlx::Error) -> Failure {
    match err {
        // What a connection cut mid-statement or mid-handshake looks like.
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => Failure::Connection,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => Failure::Unavailable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // connection exception; admin/crash shutdown, cannot connect now
            Some(code) if code.starts_with("08") || code.starts_with("57P") => Failure::Connection,
            // too many connections; read_only_sql_transaction (a member
            // demoted under the connection refused the write, so nothing
            // was done); SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT
            Some("53300" | "25006" | "5" | "6" | "517") => Failure::Unavailable,
            _ => Failure::Internal,
        },
        _ => Failure::Internal,
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Persistence for grants. Every method is one statement (one round trip)
/// unless its doc says otherwise.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies the embedded migrations.
    fn migrate(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Inserts a grant and returns it as stored.
    fn insert(&self, grant: &NewGrant) -> impl Future<Output = Result<Grant>> + Send;

    /// Finds a grant by token hash, whatever its state.
    fn find(&self, hash: &TokenHash) -> impl Future<Output = Result<Option<Lookup>>> + Send;

    /// [`Self::find`], for a BOUNDED Validate: the answer may be up to the
    /// cache's bounded age old. A database answers fresh;
    /// [`crate::cache::Cached`] answers from memory when it can.
    fn find_recent(&self, hash: &TokenHash) -> impl Future<Output = Result<Option<Lookup>>> + Send {
        self.find(hash)
    }

    /// [`Self::find`] from a standby within `--cache-max-age` of the
    /// primary when there is one (`--database-read-url`), with how stale
    /// its answer may be; else from the primary, stale by nothing.
    fn find_replica(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = Result<(Option<Lookup>, Duration)>> + Send {
        async { Ok((self.find(hash).await?, Duration::ZERO)) }
    }

    /// [`Self::find`], answered by a state at least as fresh as `revision`:
    /// a standby that has replayed past it, else the primary.
    fn find_at(
        &self,
        hash: &TokenHash,
        revision: &Revision,
    ) -> impl Future<Output = Result<Option<Lookup>>> + Send {
        let _ = revision;
        self.find(hash)
    }

    /// How far the writes acknowledged so far reach, for a later read to
    /// ask for ([`Self::find_at`]); `None` where every read is at least
    /// that fresh anyway (SQLite; PostgreSQL without read replicas).
    fn revision(&self) -> impl Future<Output = Result<Option<Revision>>> + Send {
        async { Ok(None) }
    }

    /// [`Self::get`] for an operator, who may be answered by a standby
    /// within `--cache-max-age` of the primary.
    fn get_recent(
        &self,
        grant_id: &str,
        issued_by: Option<&str>,
    ) -> impl Future<Output = Result<Option<Grant>>> + Send {
        self.get(grant_id, issued_by)
    }

    /// [`Self::list`] for an operator, as [`Self::get_recent`].
    fn list_recent(&self, query: &ListQuery) -> impl Future<Output = Result<ListPage>> + Send {
        self.list(query)
    }

    /// Finds a grant by token hash, whatever its state, and the claim
    /// `client_id` made on it with the key hashed to `key_hash`, if any.
    /// One statement, whether or not the grant or the claim exist.
    fn find_keyed(
        &self,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<(Lookup, Option<Prior>)>>> + Send;

    /// Sets each grant's `last_used_at` to its time, unless it is already
    /// within [`TOUCH_INTERVAL`] of it: one statement for the whole batch.
    fn touch(&self, touches: &[(String, Micros)]) -> impl Future<Output = Result<()>> + Send;

    /// Consumes one use if, at this instant, the grant is not revoked, not
    /// expired and has uses left: one atomic compare-and-set. Returns the grant
    /// after the use and its sealed payload, or `None` if the grant was not
    /// usable (another caller may have taken the last use).
    fn consume(
        &self,
        grant_id: &str,
    ) -> impl Future<Output = Result<Option<(Grant, Vec<u8>)>>> + Send;

    /// Consumes one use under an idempotency key, once. The key is recorded
    /// in the same transaction as the use; if it already is, nothing is
    /// consumed and the claim it made comes back instead, whatever the
    /// grant's state now. A transaction of up to four statements.
    fn consume_keyed(
        &self,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Keyed>> + Send;

    /// Revokes the live grants matching `target` (and `issued_by`, when
    /// set) and, in the same transaction, all their live descendants.
    fn revoke(
        &self,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: RevokeReason,
    ) -> impl Future<Output = Result<Revoked>> + Send;

    /// The sealed payload of a grant, to re-seal it under a successor's token.
    fn payload(&self, grant_id: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Rotates a live grant not rotated before, in one transaction: it and
    /// its live descendants count as revoked (reason ROTATED) from now +
    /// `overlap`, and the successor is inserted. `None` if the grant is not
    /// live, was rotated already, or is not `issued_by`'s.
    fn rotate(&self, rotation: &Rotation) -> impl Future<Output = Result<Option<Rotated>>> + Send;

    /// Inserts a grant delegated from a live parent, inheriting its
    /// subject, run and lineage, expiring no later than it. `None` if the
    /// parent is not live (it may have ended since it was judged).
    fn delegate(&self, child: &Delegation) -> impl Future<Output = Result<Option<Grant>>> + Send;

    /// Counts one more replay of the grant (see [`crate::rules::Hidden::is_replay`])
    /// and returns its count so far, across replicas; `None` if there is no
    /// such grant (it was swept).
    fn count_replay(&self, grant_id: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// One grant by id (restricted to `issued_by`, when set).
    fn get(
        &self,
        grant_id: &str,
        issued_by: Option<&str>,
    ) -> impl Future<Output = Result<Option<Grant>>> + Send;

    /// A page of grants plus the live count (two statements).
    fn list(&self, query: &ListQuery) -> impl Future<Output = Result<ListPage>> + Send;

    /// Deletes up to `batch` grants that expired, were revoked or were used up
    /// more than `retention` ago. Safe to run from many replicas at once.
    fn sweep(&self, retention: Duration, batch: u32) -> impl Future<Output = Result<u64>> + Send;

    /// Cheapest round trip that proves the database answers.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// How many grants are live now (for the metrics gauge).
    fn count_live(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Reads the connection pool's state, for each metrics scrape.
    fn pool_probe(&self) -> crate::metrics::PoolProbe;

    /// Reports, for as long as it runs, every grant another replica (or
    /// this one) ended early, and whether such reports may have been missed.
    /// Starts with `Resumed` once reports flow.
    fn listen(
        &self,
        on: impl Fn(Invalidation) + Send + Sync + 'static,
    ) -> impl Future<Output = ()> + Send;

    /// Closes the pool, waiting for connections in use to be returned.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// A store over one SQL database, which hands out its pools and the
/// statements both databases share ([`Sql`]). What both run the same way
/// and no layer changes (the credentials, the seal key checks) is
/// implemented once, for every such store ([`credentials`]).
pub trait SqlStore: Clone + Send + Sync + 'static {
    type Db: Dialect;

    fn sql(&self) -> &Sql<Self::Db>;
}

pub(crate) fn to_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}
