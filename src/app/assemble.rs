//! What `serve` builds from an open store before it listens: the metrics,
//! the domain over its cache, the Credentials service, health and
//! reflection, the door, and the routes of both faces. Nothing here runs
//! or stops anything: that is `serve`'s, along one shutdown path.

use std::sync::{Arc, atomic::AtomicBool};

use tonic::service::Routes;
use tonic_health::ServingStatus;

use super::{App, LIVENESS, tasks::Readiness};
use crate::{
    audit::Audit,
    authority::{Authority, Policy},
    cache::{Cached, GrantCache},
    config::Limits,
    credentials::Credentials,
    door::{Admission, Door},
    grpc, http,
    metrics::Metrics,
    pb,
    signin::{Db, Signin},
    store::{CredentialStore, Store},
};

/// The server's parts, ready to be served.
pub(super) struct Assembled<S> {
    pub metrics: Arc<Metrics>,
    /// The domain, which sees the store through the cache.
    pub authority: Arc<Authority<Cached<S>>>,
    /// The cached store when the cache is on: its listener must hear other
    /// replicas' changes to keep the cache in step.
    pub cached: Option<Cached<S>>,
    pub readiness: Readiness,
    /// The authorization-code flow, when `--oidc-issuer` turns it on (its
    /// resources file is reloaded with the clients file).
    pub signin: Option<Arc<Signin<Cached<S>>>>,
    /// gRPC, and the HTTP face too unless it listens apart.
    pub routes: Routes,
    /// The HTTP face when it has listeners of its own.
    pub face_apart: Option<Routes>,
}

pub(super) async fn assemble<S: Store + CredentialStore + Clone>(
    store: &S,
    signin_db: Db,
    app: &App,
) -> anyhow::Result<Assembled<S>> {
    let config = &app.config;
    let metrics = Metrics::new();
    metrics.probe_pool(store.pool_probe());
    metrics
        .clients
        .set(i64::try_from(app.clients.get().len()).unwrap_or(i64::MAX));
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
    let door = Arc::new(Door::new(
        app.clients.clone(),
        admission(&config.limits),
        metrics.clone(),
    ));
    let signin =
        Signin::build(&config.signin, &app.issuer(), signin_db, authority.clone())?.map(Arc::new);
    let face = http::router(Arc::new(http::Face {
        authority: authority.clone(),
        door: door.clone(),
        metrics: metrics.clone(),
        issuer: app.issuer(),
        ready: readiness.ready.clone(),
        signin: signin.clone(),
    }));
    let mut routes = Routes::builder();
    routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(grpc::server(authority.clone(), door.clone()))
        .add_service(grpc::credentials_server(credentials, door));
    let mut routes = routes.routes();
    let face_apart = if app.http_listeners.is_some() {
        Some(with_fallback(Routes::from(face)))
    } else {
        let router = routes.axum_router_mut();
        *router = std::mem::take(router).merge(face);
        None
    };
    Ok(Assembled {
        metrics,
        authority,
        cached: cache.is_some().then_some(cached),
        readiness,
        signin,
        routes: with_fallback(routes),
        face_apart,
    })
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
