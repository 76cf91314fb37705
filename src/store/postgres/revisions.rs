//! Revisions after writes (see [`crate::store::Revision`]), read from the
//! primary once for many writes.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;

use super::replica::PRIMARY_AT;
use crate::store::Revision;

/// The primary's position after writes, read once for every write that
/// had finished when the reading began: under load, one round trip
/// serves many writes.
#[derive(Default)]
pub(super) struct Revisions {
    /// How many writes have asked so far.
    asked: AtomicU64,
    /// The last reading, and how many writes had asked when it began.
    last: tokio::sync::Mutex<(u64, Option<Revision>)>,
}

impl Revisions {
    pub async fn after_write(&self, primary: &PgPool) -> Result<Revision, sqlx::Error> {
        // A write asks after its commit; a reading that began after it
        // asked (so once `asked` counts it) is at or past its commit.
        let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.last.lock().await;
        if let (covered, Some(revision)) = *last
            && covered >= mine
        {
            return Ok(revision);
        }
        let covered = self.asked.load(Ordering::SeqCst);
        let at: String = sqlx::query_scalar(PRIMARY_AT).fetch_one(primary).await?;
        let revision: Revision = at
            .parse()
            .map_err(|err: &str| sqlx::Error::Decode(err.into()))?;
        *last = (covered, Some(revision));
        Ok(revision)
    }
}
