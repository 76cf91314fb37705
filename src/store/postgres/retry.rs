//! Reads retried on another connection when a pooled one turns out dead.

use std::{future::Future, time::Duration};

/// The connection failed under the query (not the query itself).
fn is_broken_connection(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// Runs a read, retrying on another connection when a pooled one turns
/// out dead. A read is safe to repeat: a connection that died in the
/// pool (the database restarted, a proxy timed it out) costs a retry
/// instead of a failed call. Each failure discards one dead connection,
/// so after a restart it may take a few; retrying stops after half a
/// second, when the database itself is more likely gone. Writes are
/// never retried here: their first attempt may have committed.
pub(super) async fn read<T, F>(query: impl Fn() -> F) -> std::result::Result<T, sqlx::Error>
where
    F: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let started = std::time::Instant::now();
    loop {
        match query().await {
            Err(err)
                if is_broken_connection(&err) && started.elapsed() < Duration::from_millis(500) => {
            }
            result => return result,
        }
    }
}
