//! Listening: resolve the configured address, bind, accept (with TLS when
//! configured), and tell the server who is on the other end.

mod client;
mod incoming;
pub mod tls;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::warn;

pub use client::ClientTls;
pub use incoming::{Conn, Peer, incoming};

/// Binds every address `addr` (`host:port`) resolves to, so that
/// `localhost:50051` serves both 127.0.0.1 and ::1. An address that cannot
/// be bound (a host without IPv6) is skipped with a warning; none at all is
/// an error.
pub async fn bind(flag: &str, addr: &str) -> anyhow::Result<Vec<TcpListener>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("{flag} {addr}: expected host:port that resolves"))?
        .collect();
    let mut listeners = Vec::with_capacity(addrs.len());
    let mut last_error = None;
    for resolved in dedup(addrs) {
        match TcpListener::bind(resolved).await {
            Ok(listener) => listeners.push(listener),
            Err(err) => {
                warn!(%resolved, error = %err, "{flag}: cannot bind one of its addresses");
                last_error = Some(err);
            }
        }
    }
    match (listeners.is_empty(), last_error) {
        (true, Some(err)) => Err(err).with_context(|| format!("binding {addr}")),
        (true, None) => anyhow::bail!("{flag} {addr}: resolves to no address"),
        _ => Ok(listeners),
    }
}

fn dedup(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = Vec::with_capacity(addrs.len());
    addrs.retain(|addr| {
        let new = !seen.contains(addr);
        seen.push(*addr);
        new
    });
    addrs
}

/// The addresses the listeners are bound to (the real ports when port 0 was asked for).
pub fn local_addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .collect()
}
