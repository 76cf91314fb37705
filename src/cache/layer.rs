//! The cache as a layer over the store: the domain asks the store, and
//! this layer answers BOUNDED lookups from memory when it may, and forgets
//! what every change it passes on ends.
//!
//! Forgetting happens here, right after the database answered, so that no
//! path that changes a grant (a claim, a revoke, a rotation, a replay's
//! run revocation) can forget to: this replica sees its own changes at
//! once, and others learn of them from [`Store::listen`].

use std::{sync::Arc, time::Duration};

use super::GrantCache;
use crate::{
    grant::{Grant, Micros, RevokeReason},
    metrics::PoolProbe,
    store::{
        Delegation, Invalidation, Keyed, ListPage, ListQuery, Lookup, NewGrant, Prior, Result,
        Revision, RevokeTarget, Revoked, Rotated, Rotation, Store,
    },
    token::TokenHash,
};

/// `inner`, with this replica's memory of grants in front of it; with no
/// cache (`--cache-capacity 0`) every call goes straight through.
#[derive(Clone)]
pub struct Cached<S> {
    inner: S,
    cache: Option<Arc<GrantCache>>,
}

impl<S> Cached<S> {
    pub fn new(inner: S, cache: Option<Arc<GrantCache>>) -> Self {
        Self { inner, cache }
    }

    fn forget(&self, what: impl FnOnce(&GrantCache)) {
        if let Some(cache) = &self.cache {
            what(cache);
        }
    }
}

impl<S: Store> Store for Cached<S> {
    async fn migrate(&self) -> anyhow::Result<()> {
        self.inner.migrate().await
    }

    async fn insert(&self, grant: &NewGrant) -> Result<Grant> {
        self.inner.insert(grant).await
    }

    async fn find(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        self.inner.find(hash).await
    }

    /// From memory when the cache has the answer (a grant, or that there is
    /// none); else from the database (a standby within the bound, if
    /// there are some), keeping what it said unless the grant changed
    /// meanwhile, for what is left of the bound.
    async fn find_recent(&self, hash: &TokenHash) -> Result<Option<Lookup>> {
        let Some(cache) = &self.cache else {
            return Ok(self.inner.find_replica(hash).await?.0);
        };
        let ticket = match cache.get(hash) {
            Ok(answer) => return Ok(answer),
            Err(ticket) => ticket,
        };
        let found = self.inner.find_replica(hash).await;
        if let Some(ticket) = ticket {
            match &found {
                Ok((found, age)) => cache.fill_aged(*hash, found.as_ref(), ticket, *age),
                Err(_) => cache.abandon(hash, ticket),
            }
        }
        Ok(found?.0)
    }

    async fn find_replica(&self, hash: &TokenHash) -> Result<(Option<Lookup>, Duration)> {
        self.inner.find_replica(hash).await
    }

    /// Never from memory: the cache cannot tell how fresh its entries are
    /// against a revision.
    async fn find_at(&self, hash: &TokenHash, revision: &Revision) -> Result<Option<Lookup>> {
        self.inner.find_at(hash, revision).await
    }

    async fn revision(&self) -> Result<Option<Revision>> {
        self.inner.revision().await
    }

    async fn get_recent(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        self.inner.get_recent(grant_id, issued_by).await
    }

    async fn list_recent(&self, query: &ListQuery) -> Result<ListPage> {
        self.inner.list_recent(query).await
    }

    async fn find_keyed(
        &self,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Option<(Lookup, Option<Prior>)>> {
        self.inner.find_keyed(hash, client_id, key_hash).await
    }

    async fn touch(&self, touches: &[(String, Micros)]) -> Result<()> {
        self.inner.touch(touches).await?;
        self.forget(|cache| cache.touched(touches));
        Ok(())
    }

    /// This replica's BOUNDED answers see the new use count at once.
    async fn consume(&self, grant_id: &str) -> Result<Option<(Grant, Vec<u8>)>> {
        let taken = self.inner.consume(grant_id).await?;
        if taken.is_some() {
            self.forget(|cache| cache.invalidate_grant(grant_id));
        }
        Ok(taken)
    }

    async fn consume_keyed(
        &self,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Keyed> {
        let keyed = self
            .inner
            .consume_keyed(grant_id, client_id, key_hash)
            .await?;
        if let Keyed::Consumed(..) = keyed {
            self.forget(|cache| cache.invalidate_grant(grant_id));
        }
        Ok(keyed)
    }

    async fn revoke(
        &self,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: RevokeReason,
    ) -> Result<Revoked> {
        let revoked = self.inner.revoke(target, issued_by, reason).await?;
        self.forget(|cache| {
            match target {
                RevokeTarget::Token(hash) => cache.invalidate(hash),
                RevokeTarget::GrantId(id) => cache.invalidate_grant(id),
                RevokeTarget::RunId(id) => cache.invalidate_matching(|g| g.run_id == *id),
                RevokeTarget::Subject(id) => cache.invalidate_matching(|g| g.subject == *id),
            }
            for hash in &revoked.descendants {
                cache.invalidate(hash);
            }
        });
        Ok(revoked)
    }

    async fn payload(&self, grant_id: &str) -> Result<Option<Vec<u8>>> {
        self.inner.payload(grant_id).await
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Option<Rotated>> {
        let rotated = self.inner.rotate(rotation).await?;
        if let Some(rotated) = &rotated {
            self.forget(|cache| {
                cache.invalidate_grant(&rotation.grant_id);
                for hash in &rotated.descendants {
                    cache.invalidate(hash);
                }
            });
        }
        Ok(rotated)
    }

    async fn delegate(&self, child: &Delegation) -> Result<Option<Grant>> {
        self.inner.delegate(child).await
    }

    async fn count_replay(&self, grant_id: &str) -> Result<Option<u64>> {
        self.inner.count_replay(grant_id).await
    }

    async fn get(&self, grant_id: &str, issued_by: Option<&str>) -> Result<Option<Grant>> {
        self.inner.get(grant_id, issued_by).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        self.inner.list(query).await
    }

    async fn sweep(&self, retention: Duration, batch: u32) -> Result<u64> {
        self.inner.sweep(retention, batch).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn count_live(&self) -> Result<u64> {
        self.inner.count_live().await
    }

    fn pool_probe(&self) -> PoolProbe {
        self.inner.pool_probe()
    }

    /// The cache hears every report first, then `on`.
    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        let cache = self.cache.clone();
        let heard = move |event| {
            if let Some(cache) = &cache {
                cache.apply(event);
            }
            on(event);
        };
        self.inner.listen(heard).await;
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
