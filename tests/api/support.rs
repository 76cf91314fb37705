//! Test harness: a fresh database per test, the real server on an ephemeral
//! port (in this process or as a child process), keyed clients, and a TCP
//! proxy that can cut the server off from PostgreSQL.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tessera::{
    app::App,
    config::{Config, DatabaseConfig, LogFormat},
    pb::{self, token_authority_client::TokenAuthorityClient},
    token::ClientKey,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};
use tonic::{
    Request, Response, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

/// `DATABASE_URL`, or the local PostgreSQL the README and CI use.
pub fn postgres_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    tessera::token::os_random(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A database of its own: a fresh PostgreSQL schema or SQLite file, dropped
/// with the value.
pub struct TestDb {
    pub backend: Backend,
    url: String,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let schema = unique("t_");
                let base = postgres_url();
                let pool = sqlx::PgPool::connect(&base)
                    .await
                    .expect("PostgreSQL at DATABASE_URL (see README)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                Self {
                    backend,
                    // The schema names the connections too, so a test can
                    // find (and kill) its own server's connections.
                    url: format!(
                        "{base}{sep}options=-c%20search_path%3D{schema}&application_name={schema}"
                    ),
                    schema: Some(schema),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("tessera.db").display());
                Self {
                    backend,
                    url,
                    schema: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's server connections that sit idle inside a transaction.
    pub async fn connections_in_transaction(&self) -> i64 {
        let schema = self.schema.clone().expect("PostgreSQL only");
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let (stuck,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        stuck
    }

    /// Kills every PostgreSQL connection the servers of this test hold, as
    /// a database restart would.
    pub async fn kill_connections(&self) -> i64 {
        let schema = self.schema.clone().expect("PostgreSQL only");
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let (killed,): (i64,) = sqlx::query_as(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        killed
    }

    /// A URL that reaches this database through `proxy` (PostgreSQL only).
    pub fn url_via(&self, proxy: SocketAddr) -> String {
        let rest = self
            .url
            .split_once('@')
            .expect("user@host in DATABASE_URL")
            .1;
        let path = &rest[rest.find('/').unwrap()..];
        let user = self
            .url
            .split_once("://")
            .unwrap()
            .1
            .split_once('@')
            .unwrap()
            .0;
        format!("postgres://{user}@{proxy}{path}")
    }

    /// Every stored byte of the grants table, one string per row, for
    /// checking that no secret reached the database.
    pub async fn dump(&self) -> Vec<Vec<u8>> {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let rows: Vec<(Vec<u8>,)> =
                    sqlx::query_as("SELECT convert_to(g::text, 'UTF8') || g.sealed_payload || g.token_hash FROM grants g")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                pool.close().await;
                rows.into_iter().map(|r| r.0).collect()
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT CAST(grant_id || token_hint || subject || audience || run_id || scopes \
                     || labels || issued_by AS BLOB) || sealed_payload || token_hash FROM grants",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                pool.close().await;
                rows.into_iter().map(|r| r.0).collect()
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Drop runs outside async; a short-lived runtime on its own thread
        // removes the schema.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&pool)
                        .await;
                        pool.close().await;
                    }
                })
        })
        .join();
    }
}

/// The clients every keyed test server knows.
pub const CLIENTS: &[(&str, &[&str])] = &[
    ("minter", &["mint", "validate", "claim", "revoke"]),
    ("other", &["mint", "validate", "claim", "revoke"]),
    ("proxy", &["validate", "claim"]),
    ("reader", &["validate"]),
    ("ops", &["admin"]),
];

/// A clients file with a fresh key per client (shared by replicas).
#[derive(Clone)]
pub struct Keys {
    keys: Arc<HashMap<&'static str, ClientKey>>,
    pub file: Arc<tempfile::NamedTempFile>,
}

impl Keys {
    pub fn new() -> Self {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut keys = HashMap::new();
        for (id, roles) in CLIENTS {
            let key = ClientKey::generate();
            let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
            writeln!(
                file,
                "[[clients]]\nid = {id:?}\nkey_sha256 = {:?}\nroles = [{}]\n",
                key.sha256_hex(),
                roles.join(", ")
            )
            .unwrap();
            keys.insert(*id, key);
        }
        file.flush().unwrap();
        Self {
            keys: Arc::new(keys),
            file: Arc::new(file),
        }
    }

    pub fn key(&self, client: &str) -> &str {
        self.keys[client].expose()
    }

    pub fn all(&self) -> Vec<String> {
        self.keys.values().map(|k| k.expose().to_owned()).collect()
    }
}

pub struct Options {
    pub keyed: bool,
    pub default_ttl: &'static str,
    pub max_ttl: &'static str,
    pub retention: &'static str,
    pub sweep_interval: &'static str,
    pub cache_max_age: &'static str,
    pub max_in_flight: usize,
    pub max_in_flight_per_client: Option<usize>,
    pub body_timeout: &'static str,
    pub shutdown_grace: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keyed: true,
            default_ttl: "15m",
            max_ttl: "30d",
            retention: "24h",
            sweep_interval: "60s",
            cache_max_age: "2s",
            max_in_flight: 512,
            max_in_flight_per_client: None,
            body_timeout: "3s",
            shutdown_grace: "20s",
        }
    }
}

pub fn config(url: &str, clients: Option<PathBuf>, options: &Options) -> Config {
    let d = |text| tessera::config::parse_duration(text).unwrap();
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseConfig {
            url: url.to_owned(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        },
        limits: tessera::config::Limits {
            max_in_flight: options.max_in_flight,
            max_in_flight_per_client: options.max_in_flight_per_client,
            body_timeout: d(options.body_timeout),
            request_timeout: Duration::from_secs(10),
            shutdown_grace: d(options.shutdown_grace),
            http2_max_concurrent_streams: 256,
            http2_max_header_list_size: 16 * 1024,
            http2_max_pending_resets: 32,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
        },
        clients,
        default_ttl: d(options.default_ttl),
        max_ttl: d(options.max_ttl),
        retention: d(options.retention),
        sweep_interval: d(options.sweep_interval),
        cache_max_age: d(options.cache_max_age),
        cache_capacity: 10_000,
        audit_key: None,
        log_format: LogFormat::Text,
        no_migrate: false,
    }
}

/// A server running in this process, and clients for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub keys: Keys,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        Self::start(TestDb::new(backend).await, Keys::new(), options).await
    }

    /// Starts a server on `db` (a restart, when `db` served before).
    pub async fn start(db: TestDb, keys: Keys, options: Options) -> Self {
        let clients = options.keyed.then(|| keys.file.path().to_owned());
        let config = config(db.url(), clients, &options);
        Self::start_config(db, keys, config).await
    }

    pub async fn start_config(db: TestDb, keys: Keys, config: Config) -> Self {
        // Quiet unless asked: `TEST_LOG=1 cargo test NAME -- --nocapture`.
        if std::env::var_os("TEST_LOG").is_some() {
            let _guard = std::mem::ManuallyDrop::new(tessera::telemetry::init(LogFormat::Text));
        }
        let app = App::build(config).await.expect("server starts");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            channel: channel(addr).await,
            keys,
            stop: Some(stop),
            server: Some(server),
            db,
        }
    }

    /// A server on a fresh PostgreSQL schema that it reaches through `proxy`.
    pub async fn spawn_behind(proxy: &Proxy) -> Self {
        let db = TestDb::new(Backend::Postgres).await;
        let keys = Keys::new();
        let clients = Some(keys.file.path().to_owned());
        let config = config(&db.url_via(proxy.addr), clients, &Options::default());
        Self::start_config(db, keys, config).await
    }

    /// Another server on the same database, with the same clients.
    pub async fn replica(&self, options: Options) -> Self {
        let db = TestDb {
            backend: self.db.backend,
            url: self.db.url.clone(),
            schema: None, // the first server's TestDb cleans up
            _dir: None,
        };
        Self::start(db, self.keys.clone(), options).await
    }

    /// Stops the server gracefully and hands back its database and keys.
    pub async fn stop(mut self) -> (TestDb, Keys) {
        self.shutdown().await;
        let backend = self.db.backend;
        let db = std::mem::replace(
            &mut self.db,
            TestDb {
                backend,
                url: String::new(),
                schema: None,
                _dir: None,
            },
        );
        let keys = std::mem::replace(&mut self.keys, Keys::new());
        (db, keys)
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub fn client(&self) -> TokenAuthorityClient<Channel> {
        TokenAuthorityClient::new(self.channel.clone())
    }

    /// A request carrying `client`'s key ("" = no key at all).
    pub fn req<T>(&self, client: &str, message: T) -> Request<T> {
        if client.is_empty() {
            Request::new(message)
        } else {
            keyed(self.keys.key(client), message)
        }
    }

    pub async fn mint(&self, client: &str, m: pb::MintRequest) -> Result<pb::MintResponse, Status> {
        self.client()
            .mint(self.req(client, m))
            .await
            .map(Response::into_inner)
    }

    pub async fn validate(
        &self,
        client: &str,
        m: pb::ValidateRequest,
    ) -> Result<pb::ValidateResponse, Status> {
        self.client()
            .validate(self.req(client, m))
            .await
            .map(Response::into_inner)
    }

    pub async fn claim(
        &self,
        client: &str,
        m: pb::ClaimRequest,
    ) -> Result<pb::ClaimResponse, Status> {
        self.client()
            .claim(self.req(client, m))
            .await
            .map(Response::into_inner)
    }

    pub async fn revoke(
        &self,
        client: &str,
        m: pb::RevokeRequest,
    ) -> Result<pb::RevokeResponse, Status> {
        self.client()
            .revoke(self.req(client, m))
            .await
            .map(Response::into_inner)
    }

    pub async fn get(&self, client: &str, grant_id: &str) -> Result<pb::Grant, Status> {
        let m = pb::GetGrantRequest {
            grant_id: grant_id.to_owned(),
        };
        let response = self.client().get_grant(self.req(client, m)).await?;
        Ok(response.into_inner().grant.unwrap())
    }

    pub async fn list(
        &self,
        client: &str,
        m: pb::ListGrantsRequest,
    ) -> Result<pb::ListGrantsResponse, Status> {
        self.client()
            .list_grants(self.req(client, m))
            .await
            .map(Response::into_inner)
    }

    /// Every grant an admin can see, live or not.
    pub async fn count_all(&self) -> usize {
        let m = pb::ListGrantsRequest {
            include_inactive: true,
            page_size: 1000,
            ..Default::default()
        };
        self.list("ops", m).await.unwrap().grants.len()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A request with `authorization: Bearer <key>`.
pub fn keyed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {key}")).unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("server accepts connections")
}

/// A Mint request with the fields most tests need.
pub fn mint_req(subject: &str) -> pb::MintRequest {
    pb::MintRequest {
        subject: subject.to_owned(),
        ..Default::default()
    }
}

pub fn check(token: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        token: token.to_owned(),
        ..Default::default()
    }
}

pub fn claim(token: &str) -> pb::ClaimRequest {
    pb::ClaimRequest {
        token: token.to_owned(),
        ..Default::default()
    }
}

pub fn revoke(target: pb::revoke_request::Target) -> pb::RevokeRequest {
    pb::RevokeRequest {
        target: Some(target),
        reason: pb::RevokeReason::Manual as i32,
    }
}

/// The `tessera` binary as a child process, with its log lines collected.
pub struct Process {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    pub log: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
}

impl Process {
    pub async fn spawn(url: &str, clients: &std::path::Path, rust_log: &str) -> Self {
        Self::spawn_with(url, clients, rust_log, &[]).await
    }

    pub async fn spawn_with(
        url: &str,
        clients: &std::path::Path,
        rust_log: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(extra)
            .arg("--database-url")
            .arg(url)
            .arg("--clients")
            .arg(clients)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tessera binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("server logs within 30 s")
                .unwrap()
                .expect("server exited before serving");
            log.lock().unwrap().push(line.clone());
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "serving" {
                break entry["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        let sink = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            addr,
            child,
            log,
            reader,
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns every log line.
    pub async fn terminate(self) -> Vec<String> {
        self.terminate_within(Duration::from_secs(20)).await.1
    }

    /// Sends SIGTERM; returns how long the process took to exit cleanly,
    /// and every log line.
    pub async fn terminate_within(mut self, limit: Duration) -> (Duration, Vec<String>) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: kill(1) via the shell keeps the test free of libc.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = std::time::Instant::now();
        let exit = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("exits in time after SIGTERM")
            .unwrap();
        let took = start.elapsed();
        assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
        let _ = (&mut self.reader).await;
        (took, self.log.lock().unwrap().clone())
    }
}

/// A TCP proxy in front of PostgreSQL that a test can slow down, cut (every
/// open connection dies, new ones are refused) and restore.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    /// Added to every chunk of bytes, each way, in microseconds.
    latency_us: Arc<std::sync::atomic::AtomicU64>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    open: bool,
    links: Vec<JoinHandle<()>>,
}

/// Copies `from` to `to`, holding each chunk for the current latency.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_us: Arc<std::sync::atomic::AtomicU64>,
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
        let (shared, latency) = (state.clone(), latency_us.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                if !state.open {
                    continue; // dropped: the connection is reset at once
                }
                let latency = latency.clone();
                state.links.push(tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, latency.clone()),
                        pump(out_read, in_write, latency),
                    );
                }));
            }
        });
        Self {
            addr,
            state,
            latency_us,
            accept,
        }
    }

    /// Delays every chunk of bytes, each way, by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .store(micros, std::sync::atomic::Ordering::Relaxed);
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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
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

/// The upstream address of `DATABASE_URL`.
pub async fn postgres_addr() -> SocketAddr {
    let url = postgres_url();
    let host_port = url
        .split_once('@')
        .unwrap()
        .1
        .split(['/', '?'])
        .next()
        .unwrap()
        .to_owned();
    let with_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5432")
    };
    tokio::net::lookup_host(with_port)
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// Waits until `done` holds, for at most 5 s: for effects that follow a
/// reply rather than precede it.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
