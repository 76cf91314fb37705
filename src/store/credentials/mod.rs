//! Storage for the Credentials service: one table, `credentials`, behind a
//! trait of its own that both stores implement with the same SQL
//! ([`sql`], [`statements`]).
//!
//! A row is a sealed secret per (client, bearer, name), its version (1 on
//! create, +1 on every replace or refresh), and its refresh lease: the
//! holder's lease id, when the lease expires, and the fence (+1 on every
//! lease granted). Every change is one conditional statement, so the
//! database decides each race: which Put-if-version wins, which caller gets
//! a free or expired lease, whether a lease is still held when its refresh
//! is committed. Times are unix microseconds of the database's clock.

use std::{future::Future, time::Duration};

use super::Result;
use crate::grant::Micros;

/// Where a credential lives: the client that put it, the bearer, the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub client_id: String,
    pub bearer_id: String,
    pub name: String,
}

/// A secret as stored: the id of the key that sealed it, and the sealed
/// bytes. `Debug` shows their size only.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// A credential as read, with the database's time of the read.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: u64,
    pub sealed: Sealed,
    pub expires_at: Option<Micros>,
    pub now: Micros,
}

/// A lease just granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub version: u64,
    pub fence: u64,
    pub expires_at: Micros,
}

/// A credential's lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    pub version: u64,
    /// When the lease expires, if one was granted and not released.
    pub lease_expires_at: Option<Micros>,
    pub now: Micros,
}

/// The credential a lease id names (for its client), expired or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub slot: Slot,
    pub version: u64,
}

/// One line of a List.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub version: u64,
    pub expires_at: Option<Micros>,
}

/// A row sealed under a key other than the current one (for `rekey`).
#[derive(Debug, Clone)]
pub struct Resealable {
    pub slot: Slot,
    pub version: u64,
    pub sealed: Sealed,
}

/// Persistence for credentials. Every method is one statement.
pub trait CredentialStore: Clone + Send + Sync + 'static {
    /// The credential in `slot`, and the database's time.
    fn read(&self, slot: &Slot) -> impl Future<Output = Result<Option<Stored>>> + Send;

    /// The version in `slot`, if there is a credential.
    fn version(&self, slot: &Slot) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Inserts version 1 unless the slot is taken; whether it did.
    fn create(
        &self,
        slot: &Slot,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Replaces version `version` with `version + 1` (sealed for it),
    /// releasing any lease: a refresh in progress is superseded. Whether
    /// the slot held that version.
    fn replace(
        &self,
        slot: &Slot,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Takes the lease as `lease_id` for `ttl` if it is free or expired,
    /// raising the fence. `None` if it is held (or there is no credential).
    fn take_lease(
        &self,
        slot: &Slot,
        lease_id: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Granted>>> + Send;

    /// The lease of `slot` as it stands; `None` if there is no credential.
    fn lease_state(&self, slot: &Slot) -> impl Future<Output = Result<Option<LeaseState>>> + Send;

    /// The credential `client_id`'s lease `lease_id` is on, expired or not.
    fn leased(
        &self,
        client_id: &str,
        lease_id: &str,
    ) -> impl Future<Output = Result<Option<Leased>>> + Send;

    /// Commits a refresh: if `client_id` still holds `lease_id` (not
    /// expired) on version `version`, writes `version + 1` and releases
    /// the lease. Whether it did.
    fn complete(
        &self,
        client_id: &str,
        lease_id: &str,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Releases `client_id`'s lease `lease_id` if still held (not expired).
    fn release(&self, client_id: &str, lease_id: &str)
    -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the credential in `slot`, lease and all; whether there was one.
    fn delete(&self, slot: &Slot) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` of a bearer's credentials with names after `after`,
    /// in name order.
    fn list(
        &self,
        client_id: &str,
        bearer_id: &str,
        after: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Listed>>> + Send;

    /// Up to `limit` rows not sealed under `current_key_id`, after `after`
    /// in (client, bearer, name) order.
    fn stale_seals(
        &self,
        current_key_id: &str,
        after: &Slot,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Resealable>>> + Send;

    /// How many rows are not sealed under `current_key_id`: the whole of
    /// a rekey's work, for its progress.
    fn count_stale_seals(&self, current_key_id: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Writes `sealed` over `row` if it is unchanged since read (same
    /// version, same key); whether it did. The version stays.
    fn reseal(
        &self,
        row: &Resealable,
        sealed: &Sealed,
    ) -> impl Future<Output = Result<bool>> + Send;
}

mod checks;
mod sql;
mod statements;

pub use checks::SealChecks;
pub use statements::Statements;
