//! Reads retried on another connection when a pooled one turns out dead.

use std::{future::Future, time::Duration};

use crate::store::{Failure, classify};

/// Runs a read, retrying on another connection when a pooled one turns
/// out dead (the connection failed under the query, not the query
/// itself). A read is safe to repeat: a connection that died in the pool
/// (the database restarted, a proxy timed it out) costs a retry instead of
/// a failed call. Each failure discards one dead connection, so after a
/// restart it may take a few; retrying stops after half a second, when the
/// database itself is more likely gone. Writes are never retried here:
/// their first attempt may have committed.
pub(super) async fn read<T, F>(query: impl Fn() -> F) -> sqlx::Result<T>
where
    F: Future<Output = sqlx::Result<T>>,
{
    let started = std::time::Instant::now();
    loop {
        match query().await {
            Err(err)
                if classify(&err) == Failure::Connection
                    && started.elapsed() < Duration::from_millis(500) => {}
            result => return result,
        }
    }
}
