//! Faults a test can cause: a proxy that slows or cuts PostgreSQL, row
//! locks that hold calls in flight.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tessera::pb;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tonic::{Response, Status};

use super::{TestApp, TestDb, claim, mint_req};

/// A TCP proxy in front of PostgreSQL that a test can slow down, cut (every
/// open connection dies, new ones are refused) and restore.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    /// Added to every chunk of bytes, each way, in microseconds.
    latency_us: Arc<std::sync::atomic::AtomicU64>,
    /// While true, no byte goes through either way (nothing is lost).
    held: Arc<tokio::sync::watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    open: bool,
    links: Vec<JoinHandle<()>>,
}

/// Copies `from` to `to`, holding each chunk for the current latency, and
/// for as long as the proxy is held.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_us: Arc<std::sync::atomic::AtomicU64>,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let delay = latency_us.load(std::sync::atomic::Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if held.wait_for(|held| !held).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            open: true,
            links: Vec::new(),
        }));
        let latency_us = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let held = Arc::new(tokio::sync::watch::Sender::new(false));
        let (shared, latency, hold) = (state.clone(), latency_us.clone(), held.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                if !state.open {
                    continue; // dropped: the connection is reset at once
                }
                let latency = latency.clone();
                let hold = hold.clone();
                state.links.push(tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, latency.clone(), hold.subscribe()),
                        pump(out_read, in_write, latency, hold.subscribe()),
                    );
                }));
            }
        });
        Self {
            addr,
            state,
            latency_us,
            held,
            accept,
        }
    }

    /// Delays every chunk of bytes, each way, by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .store(micros, std::sync::atomic::Ordering::Relaxed);
    }

    /// Holds every byte, each way, until [`Proxy::release`]: the database
    /// answers nothing meanwhile, however long the test takes to look.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Kills every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.open = false;
        for link in state.links.drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.state.lock().unwrap().open = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Holds a row lock on every grant of `run_id` from another session, so
/// that claims of them wait (calls held in flight on purpose). Dropping the
/// returned transaction releases them.
pub struct RunLock {
    pub tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The backend holding the lock.
    pid: i32,
}

pub async fn lock_run(db: &TestDb, run_id: &str) -> RunLock {
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT grant_id FROM grants WHERE run_id = $1 FOR UPDATE")
        .bind(run_id.to_owned())
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    RunLock { tx, pid }
}

/// Holds `table` in SHARE mode from another session: every write to it
/// waits (with its statement in flight) until the returned transaction ends.
pub async fn lock_table(db: &TestDb, table: &str) -> RunLock {
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {table} IN SHARE MODE"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    RunLock { tx, pid }
}

/// `n` claims by `client` held in flight: a grant of its own run is minted,
/// its row locked, and the claims wait on the lock until it is released.
pub struct HeldClaims {
    pub lock: RunLock,
    calls: Vec<JoinHandle<Result<Response<pb::ClaimResponse>, Status>>>,
}

impl HeldClaims {
    pub async fn start(app: &TestApp, client: &str, n: i64) -> Self {
        let held = pb::MintRequest {
            run_id: "held".into(),
            ..mint_req("u")
        };
        let token = app.mint("minter", held).await.unwrap().token;
        let lock = lock_run(&app.db, "held").await;
        let calls = (0..n)
            .map(|_| {
                let mut grpc = app.client();
                let request = app.req(client, claim(&token));
                tokio::spawn(async move { grpc.claim(request).await })
            })
            .collect();
        wait_for_lock_waiters(&app.db, &lock, n).await;
        Self { lock, calls }
    }

    /// Releases the lock; every held claim then succeeds.
    pub async fn release(self) {
        self.lock.tx.rollback().await.unwrap();
        for call in self.calls {
            assert!(call.await.unwrap().unwrap().into_inner().claimed);
        }
    }
}

/// Waits until `n` sessions wait on `lock` (other tests' waits do not count).
pub async fn wait_for_lock_waiters(db: &TestDb, lock: &RunLock, n: i64) {
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let deadline = std::time::Instant::now() + super::PATIENCE;
    loop {
        // Waiters queue behind each other: count the whole chain.
        let (waiting,): (i64,) = sqlx::query_as(
            "WITH RECURSIVE blocked(pid) AS ( \
               SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) \
               UNION \
               SELECT a.pid FROM pg_stat_activity a JOIN blocked b ON b.pid = ANY(pg_blocking_pids(a.pid))) \
             SELECT count(*) FROM blocked",
        )
        .bind(lock.pid)
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting >= n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} of {n} calls waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close().await;
}
