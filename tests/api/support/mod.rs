//! Test harness: a fresh database per test, the real server on an ephemeral
//! port (in this process or as a child process), keyed clients, and faults
//! to inject (a TCP proxy that can slow or cut the server off from
//! PostgreSQL, row locks that hold calls in flight).
//!
//! Tests wait for events, not for the clock: CI and developers' machines
//! are shared 2-core machines, and a test whose verdict depends on how
//! fast the machine is at that moment turns a good change red
//! (`.ci/stress` runs the suite with every core kept busy).

mod app;
mod db;
mod faults;
pub mod http;
mod process;
mod stores;
pub mod text_log;
pub mod tls;

use std::time::Duration;

pub use app::*;
pub use db::*;
pub use faults::*;
pub use process::*;
pub use stores::*;

/// How long a test waits for an event before calling it lost: far beyond
/// any plausible delay, even with every core of a shared machine busy. A
/// passing test never waits this long; only a failing one does.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `done` holds, for at most [`PATIENCE`]: for effects that
/// follow a reply rather than precede it.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `future`'s output, or a failure naming `what` once [`PATIENCE`] has run
/// out: for a call that must be answered while something else is held
/// (a lock, a full in-flight limit), where hanging is the failure.
pub async fn answered<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

/// A metric's value, as the server's /metrics says: the first line that
/// starts with `prefix` (the name and labels, then a space).
pub async fn metric(app: &TestApp, prefix: &str) -> u64 {
    use http::{Version, get, send};
    let scrape = get("/metrics", Some(app.keys.key("scraper")));
    let metrics = send(app.http_addr, None, Version::H1, scrape).await.text();
    let value = metrics.lines().find_map(|line| line.strip_prefix(prefix));
    value.map_or(0, |v| v.parse().unwrap())
}

/// Waits until the server's PostgreSQL pool has no connection in use but
/// the one its cache's listener holds: every call's connection is back.
pub async fn pool_settles(app: &TestApp, what: &str) {
    const IN_USE: &str = r#"tessera_db_pool_connections{state="in_use"} "#;
    eventually(what, async || metric(app, IN_USE).await <= 1).await;
}

/// Runs `test` with `backend` (see `both_backends!`).
pub async fn on_backend<F: AsyncFnOnce(Backend)>(backend: Backend, test: F) {
    test(backend).await
}
