//! Start-up and the server's lifetime: open the store, bind ([`App::build`],
//! which records the real ports), then serve gRPC and the HTTP face (in the
//! clear or over TLS) with the background tasks until the caller's signal,
//! and stop along one path ([`App::run_until`]).

mod assemble;
mod backend;
mod shutdown;
mod tasks;

pub use backend::Backend;

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tonic::service::Routes;
use tower::Layer;
use tracing::{info, warn};

use crate::{
    clients::{Clients, Directory},
    config::{Config, DatabaseConfig},
    credentials::Keyring,
    net::{self, Serving, tls::Tls},
    observe::ObserveLayer,
    signin::Db,
    store::{CredentialStore, Store},
};

use assemble::Assembled;
use shutdown::Shutdown;
use tasks::Reloadable;

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
            Backend::Postgres(ref store) => {
                let db = Db::Postgres(store.pool().clone());
                serve(store.clone(), db, self, shutdown).await
            }
            Backend::Sqlite(ref store) => {
                let db = Db::Sqlite(store.pool().clone());
                serve(store.clone(), db, self, shutdown).await
            }
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

/// The server's lifetime: assemble, start the background tasks, serve
/// every listener, and, when `signal` resolves, stop along the one path
/// every task and listener follows ([`Shutdown`]).
async fn serve<S: Store + CredentialStore + Clone>(
    store: S,
    signin_db: Db,
    app: App,
    signal: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let parts = assemble::assemble(&store, signin_db, &app).await?;
    let shutdown = Shutdown::default();
    let background = spawn_tasks(&store, &app, &parts, &shutdown);

    let limits = &app.config.limits;
    // One cap for every listener: descriptors run out process-wide.
    let max_connections = limits.connection_cap(app.config.database.max_connections);
    announce(&app, &parts, max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    let observed = |routes: Routes| {
        let service = ObserveLayer(parts.metrics.clone()).layer(routes.prepare());
        Arc::new(Serving::new(limits, service, app.tls.clone()))
    };
    let main = net::serve(
        app.listeners,
        observed(parts.routes),
        slots.clone(),
        shutdown.subscribe().stopped(),
    );
    let servers = async {
        match (app.http_listeners, parts.face_apart) {
            (Some(listeners), Some(face)) => {
                let apart = net::serve(
                    listeners,
                    observed(face),
                    slots,
                    shutdown.subscribe().stopped(),
                );
                tokio::join!(main, apart);
            }
            _ => main.await,
        }
    };
    // Shutdown: readiness turns NOT_SERVING first, then every listener
    // stops accepting and lets calls in flight finish, for at most the
    // grace period, while every background task stops.
    let grace = limits.shutdown_grace;
    let stop = async {
        signal.await;
        parts.readiness.set(false).await;
        info!("shutting down: refusing new calls, finishing calls in flight");
        shutdown.begin();
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = servers => {}
        () = stop => {
            warn!(grace = ?grace, "calls still in flight after the grace period; exiting");
        }
    }
    // Already begun, unless the listeners ended on their own.
    shutdown.begin();
    for task in background {
        if let Err(err) = task.await {
            warn!(error = %err, "background task failed");
        }
    }
    // The replays and uses of the last second, then the pool.
    parts.authority.finish_replays(grace).await;
    if let Err(err) = parts.authority.record_usage().await {
        warn!(error = %err, "last_used_at of the last second not recorded");
    }
    // Connections a call still holds are not waited for past the grace period.
    let _ = tokio::time::timeout(grace, store.close()).await;
    info!("stopped");
    Ok(())
}

/// The background tasks, each holding its own [`Stopping`](shutdown::Stopping).
fn spawn_tasks<S: Store + CredentialStore + Clone>(
    store: &S,
    app: &App,
    parts: &Assembled<S>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let config = &app.config;
    let metrics = &parts.metrics;
    let reloadable = Reloadable {
        clients: config
            .clients
            .clone()
            .map(|path| (path, app.clients.clone())),
        tls: app.tls.clone(),
        resources: parts.signin.as_ref().map(|s| s.resources.clone()),
    };
    let mut background = vec![
        tokio::spawn(tasks::watch_readiness(
            store.clone(),
            parts.readiness.clone(),
            shutdown.subscribe(),
        )),
        tokio::spawn(tasks::sweep(
            store.clone(),
            config.retention,
            config.sweep_interval,
            metrics.clone(),
            shutdown.subscribe(),
        )),
        tokio::spawn(tasks::record_usage(
            parts.authority.clone(),
            shutdown.subscribe(),
        )),
        tokio::spawn(tasks::count_live(
            store.clone(),
            metrics.clone(),
            shutdown.subscribe(),
        )),
        tokio::spawn(tasks::reload(
            reloadable,
            metrics.clone(),
            shutdown.subscribe(),
        )),
    ];
    if let Some(cached) = &parts.cached {
        background.push(tokio::spawn(tasks::invalidate(
            cached.clone(),
            metrics.clone(),
            shutdown.subscribe(),
        )));
    }
    background
}

/// The start line: what serves where, and how.
fn announce<S>(app: &App, parts: &Assembled<S>, max_connections: usize) {
    let config = &app.config;
    let clients = app.clients.get();
    let tls = match &app.tls {
        Some(tls) if tls.mutual() => "mutual",
        Some(_) => "on",
        None => "off",
    };
    info!(
        addr = %app.local_addr(),
        http = %app.http_addr().map_or("beside gRPC".to_owned(), |addr| addr.to_string()),
        tls,
        clients = clients.len(),
        dev = clients.is_dev(),
        credentials = if app.keyring.is_some() { "on" } else { "off (no --seal-key)" },
        signin = if parts.signin.is_some() { "on" } else { "off" },
        store = app.backend.kind(),
        database = %crate::config::redact_url(&config.database.url),
        max_connections,
        "serving"
    );
    if clients.is_dev() {
        warn!("no clients file: dev mode, every call is allowed as client `dev`");
    }
}
