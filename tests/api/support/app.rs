//! The real server in this process, its clients file, and request builders.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tessera::{
    app::App,
    config::{Config, DatabaseConfig, LogFormat},
    pb::{
        self, credentials_client::CredentialsClient, token_authority_client::TokenAuthorityClient,
    },
    token::ClientKey,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Request, Response, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use super::{Backend, POOL_SIZE, Proxy, TestDb};

/// The clients every keyed test server knows.
pub const CLIENTS: &[(&str, &[&str])] = &[
    (
        "minter",
        &["mint", "validate", "claim", "revoke", "credentials"],
    ),
    (
        "other",
        &["mint", "validate", "claim", "revoke", "credentials"],
    ),
    ("proxy", &["validate", "claim"]),
    ("reader", &["validate"]),
    ("ops", &["admin"]),
    // An operator who may also mint and claim, but holds no credentials.
    ("root", &["admin", "mint", "claim"]),
    ("scraper", &["metrics"]),
    ("mcp", &["validate", "claim"]),
];

/// The resource URI each resource server among [`CLIENTS`] declares, as
/// written in the clients file (not canonical, so that the tests see it
/// canonicalised); [`MCP_RESOURCE`] is its canonical form.
pub const RESOURCES: &[(&str, &str)] = &[("mcp", "HTTPS://MCP.example.com/mcp/")];
pub const MCP_RESOURCE: &str = "https://mcp.example.com/mcp";

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
            let resource = RESOURCES
                .iter()
                .find(|(client, _)| client == id)
                .map(|(_, uri)| format!("resource = {uri:?}\n"))
                .unwrap_or_default();
            writeln!(
                file,
                "[[clients]]\nid = {id:?}\nkey_sha256 = {:?}\nroles = [{}]\n{resource}",
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
    pub tls: tessera::config::TlsConfig,
    pub http_listen: Option<&'static str>,
    /// `--seal-key`: the Credentials service is off without one.
    pub seal_key: Option<PathBuf>,
    pub request_head_timeout: &'static str,
    pub idle_timeout: &'static str,
    pub max_connections: Option<usize>,
    /// `--database-read-url`.
    pub read_url: Option<String>,
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
            tls: Default::default(),
            http_listen: None,
            seal_key: None,
            request_head_timeout: "10s",
            idle_timeout: "60s",
            max_connections: None,
            read_url: None,
        }
    }
}

/// Statement and request timeouts: calls a test holds in flight on purpose
/// (behind a row lock) stay held however slow the machine, until it lets go.
const HELD_CALLS_OUTLAST: Duration = Duration::from_secs(300);

pub fn config(url: &str, clients: Option<PathBuf>, options: &Options) -> Config {
    let d = |text| tessera::config::parse_duration(text).unwrap();
    Config {
        listen: "127.0.0.1:0".to_owned(),
        http_listen: options.http_listen.map(str::to_owned),
        tls: options.tls.clone(),
        issuer: None,
        database: DatabaseConfig {
            url: url.to_owned(),
            read_url: options.read_url.clone(),
            read_max_lag: Duration::ZERO,
            max_connections: POOL_SIZE,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: HELD_CALLS_OUTLAST,
        },
        limits: tessera::config::Limits {
            max_in_flight: options.max_in_flight,
            max_in_flight_per_client: options.max_in_flight_per_client,
            body_timeout: d(options.body_timeout),
            request_timeout: HELD_CALLS_OUTLAST,
            shutdown_grace: d(options.shutdown_grace),
            http2_max_concurrent_streams: 256,
            http2_max_header_list_size: 16 * 1024,
            http2_max_pending_resets: 32,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            request_head_timeout: d(options.request_head_timeout),
            idle_timeout: d(options.idle_timeout),
            max_connections: options.max_connections,
        },
        clients,
        default_ttl: d(options.default_ttl),
        max_ttl: d(options.max_ttl),
        max_delegation_depth: 4,
        retention: d(options.retention),
        sweep_interval: d(options.sweep_interval),
        cache_max_age: d(options.cache_max_age),
        cache_capacity: 10_000,
        audit_key: None,
        seal_key: options.seal_key.clone(),
        log_format: LogFormat::Text,
        no_migrate: false,
    }
}

/// A server running in this process, and clients for it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Where the HTTP face listens: `addr`, unless `--http-listen` put it apart.
    pub http_addr: SocketAddr,
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
        let tls = config.tls.enabled();
        let app = App::build(config).await.expect("server starts");
        let addr = app.local_addr();
        let http_addr = app.http_addr().unwrap_or(addr);
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        // Over TLS, tests make channels of their own; this one is never used.
        let channel = match tls {
            true => Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy(),
            false => channel(addr).await,
        };
        Self {
            addr,
            http_addr,
            channel,
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
        Self::start(self.db.shared(), self.keys.clone(), options).await
    }

    /// Stops the server gracefully and hands back its database and keys.
    pub async fn stop(mut self) -> (TestDb, Keys) {
        self.shutdown().await;
        let shared = self.db.shared();
        let db = std::mem::replace(&mut self.db, shared);
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

    pub fn credentials(&self) -> CredentialsClient<Channel> {
        CredentialsClient::new(self.channel.clone())
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

/// A `--seal-key` file of `(key id, 64 hex digits)` lines, the first current.
pub fn seal_key_file(keys: &[(&str, &str)]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for (id, key) in keys {
        writeln!(file, "{id}:{key}").unwrap();
    }
    file.flush().unwrap();
    file
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
