//! One layer around every call, gRPC or HTTP: its metrics, and its access
//! line on the `tessera::access` target (at debug, so off by default;
//! refused calls — key, role, shed, bad input — at info).

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use tonic::codegen::{BoxFuture, Service, http};
use tower::Layer;
use tracing::{debug, info};

use crate::{
    grpc::{Served, logged},
    metrics::{Call, Metrics},
    net::Peer,
};

pub const ACCESS: &str = "tessera::access";

#[derive(Clone)]
pub struct ObserveLayer(pub Arc<Metrics>);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
        let method = method(request.uri().path());
        let peer = request
            .extensions()
            .get::<Peer>()
            .and_then(|peer| peer.addr);
        let future = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = future.await?;
            let elapsed = start.elapsed();
            let (interface, code) = if grpc {
                ("grpc", grpc_code(&response))
            } else {
                ("http", http_code(response.status()))
            };
            metrics.call(
                Call {
                    interface,
                    method,
                    code,
                },
                elapsed.as_secs_f64(),
            );
            let refused = refused(code);
            // Off by default: nothing is formatted unless the line is wanted.
            if refused || tracing::enabled!(target: ACCESS, tracing::Level::DEBUG) {
                let client = response
                    .extensions()
                    .get::<Served>()
                    .map(|served| served.0.id.as_str())
                    .unwrap_or("");
                let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                let peer = peer.map(|addr| addr.to_string()).unwrap_or_default();
                if refused {
                    info!(target: ACCESS, interface, method, code, latency_us, client, peer, "refused");
                } else {
                    debug!(target: ACCESS, interface, method, code, latency_us, client, peer, "served");
                }
            }
            Ok(response)
        })
    }
}

/// The method or endpoint, as one of the server's own names.
fn method(path: &str) -> &'static str {
    match path {
        "/grpc.health.v1.Health/Check" => "Health/Check",
        "/grpc.health.v1.Health/Watch" => "Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        | "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => "Reflection",
        "/oauth2/introspect" => "introspect",
        "/oauth2/revoke" => "revoke",
        "/oauth2/token" => "token",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ if path.starts_with("/.well-known/oauth-authorization-server") => "metadata",
        _ if path.starts_with("/tessera.v1.Credentials/") => crate::grpc::route(path).0,
        _ => match path.strip_prefix("/tessera.v1.TokenAuthority/") {
            Some(name) => logged(name),
            None => "other",
        },
    }
}

/// A gRPC answer's code: in the headers when the call failed before a
/// message (trailers-only), otherwise OK (set in the trailers).
fn grpc_code<R>(response: &http::Response<R>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn http_code(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// Calls refused for who sent them or what they sent: visible at info.
fn refused(code: &str) -> bool {
    matches!(
        code,
        "INVALID_ARGUMENT"
            | "UNAUTHENTICATED"
            | "PERMISSION_DENIED"
            | "RESOURCE_EXHAUSTED"
            | "OUT_OF_RANGE"
            | "DEADLINE_EXCEEDED"
            | "400"
            | "401"
            | "403"
            | "408"
            | "413"
            | "429"
    )
}
