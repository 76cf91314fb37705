//! The seal key checks: one row per `--seal-key` key id, holding a fixed
//! text sealed under the first key that used that id (see
//! [`crate::credentials::keycheck`] for why). A row is written once, by
//! whichever server gets there first, and never changed: racing servers
//! each insert with `ON CONFLICT DO NOTHING` and then read back the one
//! row that won.

use std::future::Future;

use super::{super::Result, Resealable};

/// Persistence for the key checks. Every method is one statement.
pub trait SealChecks: Clone + Send + Sync + 'static {
    /// The check value stored for `key_id`, if any.
    fn key_check(&self, key_id: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Stores `sealed` as `key_id`'s check value unless one is there
    /// already; whether it did.
    fn add_key_check(
        &self,
        key_id: &str,
        sealed: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` credentials sealed under `key_id`, least recently
    /// written first.
    fn sealed_under(
        &self,
        key_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Resealable>>> + Send;
}
