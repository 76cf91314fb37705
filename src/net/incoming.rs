//! Accepting: on every listener at once, each connection under
//! --max-connections and served on a task of its own, so that a slow or
//! silent client delays nobody else's.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tracing::{debug, info, warn};

use super::serve::{Serving, connection};

/// How long accept waits after a failure that is not one connection's
/// (out of descriptors, most likely) before it tries again.
const BACKOFF: Duration = Duration::from_millis(100);

/// A client connection, in the clear or over TLS.
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Who is on the other end; in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
    pub tls: bool,
}

/// Accepts on `listener` until `stop` turns true, each connection taking
/// one of `slots` first: at the cap, new connections wait in the kernel's
/// listen backlog, not in this process. The listener closes on return.
pub(super) async fn accept(
    listener: TcpListener,
    serving: Arc<Serving>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    // Failures since the last success: a burst is logged once, not each try.
    let mut failures = 0u64;
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        match accepted {
            Ok((tcp, addr)) => {
                if failures > 0 {
                    info!(failures, "accepting connections again");
                    failures = 0;
                }
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(tcp, addr, serving.clone(), slot, stop.clone()));
            }
            // The client gave up before it was accepted: its own loss only.
            Err(err) if one_connection(&err) => debug!(error = %err, "accept: connection lost"),
            Err(err) => {
                if failures == 0 {
                    warn!(
                        error = %err,
                        "accept failed; retrying every 100 ms, logged again when it succeeds"
                    );
                }
                failures += 1;
                drop(slot);
                tokio::select! {
                    () = tokio::time::sleep(BACKOFF) => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
            }
        }
    }
}

fn one_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            Conn::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
