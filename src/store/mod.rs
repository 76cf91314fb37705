//! Storage: one trait, one implementation per database.
//!
//! The store knows rows, not rules: the authority decides who may see what
//! and which denial applies. Two things the store does own, because only the
//! database can do them atomically across replicas: the compare-and-set of
//! [`Store::consume`], and the clock that decides expiry (every time column
//! is set and compared by the database, so replicas with skewed clocks
//! agree). Times are unix microseconds.

use std::{collections::BTreeMap, future::Future, time::Duration};

use crate::token::TokenHash;

mod batch;
pub mod credentials;
mod lineage;
pub mod postgres;
mod shared;
mod sql;
pub mod sqlite;

pub use credentials::CredentialStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Unix time in microseconds, as the database's clock gave it.
pub type Micros = i64;

/// How stale `last_used_at` may get on Validate: at most one write per grant
/// per interval keeps Validate read-mostly.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// What the store's listener reports (see [`Store::listen`]): the
/// cache's freshness guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// This grant changed: forget it.
    Grant(TokenHash),
    /// Invalidations may have been missed from now on: forget everything
    /// and answer nothing until `Resumed`.
    Lost,
    /// Invalidations are being received again.
    Resumed,
}

/// Why a grant was revoked. Stored as its number, which is also its number
/// on the wire (`tessera.v1.RevokeReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Manual = 1,
    RunEnded = 2,
    SubjectDisabled = 3,
    /// A replay of a grant minted with `revoke_run_on_replay`.
    Compromised = 4,
    Rotated = 5,
}

impl RevokeReason {
    pub const ALL: [Self; 5] = [
        Self::Manual,
        Self::RunEnded,
        Self::SubjectDisabled,
        Self::Compromised,
        Self::Rotated,
    ];

    pub fn code(self) -> i16 {
        self as i16
    }

    /// The reason stored as `code`; `None` for 0 (live) or a number this
    /// version does not know.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| i64::from(r.code()) == code)
    }

    /// Its name, as logs and the wire spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::RunEnded => "RUN_ENDED",
            Self::SubjectDisabled => "SUBJECT_DISABLED",
            Self::Compromised => "COMPROMISED",
            Self::Rotated => "ROTATED",
        }
    }
}

/// A grant as stored, without its token, hash or payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub token_hint: String,
    pub subject: String,
    pub audience: Vec<String>,
    pub run_id: String,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub max_uses: u32,
    pub use_count: u32,
    pub issued_by: String,
    pub issued_at: Micros,
    pub expires_at: Micros,
    pub revoked_at: Option<Micros>,
    /// `None` while live.
    pub revoke_reason: Option<RevokeReason>,
    pub last_used_at: Option<Micros>,
    pub revoke_run_on_replay: bool,
    /// The grant this one was delegated from, and how many delegations
    /// deep it is (0 for a minted grant).
    pub parent_grant_id: Option<String>,
    pub depth: u32,
    /// The grant this one replaced by rotation, and the one that replaced it.
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
    /// The issuer's stored credential a claim hands over.
    pub payload_credential: Option<CredentialRef>,
}

/// One of a client's stored credentials, by bearer and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialRef {
    pub bearer_id: String,
    pub name: String,
}

impl CredentialRef {
    /// From the two nullable columns that hold it.
    pub fn from_columns(bearer_id: Option<String>, name: Option<String>) -> Option<Self> {
        Some(Self {
            bearer_id: bearer_id?,
            name: name?,
        })
    }
}

/// What Mint writes. `issued_at` and `expires_at` come from the database's clock.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub grant_id: String,
    pub token_hash: TokenHash,
    pub token_hint: String,
    pub subject: String,
    pub audience: Vec<String>,
    pub run_id: String,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub max_uses: u32,
    pub issued_by: String,
    pub ttl: Duration,
    pub revoke_run_on_replay: bool,
    /// Ciphertext (see `seal`); empty when there is no payload.
    pub sealed_payload: Vec<u8>,
    pub payload_credential: Option<CredentialRef>,
}

/// What a revoke ended.
#[derive(Debug, Default)]
pub struct Revoked {
    /// Grants revoked, descendants included.
    pub count: u64,
    /// The token hashes of the descendants, which the caller's cache must
    /// forget (the targets it knows how to find).
    pub descendants: Vec<TokenHash>,
}

/// A rotation: the grant replaced, and its successor's token.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub grant_id: String,
    /// Only this issuer's grant (`None`: admin).
    pub issued_by: Option<String>,
    pub successor_id: String,
    pub token_hash: TokenHash,
    pub token_hint: String,
    /// The predecessor's payload, sealed under the successor's token.
    pub sealed_payload: Vec<u8>,
    pub ttl: Micros,
    /// How long the predecessor stays valid.
    pub overlap: Micros,
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub successor: Grant,
    pub predecessor: Grant,
    /// As in [`Revoked::descendants`].
    pub descendants: Vec<TokenHash>,
}

/// A delegated grant: what it narrows; the rest comes from its parent.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub parent_grant_id: String,
    pub grant_id: String,
    pub token_hash: TokenHash,
    pub token_hint: String,
    pub audience: Vec<String>,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub sealed_payload: Vec<u8>,
    pub max_uses: u32,
    pub issued_by: String,
    /// Capped by the parent's expiry, in the statement itself.
    pub ttl: Micros,
}

/// A grant found by its token hash, judged against the database's clock.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub grant: Grant,
    pub expired: bool,
    /// The database's time when it answered.
    pub now: Micros,
}

/// A claim a client already made on a grant with a claim key.
pub struct Prior {
    /// The use it took (the use count right after it)…
    pub use_count: u32,
    /// …and when.
    pub claimed_at: Micros,
    /// The grant's sealed payload, which that claim revealed.
    pub sealed_payload: Vec<u8>,
}

impl std::fmt::Debug for Prior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prior")
            .field("use_count", &self.use_count)
            .field("claimed_at", &self.claimed_at)
            .finish_non_exhaustive()
    }
}

/// What a keyed claim did.
#[derive(Debug)]
pub enum Keyed {
    /// This call took a use: the grant after it, and its sealed payload.
    Consumed(Grant, Vec<u8>),
    /// The key was used before: the grant as that claim left it (use count
    /// and time of that use), and the sealed payload.
    Replayed(Grant, Vec<u8>),
    /// No use left, revoked or expired, and the key was never used.
    Refused,
}

/// Which live grants a Revoke hits.
#[derive(Debug)]
pub enum RevokeTarget {
    Token(TokenHash),
    GrantId(String),
    RunId(String),
    Subject(String),
}

/// A page of grants in grant id (= mint time) order.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub subject: Option<String>,
    pub run_id: Option<String>,
    /// Only grants issued by this client (non-admin callers).
    pub issued_by: Option<String>,
    pub include_inactive: bool,
    /// Grants with an id greater than this one.
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Debug)]
pub struct ListPage {
    pub grants: Vec<Grant>,
    /// Live grants matching subject, run_id and issued_by.
    pub active_count: u64,
}

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
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            // What a connection cut mid-handshake (TLS negotiation
            // included) looks like: the next attempt may well succeed.
            | sqlx::Error::Protocol(_) => Self::Unavailable(err),
            sqlx::Error::Database(ref db) if is_transient(db.code().as_deref()) => {
                Self::Unavailable(err)
            }
            _ => Self::Internal(err),
        }
    }
}

/// PostgreSQL's "the server is going away / not ready" classes, and SQLite's
/// busy and locked codes: the request may succeed if retried.
fn is_transient(code: Option<&str>) -> bool {
    match code {
        Some(code) => {
            code.starts_with("08") // connection exception
                || code.starts_with("57P") // admin/crash shutdown, cannot connect now
                || code == "53300" // too many connections
                || code == "5" // SQLITE_BUSY
                || code == "6" // SQLITE_LOCKED
                || code == "517" // SQLITE_BUSY_SNAPSHOT
        }
        None => false,
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

/// Versions `migrator` holds that are not among `applied`.
fn unapplied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<i64> {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect()
}

pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) fn to_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}
