//! Serving each accepted connection with hyper, gRPC and HTTP/1.1 alike.
//!
//! tonic's own `Server` does this too, but gives no hold on what a hostile
//! client exploits: how long a connection may stay silent (before its
//! first request, or idle after), and how large an HTTP/1.1 request head
//! may grow. So each connection is served here, on the same routes, with:
//!
//! - a deadline for the first request head, counted from accept, covering
//!   the TLS handshake and the HTTP/2 preface (hyper's own HTTP/1.1 header
//!   timeout, the same value, covers each next request head);
//! - an idle timeout once no call is open (HTTP/2 keepalive pings still
//!   find dead peers while calls are open);
//! - HTTP/1.1 request heads held to the HTTP/2 header-list limit (431).

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::{Request, Response, body::Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
    time::{Instant, timeout, timeout_at},
};
use tonic::{Status, codegen::BoxFuture, service::Routes};
use tower::ServiceExt;
use tracing::debug;

use super::{
    incoming::{Conn, Peer},
    tls::Tls,
};
use crate::{config::Limits, observe::Observe};

/// What every connection of one listener set is served with.
pub struct Serving {
    /// The routes, observed; cloned for each call.
    service: Observe<Routes>,
    tls: Option<Arc<Tls>>,
    /// HTTP/1.1 or HTTP/2, whichever the client speaks, with the limits.
    builder: auto::Builder<TokioExecutor>,
    request_timeout: Duration,
    head_timeout: Duration,
    idle_timeout: Duration,
}

impl Serving {
    pub fn new(limits: &Limits, service: Observe<Routes>, tls: Option<Arc<Tls>>) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper enforces its header timeout only with a timer; it starts
        // when the connection waits for a request head, so it also closes
        // an HTTP/1.1 connection idle between requests.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.request_head_timeout)
            .max_buf_size(limits.http2_max_header_list_size as usize);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size(limits.http2_max_header_list_size)
            .max_pending_accept_reset_streams(limits.http2_max_pending_resets)
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout);
        Self {
            service,
            tls,
            builder,
            request_timeout: limits.request_timeout,
            head_timeout: limits.request_head_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }
}

/// Why a connection is let go before its client closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// No complete request head within --request-head-timeout.
    Silent,
    /// No call open for --idle-timeout.
    Idle,
    /// The server is shutting down.
    Stopping,
}

/// Serves one accepted connection until it ends. `_slot` is its place
/// under --max-connections, given back when this returns.
pub(super) async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    serving: Arc<Serving>,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let head_by = Instant::now() + serving.head_timeout;
    let io = match &serving.tls {
        None => Conn::Plain(tcp),
        Some(tls) => {
            let handshake = timeout_at(head_by, tls.acceptor().accept(tcp));
            let handshake = tokio::select! {
                handshake = handshake => handshake,
                _ = stop.wait_for(|stopping| *stopping) => return,
            };
            match handshake {
                Ok(Ok(stream)) => Conn::Tls(Box::new(stream)),
                Ok(Err(err)) => {
                    debug!(%addr, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%addr, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let peer = Peer {
        addr: Some(addr),
        tls: matches!(io, Conn::Tls(_)),
    };
    let (calls, watched) = watch::channel(Calls::default());
    let service = PerConnection {
        serving: serving.clone(),
        peer,
        calls: Arc::new(calls),
    };
    let conn = serving.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let unwanted = unwanted(watched, head_by, serving.idle_timeout);
    tokio::pin!(unwanted);

    let why = tokio::select! {
        result = conn.as_mut() => return ended(addr, result),
        why = &mut unwanted => why,
        _ = stop.wait_for(|stopping| *stopping) => Close::Stopping,
    };
    if why == Close::Silent {
        debug!(%addr, "no request within --request-head-timeout: connection closed");
        return;
    }
    // HTTP/2 says GOAWAY and lets open calls finish; HTTP/1.1 closes once
    // the call in progress, if any, is answered.
    conn.as_mut().graceful_shutdown();
    if why == Close::Idle {
        debug!(%addr, "idle for --idle-timeout: closing the connection");
        // No call is open: the GOAWAY's answer takes a round trip. A peer
        // that never gives it is cut off.
        if let Ok(result) = timeout(serving.head_timeout, conn).await {
            ended(addr, result);
        }
        return;
    }
    // Stopping: calls in flight finish (the grace period bounds them); a
    // connection still silent or idle goes at its deadline.
    tokio::select! {
        result = conn => ended(addr, result),
        _ = unwanted => {}
    }
}

fn ended(addr: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(err) = result {
        debug!(%addr, error = %err, "connection ended with an error");
    }
}

/// The calls of one connection, as its task sees them.
#[derive(Debug, Default, Clone, Copy)]
struct Calls {
    /// Whether a request head ever arrived.
    started: bool,
    /// Calls not yet answered in full.
    open: usize,
}

/// Resolves when the connection no longer deserves its slot: no request
/// head by `head_by`, or no call open for `idle`.
async fn unwanted(mut calls: watch::Receiver<Calls>, head_by: Instant, idle: Duration) -> Close {
    let started = calls.wait_for(|calls| calls.started);
    if timeout_at(head_by, started).await.is_err() {
        return Close::Silent;
    }
    loop {
        // An error: the connection's service is gone, so is the connection.
        if calls.wait_for(|calls| calls.open == 0).await.is_err() {
            return std::future::pending().await;
        }
        match timeout(idle, calls.changed()).await {
            Err(_) => return Close::Idle,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {}
        }
    }
}

/// One call counted as open, until its response has been sent or dropped.
struct Open(Arc<watch::Sender<Calls>>);

impl Open {
    fn new(calls: &Arc<watch::Sender<Calls>>) -> Self {
        calls.send_modify(|calls| {
            calls.started = true;
            calls.open += 1;
        });
        Self(calls.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|calls| calls.open -= 1);
    }
}

/// The service of one connection: who the peer is, the request timeout,
/// and the count of open calls.
#[derive(Clone)]
struct PerConnection {
    serving: Arc<Serving>,
    peer: Peer,
    calls: Arc<watch::Sender<Calls>>,
}

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response<Counted>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let open = Open::new(&self.calls);
        request.extensions_mut().insert(self.peer);
        // The caller's own deadline, when shorter, as tonic's server kept it.
        let limit = grpc_timeout(request.headers()).map_or(self.serving.request_timeout, |asked| {
            asked.min(self.serving.request_timeout)
        });
        let call = self.serving.service.clone().oneshot(request);
        Box::pin(async move {
            let response = match timeout(limit, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                // What tonic's server answered: CANCELLED, whatever the face.
                Err(_) => Status::cancelled("Timeout expired").into_http(),
            };
            Ok(response.map(|body| Counted { body, _open: open }))
        })
    }
}

/// A gRPC caller's deadline, from its `grpc-timeout` header: one to eight
/// digits and a unit (gRPC over HTTP/2, "Requests"). Anything else is no
/// deadline, as in tonic.
fn grpc_timeout(headers: &hyper::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A response body that keeps its call open until it is sent.
struct Counted {
    body: tonic::body::Body,
    _open: Open,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_callers_grpc_timeout() {
        let of = |value: &str| {
            let mut headers = hyper::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(of("3S"), Some(Duration::from_secs(3)));
        assert_eq!(of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(of("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(of(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&hyper::HeaderMap::new()), None);
    }
}
