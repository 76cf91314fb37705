//! Start-up and the server's lifetime: open the store, bind, serve gRPC and
//! the HTTP face (in the clear or over TLS), run the background tasks, stop
//! cleanly.

mod backend;
mod tasks;

pub use backend::Backend;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
};

use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinHandle,
};
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::Layer;
use tracing::{info, warn};

use crate::{
    audit::Audit,
    authority::{Authority, Policy},
    cache::{Cached, GrantCache},
    clients::{Clients, Directory},
    config::{Config, DatabaseConfig, Limits},
    credentials::{Credentials, Keyring},
    door::{Admission, Door},
    grpc, http,
    metrics::Metrics,
    net::{self, Serving, tls::Tls},
    observe::ObserveLayer,
    pb,
    store::{CredentialStore, Store},
};

use tasks::{Readiness, Reloadable};

/// The health service name that reports the process, whatever the database.
pub const LIVENESS: &str = "liveness";

/// A bound, ready-to-serve Tessera. `build` then `run_until`.
pub struct App {
    config: Config,
    listeners: Vec<TcpListener>,
    /// `--http-listen`'s own listeners, if the HTTP face is apart.
    http_listeners: Option<Vec<TcpListener>>,
    clients: Arc<Directory>,
    tls: Option<Arc<Tls>>,
    backend: Backend,
    /// `--seal-key`'s keys; `None`: the Credentials service is off.
    keyring: Option<Arc<Keyring>>,
}

impl App {
    /// Checks the configuration, loads the clients and TLS files, opens the
    /// store, applies migrations (unless told not to) and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        let clients = match &config.clients {
            Some(path) => Directory::load(path)?,
            // The dev-mode warning waits for the start line: printed here,
            // it would precede every start-up error as if it were the cause.
            None => Directory::new(Clients::dev()),
        };
        let tls = Tls::load(&config.tls)?;
        let keyring = match &config.seal_key {
            Some(path) => Some(Arc::new(Keyring::load(path)?)),
            None => None,
        };
        // Standbys may lag the primary by what BOUNDED answers may.
        let database = DatabaseConfig {
            read_max_lag: config.cache_max_age,
            ..config.database.clone()
        };
        let backend = Backend::connect(&database).await?;
        if config.no_migrate {
            backend.ensure_migrated().await?;
        } else {
            backend.migrate().await?;
        }
        if let (Some(keyring), Some(path)) = (&keyring, &config.seal_key) {
            backend.prove_keys(keyring, path).await?;
        }
        let listeners = net::bind("--listen", &config.listen).await?;
        config.check_exposure("--listen", &net::local_addrs(&listeners))?;
        let http_listeners = match &config.http_listen {
            Some(addr) => {
                let listeners = net::bind("--http-listen", addr).await?;
                config.check_exposure("--http-listen", &net::local_addrs(&listeners))?;
                Some(listeners)
            }
            None => None,
        };
        Ok(Self {
            config,
            listeners,
            http_listeners,
            clients: Arc::new(clients),
            tls,
            backend,
            keyring,
        })
    }

    /// The first bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        net::local_addrs(&self.listeners)[0]
    }

    /// Where the HTTP face listens when it is apart from gRPC.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listeners
            .as_ref()
            .map(|listeners| net::local_addrs(listeners)[0])
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the
    /// calls in flight and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres(ref store) => serve(store.clone(), self, shutdown).await,
            Backend::Sqlite(ref store) => serve(store.clone(), self, shutdown).await,
        }
    }

    /// `iss`: `--issuer`, or this server's own URL.
    fn issuer(&self) -> String {
        match &self.config.issuer {
            Some(issuer) => issuer.clone(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let addr = self.http_addr().unwrap_or_else(|| self.local_addr());
                format!("{scheme}://{addr}")
            }
        }
    }
}

async fn serve<S: Store + CredentialStore + Clone>(
    store: S,
    app: App,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let config = &app.config;
    let metrics = Metrics::new();
    metrics.probe_pool(store.pool_probe());
    let clients = app.clients.get();
    metrics
        .clients
        .set(i64::try_from(clients.len()).unwrap_or(i64::MAX));
    let cache = (config.cache_capacity > 0).then(|| {
        Arc::new(GrantCache::new(
            config.cache_max_age,
            config.cache_capacity,
            metrics.cache.clone(),
        ))
    });
    let credentials = Arc::new(Credentials::new(
        store.clone(),
        app.keyring.clone(),
        metrics.clone(),
    ));
    // The domain sees the store through the cache; everything else (the
    // sweeper, readiness, credentials) talks to the database directly.
    let cached = Cached::new(store.clone(), cache.clone());
    let authority = Arc::new(
        Authority::new(
            cached.clone(),
            Policy {
                default_ttl: config.default_ttl,
                max_ttl: config.max_ttl,
                max_delegation_depth: config.max_delegation_depth,
            },
            Audit::new(config.audit_key()?),
            metrics.clone(),
        )
        .with_secrets(credentials.clone()),
    );
    let (reporter, health) = tonic_health::server::health_reporter();
    let readiness = Readiness {
        reporter: reporter.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    readiness.set(false).await;
    // Liveness answers for the process, not the database: an outage must
    // not make Kubernetes restart every replica.
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;

    let (stop, stopped) = watch::channel(());
    let reloadable = Reloadable {
        clients: config
            .clients
            .clone()
            .map(|path| (path, app.clients.clone())),
        tls: app.tls.clone(),
    };
    let mut background = vec![
        tokio::spawn(tasks::watch_readiness(
            store.clone(),
            readiness.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tasks::sweep(
            store.clone(),
            config.retention,
            config.sweep_interval,
            metrics.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tasks::record_usage(authority.clone(), stopped.clone())),
        tokio::spawn(tasks::count_live(
            store.clone(),
            metrics.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tasks::reload(reloadable, metrics.clone(), stopped.clone())),
    ];
    if cache.is_some() {
        background.push(tokio::spawn(tasks::invalidate(
            cached,
            metrics.clone(),
            stopped,
        )));
    }

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Each builder adds only its own version; register both so that
            // `grpcurl list` shows v1 and v1alpha whichever it speaks.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let limits = &config.limits;
    let door = Arc::new(Door::new(
        app.clients.clone(),
        admission(limits),
        metrics.clone(),
    ));
    let face = http::router(Arc::new(http::Face {
        authority: authority.clone(),
        door: door.clone(),
        metrics: metrics.clone(),
        issuer: app.issuer(),
        ready: readiness.ready.clone(),
    }));
    let mut routes = Routes::builder();
    routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(grpc::server(authority.clone(), door.clone()))
        .add_service(grpc::credentials_server(credentials, door));
    let mut grpc_routes = routes.routes();
    let http_apart = app.http_listeners.is_some();
    if !http_apart {
        let router = grpc_routes.axum_router_mut();
        *router = std::mem::take(router).merge(face.clone());
    }
    let grpc_routes = with_fallback(grpc_routes);

    // One cap for every listener: descriptors run out process-wide.
    let max_connections = limits.connection_cap(config.database.max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    info!(
        addr = %app.local_addr(),
        http = %app.http_addr().map_or("beside gRPC".to_owned(), |addr| addr.to_string()),
        tls = if app.tls.as_ref().is_some_and(|tls| tls.mutual()) { "mutual" } else if app.tls.is_some() { "on" } else { "off" },
        clients = clients.len(),
        dev = clients.is_dev(),
        credentials = if app.keyring.is_some() { "on" } else { "off (no --seal-key)" },
        store = app.backend.kind(),
        database = %crate::config::redact_url(&config.database.url),
        max_connections,
        "serving"
    );
    if clients.is_dev() {
        warn!("no clients file: dev mode, every call is allowed as client `dev`");
    }
    drop(clients);

    // Shutdown: readiness turns NOT_SERVING first, then the servers stop
    // accepting and let calls in flight finish, for at most the grace period.
    let (stopping, mut grace) = watch::channel(false);
    let signal = {
        let readiness = readiness.clone();
        async move {
            shutdown.await;
            readiness.set(false).await;
            info!("shutting down: refusing new calls, finishing calls in flight");
            drop(stop);
            let _ = stopping.send(true);
        }
    };
    let stopping_too = {
        let mut grace = grace.clone();
        async move {
            let _ = grace.wait_for(|stopping| *stopping).await;
        }
    };
    let observed = |routes: Routes| ObserveLayer(metrics.clone()).layer(routes.prepare());
    let main = net::serve(
        app.listeners,
        Arc::new(Serving::new(limits, observed(grpc_routes), app.tls.clone())),
        slots.clone(),
        signal,
    );
    let server = async {
        match app.http_listeners {
            None => main.await,
            Some(listeners) => {
                let face = Serving::new(
                    limits,
                    observed(with_fallback(Routes::from(face))),
                    app.tls.clone(),
                );
                let apart = net::serve(listeners, Arc::new(face), slots, stopping_too);
                tokio::join!(main, apart);
            }
        }
    };
    let grace_period = limits.shutdown_grace;
    tokio::select! {
        () = server => {}
        _ = async {
            let _ = grace.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace_period).await;
        } => {
            warn!(grace = ?grace_period, "calls still in flight after the grace period; exiting");
        }
    }
    for task in background {
        stop_task(task).await;
    }
    // The replays and uses of the last second, then the pool.
    authority.finish_replays(grace_period).await;
    if let Err(err) = authority.record_usage().await {
        warn!(error = %err, "last_used_at of the last second not recorded");
    }
    // Connections a call still holds are not waited for past the grace period.
    let _ = tokio::time::timeout(grace_period, store.close()).await;
    info!("stopped");
    Ok(())
}

/// Unknown paths: UNIMPLEMENTED for gRPC, 404 for HTTP.
fn with_fallback(mut routes: Routes) -> Routes {
    let router = routes.axum_router_mut();
    *router = std::mem::take(router).fallback(http::fallback);
    routes
}

/// What the door admits: the per-client share defaults to half the total
/// (at least one call) and never exceeds it.
fn admission(limits: &Limits) -> Admission {
    let share = limits
        .max_in_flight_per_client
        .unwrap_or(limits.max_in_flight.div_ceil(2))
        .min(limits.max_in_flight);
    Admission {
        max_in_flight: limits.max_in_flight,
        max_in_flight_per_client: share,
        body_timeout: limits.body_timeout,
    }
}

async fn stop_task(task: JoinHandle<()>) {
    if let Err(err) = task.await {
        warn!(error = %err, "background task failed");
    }
}
