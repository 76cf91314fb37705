//! Listening: resolve the configured address, bind, accept (with TLS when
//! configured), serve each connection, and tell the server who is on the
//! other end.

mod client;
mod incoming;
mod serve;
pub mod tls;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tracing::warn;

pub use client::ClientTls;
pub use incoming::Peer;
pub use serve::Serving;

/// Serves `listeners` until `shutdown` resolves, then closes them and waits
/// for the connections to end: calls in flight finish, idle connections
/// are told to go. `slots` bounds the connections open at once, shared by
/// every listener set of the process.
pub async fn serve(
    listeners: Vec<TcpListener>,
    serving: Arc<Serving>,
    slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let (stopping, stop) = watch::channel(false);
    for listener in listeners {
        tokio::spawn(incoming::accept(
            listener,
            serving.clone(),
            slots.clone(),
            stop.clone(),
        ));
    }
    drop(stop);
    shutdown.await;
    let _ = stopping.send(true);
    // Every accept loop and connection holds a receiver.
    stopping.closed().await;
}

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
