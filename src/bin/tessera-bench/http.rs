//! `--op introspect`: RFC 7662 introspection over HTTP, as the MCP SDKs'
//! verifiers call it: one form POST per check on a kept-alive connection.
//! HTTP/1.1 carries one call at a time per connection, so every task gets
//! a connection of its own (as a client pool at this concurrency would
//! open); HTTP/2 tasks share `--connections`, as gRPC's do. In the clear
//! only: TLS to the server is measured on gRPC (BENCHMARKS.md).

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use bytes::Bytes;
use clap::ValueEnum;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request,
    client::conn::{http1, http2},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpStream, sync::Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Version {
    #[value(name = "1.1")]
    Http1,
    #[value(name = "2")]
    Http2,
}

/// One HTTP connection's sending half. An HTTP/1.1 sender is one task's
/// alone (the lock is never contended); an HTTP/2 sender multiplexes.
#[derive(Clone)]
pub enum Sender {
    Http1(Arc<Mutex<http1::SendRequest<Full<Bytes>>>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

pub async fn connect(target: SocketAddr, version: Version) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    tcp.set_nodelay(true)?;
    let io = TokioIo::new(tcp);
    Ok(match version {
        Version::Http1 => {
            let (sender, connection) = http1::handshake(io).await?;
            tokio::spawn(connection);
            Sender::Http1(Arc::new(Mutex::new(sender)))
        }
        Version::Http2 => {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(connection);
            Sender::Http2(sender)
        }
    })
}

#[derive(Deserialize)]
struct Introspection {
    active: bool,
}

/// One introspection of `token`; the outcome's name, as for gRPC calls.
pub async fn introspect(
    sender: &Sender,
    target: SocketAddr,
    auth: Option<&str>,
    token: &str,
) -> String {
    let mut request = Request::post("/oauth2/introspect")
        .header(HOST, target.to_string())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth);
    }
    // Tessera's tokens are base62 after their prefix: nothing to escape.
    let body = Full::new(Bytes::from(format!("token={token}")));
    let request = request.body(body).expect("a well-formed request");
    let response = match sender {
        Sender::Http1(sender) => sender.lock().await.send_request(request).await,
        Sender::Http2(sender) => sender.clone().send_request(request).await,
    };
    let response = match response {
        Ok(response) => response,
        Err(_) => return "error:Transport".to_owned(),
    };
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return "error:Transport".to_owned(),
    };
    if !status.is_success() {
        return format!("error:Http{}", status.as_u16());
    }
    match serde_json::from_slice::<Introspection>(&body) {
        Ok(Introspection { active: true }) => "active".to_owned(),
        Ok(Introspection { active: false }) => "inactive".to_owned(),
        Err(_) => "error:NotJson".to_owned(),
    }
}
