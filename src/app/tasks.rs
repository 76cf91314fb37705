//! The server's background tasks; each runs until shutdown.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::{
    authority::Authority,
    clients::Directory,
    grpc::SERVICE_NAME,
    metrics::Metrics,
    net::tls::Tls,
    store::{Invalidation, Store},
};

/// How often readiness asks the database, and how long it waits for the
/// answer: a dead database shows as NOT_SERVING within two intervals.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often Validate's uses are written: `last_used_at` lags by at most this.
const USAGE_INTERVAL: Duration = Duration::from_secs(1);
/// Rows the sweeper deletes per statement, so no delete holds locks for long.
const SWEEP_BATCH: u32 = 1000;
/// How often the clients and TLS files are looked at (SIGHUP looks at once).
/// Reading a few small files costs nothing; Kubernetes updates a mounted
/// Secret within a minute or so anyway.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How often the live-grants gauge is counted: one indexed count, not one
/// per scrape.
const LIVE_GRANTS_INTERVAL: Duration = Duration::from_secs(30);

/// Readiness: what the gRPC health service and `/readyz` report.
#[derive(Clone)]
pub struct Readiness {
    pub reporter: HealthReporter,
    pub ready: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness of both the named service and "" (which tonic-health
    /// reports SERVING by default): Kubernetes and load balancers probe either.
    pub async fn set(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.ready.store(ready, Ordering::Relaxed);
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(SERVICE_NAME, status).await;
    }
}

/// Reports SERVING only while the store answers.
pub async fn watch_readiness<S: Store>(
    store: S,
    readiness: Readiness,
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
            // Shutdown owns the last word on readiness.
            if stopped.has_changed().is_err() {
                return;
            }
            readiness.set(ok).await;
            ready = Some(ok);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Writes Validate's uses every [`USAGE_INTERVAL`] until shutdown.
pub async fn record_usage<S: Store>(
    authority: Arc<Authority<S>>,
    mut stopped: watch::Receiver<()>,
) {
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

/// Listens for other replicas' changes until shutdown; `store` is the
/// cached store, which forgets what they changed, so this only reports
/// whether the cache is hearing them.
pub async fn invalidate<S: Store>(
    store: S,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<()>,
) {
    let listen = store.listen(move |event| match event {
        Invalidation::Resumed => {
            metrics.listener_up.set(1);
        }
        Invalidation::Lost => {
            metrics.listener_up.set(0);
        }
        Invalidation::Grant(_) => {}
    });
    tokio::select! {
        _ = listen => {}
        _ = stopped.changed() => {}
    }
}

/// Deletes grants past their retention, in batches, every `interval`.
pub async fn sweep<S: Store>(
    store: S,
    retention: Duration,
    interval: Duration,
    metrics: Arc<Metrics>,
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
        metrics.swept(deleted);
        if deleted > 0 {
            info!(deleted, "swept grants past retention");
        }
    }
}

/// Counts the live grants for the gauge every [`LIVE_GRANTS_INTERVAL`].
pub async fn count_live<S: Store>(
    store: S,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        match store.count_live().await {
            Ok(count) => {
                metrics
                    .live_grants
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            Err(err) => warn!(error = %err, "counting live grants failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LIVE_GRANTS_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// What a reload looks at.
pub struct Reloadable {
    pub clients: Option<(PathBuf, Arc<Directory>)>,
    pub tls: Option<Arc<Tls>>,
    /// Sign-in's resources file, read the same way.
    pub resources: Option<Arc<crate::signin::resources::ResourceFile>>,
}

/// Looks at the clients file and the TLS files every [`RELOAD_INTERVAL`]
/// and at once on SIGHUP. A file that changed and loads is in force for
/// the next call or connection; one that does not load leaves the old one
/// in force, and says why once.
pub async fn reload(files: Reloadable, metrics: Arc<Metrics>, mut stopped: watch::Receiver<()>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // The last failure of each file, so that one that stays broken (or
    // missing) is reported once, not every second.
    let mut failed: [Option<String>; 3] = Default::default();
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
            _ = hangup_received => info!("SIGHUP: looking at the clients and TLS files"),
            _ = stopped.changed() => return,
        }
        if let Some((path, directory)) = &files.clients {
            match directory.reload(path) {
                Ok(None) => failed[0] = None,
                Ok(Some(count)) => {
                    failed[0] = None;
                    info!(clients = count, path = %path.display(), "clients file reloaded");
                    metrics
                        .clients
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                    metrics.reloaded("clients", "loaded");
                }
                Err(err) => {
                    let why = "clients file not reloaded; the previous clients stay in force";
                    report(&mut failed[0], &err, why, || {
                        metrics.reloaded("clients", "failed")
                    });
                }
            }
        }
        if let Some(resources) = &files.resources {
            match resources.reload() {
                Ok(None) => failed[2] = None,
                Ok(Some(count)) => {
                    failed[2] = None;
                    info!(resources = count, path = %resources.path().display(), "resources file reloaded");
                    metrics.reloaded("resources", "loaded");
                }
                Err(err) => {
                    let why = "resources file not reloaded; the previous resources stay in force";
                    report(&mut failed[2], &err, why, || {
                        metrics.reloaded("resources", "failed")
                    });
                }
            }
        }
        if let Some(tls) = &files.tls {
            match tls.reload() {
                Ok(false) => failed[1] = None,
                Ok(true) => {
                    failed[1] = None;
                    info!("TLS certificate reloaded; new connections use it");
                    metrics.reloaded("tls", "loaded");
                }
                Err(err) => {
                    let why = "TLS files not reloaded; the previous certificate stays in force";
                    report(&mut failed[1], &err, why, || {
                        metrics.reloaded("tls", "failed")
                    });
                }
            }
        }
    }
}

/// Warns about a failed reload unless it is the failure reported last time.
fn report(last: &mut Option<String>, err: &anyhow::Error, why: &str, count: impl FnOnce()) {
    let err = format!("{err:#}");
    if last.as_ref() != Some(&err) {
        warn!(error = %err, "{why}");
        count();
        *last = Some(err);
    }
}
