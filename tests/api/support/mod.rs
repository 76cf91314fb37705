//! Test harness: a fresh database per test, the real server on an ephemeral
//! port (in this process or as a child process), keyed clients, and faults
//! to inject (a TCP proxy that can slow or cut the server off from
//! PostgreSQL, row locks that hold calls in flight).

mod app;
mod db;
mod faults;
pub mod http;
mod process;
pub mod text_log;
pub mod tls;

use std::time::Duration;

pub use app::*;
pub use db::*;
pub use faults::*;
pub use process::*;

/// Waits until `done` holds, for at most 5 s: for effects that follow a
/// reply rather than precede it.
pub async fn eventually(what: &str, done: impl AsyncFnMut() -> bool) {
    eventually_within(what, Duration::from_secs(5), done).await
}

/// [`eventually`] with a bound of its own.
pub async fn eventually_within(what: &str, bound: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + bound;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
