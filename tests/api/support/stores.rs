//! Either store behind one type, so that each body of the store
//! conformance suites is a plain async fn run on both databases.

use std::{future::Future, time::Duration};

use tessera::{
    grant::{Grant, RevokeReason},
    store::{
        CredentialStore, Delegation, Invalidation, Keyed, ListQuery, NewGrant, PgStore, Result,
        RevokeTarget, Revoked, Rotated, Rotation, SqliteStore, Store,
        credentials::{
            Granted, LeaseState, Leased, Listed, Resealable, SealChecks, Sealed, Slot, Stored,
        },
    },
};

use super::{Backend, TestDb};

/// Runs `test` against a migrated store of `backend`, so each body of the
/// store conformance suites (`conformance.rs`, `credentials_store.rs`) is
/// written once.
pub async fn with_store<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(AnyStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::new(backend).await;
    let config = tessera::config::DatabaseConfig {
        url: db.url().to_owned(),
        read_url: None,
        read_max_lag: Duration::ZERO,
        max_connections: 4,
        acquire_timeout: Duration::from_secs(3),
        statement_timeout: Duration::from_secs(5),
    };
    let store = match backend {
        Backend::Postgres => AnyStore::Pg(PgStore::connect_lazy(&config).unwrap()),
        Backend::Sqlite => AnyStore::Lite(SqliteStore::connect_lazy(&config).unwrap()),
    };
    store.migrate().await.unwrap();
    test(store.clone()).await;
    store.close().await;
}

/// Dispatches to either store, so test bodies are plain async fns.
#[derive(Clone)]
pub enum AnyStore {
    Pg(PgStore),
    Lite(SqliteStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Pg($s) => $call,
            AnyStore::Lite($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        dispatch!(self, s => s.migrate().await)
    }
    async fn insert(&self, g: &NewGrant) -> tessera::store::Result<Grant> {
        dispatch!(self, s => s.insert(g).await)
    }
    async fn find(
        &self,
        h: &tessera::token::TokenHash,
    ) -> tessera::store::Result<Option<tessera::store::Lookup>> {
        dispatch!(self, s => s.find(h).await)
    }
    async fn find_keyed(
        &self,
        h: &tessera::token::TokenHash,
        client: &str,
        key: &[u8; 32],
    ) -> tessera::store::Result<Option<(tessera::store::Lookup, Option<tessera::store::Prior>)>>
    {
        dispatch!(self, s => s.find_keyed(h, client, key).await)
    }
    async fn touch(&self, touches: &[(String, i64)]) -> tessera::store::Result<()> {
        dispatch!(self, s => s.touch(touches).await)
    }
    async fn consume(&self, id: &str) -> tessera::store::Result<Option<(Grant, Vec<u8>)>> {
        dispatch!(self, s => s.consume(id).await)
    }
    async fn consume_keyed(
        &self,
        id: &str,
        client: &str,
        key: &[u8; 32],
    ) -> tessera::store::Result<Keyed> {
        dispatch!(self, s => s.consume_keyed(id, client, key).await)
    }
    async fn revoke(
        &self,
        t: &RevokeTarget,
        by: Option<&str>,
        r: RevokeReason,
    ) -> tessera::store::Result<Revoked> {
        dispatch!(self, s => s.revoke(t, by, r).await)
    }
    async fn payload(&self, id: &str) -> tessera::store::Result<Option<Vec<u8>>> {
        dispatch!(self, s => s.payload(id).await)
    }
    async fn rotate(&self, r: &Rotation) -> tessera::store::Result<Option<Rotated>> {
        dispatch!(self, s => s.rotate(r).await)
    }
    async fn delegate(&self, d: &Delegation) -> tessera::store::Result<Option<Grant>> {
        dispatch!(self, s => s.delegate(d).await)
    }
    async fn count_replay(&self, id: &str) -> tessera::store::Result<Option<u64>> {
        dispatch!(self, s => s.count_replay(id).await)
    }
    async fn get(&self, id: &str, by: Option<&str>) -> tessera::store::Result<Option<Grant>> {
        dispatch!(self, s => s.get(id, by).await)
    }
    async fn list(&self, q: &ListQuery) -> tessera::store::Result<tessera::store::ListPage> {
        dispatch!(self, s => Store::list(s, q).await)
    }
    async fn sweep(&self, r: Duration, b: u32) -> tessera::store::Result<u64> {
        dispatch!(self, s => s.sweep(r, b).await)
    }
    async fn ping(&self) -> tessera::store::Result<()> {
        dispatch!(self, s => s.ping().await)
    }
    async fn count_live(&self) -> tessera::store::Result<u64> {
        dispatch!(self, s => s.count_live().await)
    }
    fn pool_probe(&self) -> tessera::metrics::PoolProbe {
        dispatch!(self, s => s.pool_probe())
    }
    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        dispatch!(self, s => s.listen(on).await)
    }
    async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

impl CredentialStore for AnyStore {
    async fn read(&self, slot: &Slot) -> Result<Option<Stored>> {
        dispatch!(self, s => s.read(slot).await)
    }
    async fn version(&self, slot: &Slot) -> Result<Option<u64>> {
        dispatch!(self, s => s.version(slot).await)
    }
    async fn create(&self, slot: &Slot, sealed: &Sealed, expires_at: Option<i64>) -> Result<bool> {
        dispatch!(self, s => s.create(slot, sealed, expires_at).await)
    }
    async fn replace(
        &self,
        slot: &Slot,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<i64>,
    ) -> Result<bool> {
        dispatch!(self, s => s.replace(slot, version, sealed, expires_at).await)
    }
    async fn take_lease(&self, slot: &Slot, lease: &str, ttl: Duration) -> Result<Option<Granted>> {
        dispatch!(self, s => s.take_lease(slot, lease, ttl).await)
    }
    async fn lease_state(&self, slot: &Slot) -> Result<Option<LeaseState>> {
        dispatch!(self, s => s.lease_state(slot).await)
    }
    async fn leased(&self, client: &str, lease: &str) -> Result<Option<Leased>> {
        dispatch!(self, s => s.leased(client, lease).await)
    }
    async fn complete(
        &self,
        client: &str,
        lease: &str,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<i64>,
    ) -> Result<bool> {
        dispatch!(self, s => s.complete(client, lease, version, sealed, expires_at).await)
    }
    async fn release(&self, client: &str, lease: &str) -> Result<bool> {
        dispatch!(self, s => s.release(client, lease).await)
    }
    async fn delete(&self, slot: &Slot) -> Result<bool> {
        dispatch!(self, s => s.delete(slot).await)
    }
    async fn list(
        &self,
        client: &str,
        bearer: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Listed>> {
        dispatch!(self, s => CredentialStore::list(s, client, bearer, after, limit).await)
    }
    async fn stale_seals(&self, key: &str, after: &Slot, limit: u32) -> Result<Vec<Resealable>> {
        dispatch!(self, s => s.stale_seals(key, after, limit).await)
    }
    async fn count_stale_seals(&self, key: &str) -> Result<u64> {
        dispatch!(self, s => s.count_stale_seals(key).await)
    }
    async fn reseal(&self, row: &Resealable, sealed: &Sealed) -> Result<bool> {
        dispatch!(self, s => s.reseal(row, sealed).await)
    }
}

impl SealChecks for AnyStore {
    async fn key_check(&self, key_id: &str) -> Result<Option<Vec<u8>>> {
        dispatch!(self, s => s.key_check(key_id).await)
    }
    async fn add_key_check(&self, key_id: &str, sealed: &[u8]) -> Result<bool> {
        dispatch!(self, s => s.add_key_check(key_id, sealed).await)
    }
    async fn sealed_under(&self, key_id: &str, limit: u32) -> Result<Vec<Resealable>> {
        dispatch!(self, s => s.sealed_under(key_id, limit).await)
    }
}
