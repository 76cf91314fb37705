//! What the store takes and gives besides grants ([`crate::grant`]):
//! new grants, lookups, revocations, pages, and the listener's reports.
//! Plain data; the rules live in [`crate::rules`], the statements in the
//! stores.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    grant::{CredentialRef, Grant, Micros},
    token::TokenHash,
};

/// What the store's listener reports (see [`Store::listen`](super::Store::listen)): the
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
