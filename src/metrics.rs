//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client:
//! typed label sets, no global registry (each server in a process has its
//! own), and atomics on the hot path. Every label takes a small fixed set of
//! values — method names, codes, reasons — never a token, key, subject or
//! anything else a caller chooses.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Call {
    /// `grpc` or `http`.
    pub interface: &'static str,
    pub method: &'static str,
    /// The gRPC code's name, or the HTTP status.
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    interface: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Check {
    op: &'static str,
    outcome: &'static str,
    /// The real reason behind a `TOKEN_UNKNOWN`, or `NONE`.
    hidden: &'static str,
}

/// A Credentials operation and how it ended (`ok`, `not_found`,
/// `conflict`, `granted`, `held`, `stale`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialOp {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthFailure {
    interface: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

type Histograms = Family<Method, Histogram, fn() -> Histogram>;

/// The cache's own counters, handed to it at construction.
#[derive(Clone, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
    pub invalidations: Counter,
}

/// Read at each scrape: the pool's state, asked of the store then.
pub type PoolProbe = Box<dyn Fn() -> PoolState + Send + Sync>;

pub struct PoolState {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

pub struct Metrics {
    registry: Registry,
    calls: Family<Call, Counter>,
    latency: Histograms,
    checks: Family<Check, Counter>,
    auth_failures: Family<AuthFailure, Counter>,
    shed: Family<Reason, Counter>,
    replays: Counter,
    swept: Counter,
    pub live_grants: Gauge,
    pub listener_up: Gauge,
    pub cache: CacheCounters,
    pool: Family<State, Gauge>,
    pool_max: Gauge,
    reloads: Family<Reload, Counter>,
    pub clients: Gauge,
    credentials: Family<CredentialOp, Counter>,
    probe: std::sync::OnceLock<PoolProbe>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reload {
    file: &'static str,
    result: &'static str,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("tessera");
        let calls = Family::<Call, Counter>::default();
        registry.register(
            "requests",
            "Calls answered, by interface, method and code",
            calls.clone(),
        );
        // 50 µs to about 1.6 s.
        let latency: Histograms =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.00005, 2.0, 16)));
        registry.register(
            "request_duration_seconds",
            "Time from a call's headers to its answer",
            latency.clone(),
        );
        let checks = Family::<Check, Counter>::default();
        registry.register(
            "token_checks",
            "Validate and Claim outcomes, with the real reason of each TOKEN_UNKNOWN",
            checks.clone(),
        );
        let auth_failures = Family::<AuthFailure, Counter>::default();
        registry.register(
            "auth_failures",
            "Calls refused for their key or role, by reason",
            auth_failures.clone(),
        );
        let shed = Family::<Reason, Counter>::default();
        registry.register(
            "shed",
            "Calls refused because too many were in flight",
            shed.clone(),
        );
        let replays = Counter::default();
        registry.register(
            "replays",
            "Used-up or revoked tokens presented again",
            replays.clone(),
        );
        let swept = Counter::default();
        registry.register(
            "swept_grants",
            "Grants deleted past their retention",
            swept.clone(),
        );
        let live_grants = Gauge::default();
        registry.register(
            "live_grants",
            "Grants neither expired, used up nor revoked (refreshed every 30 s)",
            live_grants.clone(),
        );
        let listener_up = Gauge::default();
        registry.register(
            "notify_listener_up",
            "1 while the database's invalidations are being received",
            listener_up.clone(),
        );
        let cache = CacheCounters::default();
        registry.register(
            "cache_hits",
            "BOUNDED Validates answered from memory",
            cache.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "BOUNDED Validates that asked the database",
            cache.misses.clone(),
        );
        registry.register(
            "cache_invalidations",
            "Grants this replica forgot because they changed",
            cache.invalidations.clone(),
        );
        let pool = Family::<State, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database connections, idle or in use",
            pool.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "Most database connections this process holds",
            pool_max.clone(),
        );
        let reloads = Family::<Reload, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the clients and TLS files, by result",
            reloads.clone(),
        );
        let clients = Gauge::default();
        registry.register(
            "clients",
            "Clients in the clients file in force",
            clients.clone(),
        );
        let credentials = Family::<CredentialOp, Counter>::default();
        registry.register(
            "credential_operations",
            "Credentials operations by outcome: refresh leases granted or held by another, \
             Put compare-and-set conflicts, stale leases",
            credentials.clone(),
        );
        Arc::new(Self {
            registry,
            calls,
            latency,
            checks,
            auth_failures,
            shed,
            replays,
            swept,
            live_grants,
            listener_up,
            cache,
            pool,
            pool_max,
            reloads,
            clients,
            credentials,
            probe: std::sync::OnceLock::new(),
        })
    }

    pub fn call(&self, call: Call, seconds: f64) {
        self.latency
            .get_or_create(&Method {
                interface: call.interface,
                method: call.method,
            })
            .observe(seconds);
        self.calls.get_or_create(&call).inc();
    }

    pub fn check(&self, op: &'static str, outcome: &'static str, hidden: &'static str) {
        self.checks
            .get_or_create(&Check {
                op,
                outcome,
                hidden,
            })
            .inc();
    }

    pub fn auth_failure(&self, interface: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthFailure { interface, reason })
            .inc();
    }

    pub fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&Reason { reason }).inc();
    }

    pub fn replayed(&self) {
        self.replays.inc();
    }

    pub fn swept(&self, deleted: u64) {
        self.swept.inc_by(deleted);
    }

    pub fn credential(&self, op: &'static str, outcome: &'static str) {
        self.credentials
            .get_or_create(&CredentialOp { op, outcome })
            .inc();
    }

    pub fn reloaded(&self, file: &'static str, result: &'static str) {
        self.reloads.get_or_create(&Reload { file, result }).inc();
    }

    /// Where the pool's state is read at each scrape (set once, at start).
    pub fn probe_pool(&self, probe: PoolProbe) {
        let _ = self.probe.set(probe);
    }

    /// The text a scrape gets.
    pub fn encode(&self) -> String {
        if let Some(probe) = self.probe.get() {
            let state = probe();
            let idle = i64::try_from(state.idle).unwrap_or(i64::MAX);
            self.pool.get_or_create(&State { state: "idle" }).set(idle);
            self.pool
                .get_or_create(&State { state: "in_use" })
                .set(i64::from(state.size) - idle);
            self.pool_max.set(i64::from(state.max));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
