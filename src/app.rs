//! Start-up and the server's lifetime: open the store, bind, serve gRPC,
//! health and reflection, run the background tasks, stop cleanly.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::{
    audit::Audit,
    authority::{Authority, Policy},
    cache::GrantCache,
    clients::Clients,
    config::{Config, DatabaseConfig, Limits},
    grpc::{self, SERVICE_NAME},
    pb,
    store::{PgStore, SqliteStore, Store},
};

/// The health service name that reports the process, whatever the database.
pub const LIVENESS: &str = "liveness";

/// How often readiness asks the database, and how long it waits for the
/// answer: a dead database shows as NOT_SERVING within two intervals.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often Validate's uses are written: `last_used_at` lags by at most this.
const USAGE_INTERVAL: Duration = Duration::from_secs(1);
/// Rows the sweeper deletes per statement, so no delete holds locks for long.
const SWEEP_BATCH: u32 = 1000;

/// A store of either kind, chosen by the database URL's scheme.
pub enum Backend {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Backend {
    pub fn open(db: &DatabaseConfig) -> anyhow::Result<Self> {
        let url = db.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect_lazy(db)?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect_lazy(db)?))
        } else {
            anyhow::bail!("--database-url must start with postgres://, postgresql:// or sqlite:")
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(store) => store.migrate().await,
            Self::Sqlite(store) => store.migrate().await,
        }
        .context("applying migrations")
    }
}

/// A bound, ready-to-serve Tessera. `build` then `run_until`.
pub struct App {
    config: Config,
    listener: TcpListener,
    clients: Arc<Clients>,
    backend: Backend,
}

impl App {
    /// Checks the configuration, loads the clients, opens the store, applies
    /// migrations (unless told not to) and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        let clients = match &config.clients {
            Some(path) => Clients::load(path)?,
            None => {
                warn!("no clients file: dev mode, every call is allowed as client `dev`");
                Clients::dev()
            }
        };
        let backend = Backend::open(&config.database)?;
        if !config.no_migrate {
            backend.migrate().await?;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            config,
            listener,
            clients: Arc::new(clients),
            backend,
        })
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the
    /// calls in flight and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres(ref store) => serve(store.clone(), self, shutdown).await,
            Backend::Sqlite(ref store) => serve(store.clone(), self, shutdown).await,
        }
    }
}

async fn serve<S: Store + Clone>(
    store: S,
    app: App,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let config = &app.config;
    let cache = (config.cache_capacity > 0)
        .then(|| Arc::new(GrantCache::new(config.cache_max_age, config.cache_capacity)));
    let authority = Arc::new(Authority::new(
        store.clone(),
        Policy {
            default_ttl: config.default_ttl,
            max_ttl: config.max_ttl,
        },
        cache.clone(),
        Audit::new(config.audit_key()?),
    ));
    let (reporter, health) = tonic_health::server::health_reporter();
    set_readiness(&reporter, ServingStatus::NotServing).await;
    // Liveness answers for the process, not the database: an outage must
    // not make Kubernetes restart every replica.
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;

    let (stop, stopped) = watch::channel(());
    let mut background = vec![
        tokio::spawn(watch_readiness(
            store.clone(),
            reporter.clone(),
            stopped.clone(),
        )),
        tokio::spawn(sweep(
            store.clone(),
            config.retention,
            config.sweep_interval,
            stopped.clone(),
        )),
    ];
    background.push(tokio::spawn(record_usage(
        authority.clone(),
        stopped.clone(),
    )));
    if let Some(cache) = cache {
        background.push(tokio::spawn(invalidate(store.clone(), cache, stopped)));
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
    let service = grpc::server(authority.clone(), app.clients.clone(), admission(limits));
    let addr = app.local_addr();
    let incoming = TcpIncoming::from(app.listener).with_nodelay(Some(true));
    info!(%addr, database = %crate::config::redact_url(&config.database.url), "serving");

    // Shutdown: readiness turns NOT_SERVING first, then the server stops
    // accepting and lets calls in flight finish, for at most the grace period.
    let (stopping, mut grace) = watch::channel(false);
    let server = Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .http2_max_header_list_size(limits.http2_max_header_list_size)
        .http2_max_pending_accept_reset_streams(Some(limits.http2_max_pending_resets))
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async {
            shutdown.await;
            set_readiness(&reporter, ServingStatus::NotServing).await;
            info!("shutting down: refusing new calls, finishing calls in flight");
            drop(stop);
            let _ = stopping.send(true);
        });
    let grace_period = limits.shutdown_grace;
    let result = tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        _ = async {
            let _ = grace.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace_period).await;
        } => {
            warn!(grace = ?grace_period, "calls still in flight after the grace period; exiting");
            Ok(())
        }
    };
    for task in background {
        stop_task(task).await;
    }
    // The uses of the last second, then the pool.
    if let Err(err) = authority.record_usage().await {
        warn!(error = %err, "last_used_at of the last second not recorded");
    }
    // Connections a call still holds are not waited for past the grace period.
    let _ = tokio::time::timeout(grace_period, store.close()).await;
    info!("stopped");
    result.context("serving gRPC")
}

/// What the gate admits: the per-client share defaults to half the total
/// (at least one call) and never exceeds it.
fn admission(limits: &Limits) -> grpc::Admission {
    let share = limits
        .max_in_flight_per_client
        .unwrap_or(limits.max_in_flight.div_ceil(2))
        .min(limits.max_in_flight);
    grpc::Admission {
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

/// Readiness of both the named service and "" (which tonic-health reports
/// SERVING by default): Kubernetes and load balancers probe either.
async fn set_readiness(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Reports SERVING only while the store answers.
async fn watch_readiness<S: Store>(
    store: S,
    reporter: HealthReporter,
    mut stopped: watch::Receiver<()>,
) {
    let mut ready = None;
    loop {
        let ok = matches!(
            tokio::time::timeout(HEALTH_INTERVAL, store.ping()).await,
            Ok(Ok(()))
        );
        if ready != Some(ok) {
            if ok {
                info!("database reachable: SERVING");
            } else {
                warn!("database unreachable: NOT_SERVING");
            }
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            // Shutdown owns the last word on readiness.
            if stopped.has_changed().is_err() {
                return;
            }
            set_readiness(&reporter, status).await;
            ready = Some(ok);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Writes Validate's uses every [`USAGE_INTERVAL`] until shutdown.
async fn record_usage<S: Store>(authority: Arc<Authority<S>>, mut stopped: watch::Receiver<()>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(USAGE_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
        if let Err(err) = authority.record_usage().await {
            warn!(error = %err, "last_used_at not recorded; retrying with the next batch");
        }
    }
}

/// Feeds the store's invalidations to the cache until shutdown.
async fn invalidate<S: Store>(store: S, cache: Arc<GrantCache>, mut stopped: watch::Receiver<()>) {
    tokio::select! {
        _ = store.listen(move |event| cache.apply(event)) => {}
        _ = stopped.changed() => {}
    }
}

/// Deletes grants past their retention, in batches, every `interval`.
async fn sweep<S: Store>(
    store: S,
    retention: Duration,
    interval: Duration,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => return,
        }
        let mut deleted = 0;
        loop {
            match store.sweep(retention, SWEEP_BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < u64::from(SWEEP_BATCH) {
                        break;
                    }
                }
                Err(err) => {
                    warn!(error = %err, "sweep failed; retrying next interval");
                    break;
                }
            }
        }
        if deleted > 0 {
            info!(deleted, "swept grants past retention");
        }
    }
}
