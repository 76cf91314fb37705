//! A reply lost on the wire: the claim's retry, with the same key, gets
//! the original answer and the single use is not lost.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use tessera_client::{Claim, ClaimOutcome, Client, Mint, RetryPolicy, Validate};

use crate::support::Server;

/// A TCP proxy to `upstream` whose first connection forwards requests but
/// drops every reply, and is cut once a dropped reply held `cut_after`
/// (never, if empty); later connections forward both ways. The cut follows
/// the answer itself, not a clock: however slow the server, its answer is
/// made, and lost.
struct LossyProxy {
    addr: std::net::SocketAddr,
    /// What the first connection's replies held, dropped.
    dropped: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<u32>>,
}

impl LossyProxy {
    fn start(upstream: std::net::SocketAddr, cut_after: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (sink, count) = (dropped.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let server = TcpStream::connect(upstream).unwrap();
                let first = {
                    let mut count = count.lock().unwrap();
                    *count += 1;
                    *count == 1
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                if first {
                    let cut = (!cut_after.is_empty()).then(|| {
                        let (client, server) =
                            (client.try_clone().unwrap(), server.try_clone().unwrap());
                        move || {
                            let _ = client.shutdown(Shutdown::Both);
                            let _ = server.shutdown(Shutdown::Both);
                        }
                    });
                    drop_replies(server, sink.clone(), cut_after, cut);
                } else {
                    pipe(server, client);
                }
            }
        });
        Self {
            addr,
            dropped,
            connections,
        }
    }
}

/// Copies `from` to `to` on a thread of its own.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Keeps what `from` sends in `sink` instead of forwarding it, on a thread
/// of its own; once the kept bytes hold `marker`, runs `cut`.
fn drop_replies(
    mut from: TcpStream,
    sink: Arc<Mutex<Vec<u8>>>,
    marker: &'static [u8],
    mut cut: Option<impl FnOnce() + Send + 'static>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut kept = sink.lock().unwrap();
            kept.extend_from_slice(&buf[..n]);
            if kept.windows(marker.len()).any(|w| w == marker)
                && let Some(cut) = cut.take()
            {
                cut();
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_reply_was_lost_is_retried_without_losing_the_use() {
    let server = Server::start();
    let direct = server.client().await;
    let minted = direct
        .mint(
            Mint::new("u")
                .max_uses(1)
                .payload(b"the-one-payload".to_vec()),
        )
        .await
        .unwrap();

    let upstream = server.url.trim_start_matches("http://").parse().unwrap();
    // The first connection is cut once its answer (which carries the
    // payload) was dropped; no attempt times out, however slow the server.
    let proxy = LossyProxy::start(upstream, b"the-one-payload");
    let through_proxy = Client::builder(format!("http://{}", proxy.addr))
        .timeout(Duration::from_secs(120))
        .retry(RetryPolicy {
            max_attempts: 20,
            attempt_timeout: Duration::from_secs(60),
            ..RetryPolicy::default()
        })
        .connect_lazy()
        .unwrap();

    let outcome = through_proxy
        .claim(Claim::new(&minted.token))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(claimed) = outcome else {
        panic!("the retry was refused: {outcome:?}");
    };
    assert_eq!(claimed.payload.expose(), b"the-one-payload");
    assert_eq!(claimed.grant.use_count, 1);

    // The first answer was made, and lost: the proxy dropped it (the
    // payload travels as plain bytes in the HTTP/2 DATA frame).
    let dropped = proxy.dropped.lock().unwrap().clone();
    assert!(
        dropped
            .windows(b"the-one-payload".len())
            .any(|w| w == b"the-one-payload"),
        "the first attempt was answered (and the answer dropped)"
    );
    assert!(*proxy.connections.lock().unwrap() >= 2);
    let grant = direct.get_grant(&minted.grant.grant_id).await.unwrap();
    assert_eq!(grant.use_count, 1, "one use, for one logical claim");
    assert!(
        !direct
            .validate(Validate::new(&minted.token))
            .await
            .unwrap()
            .is_valid()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mint_whose_reply_was_lost_is_an_error_not_a_second_token() {
    let server = Server::start();
    let direct = server.client().await;
    let upstream = server.url.trim_start_matches("http://").parse().unwrap();
    // Replies never come back on the first connection: the attempt ends at
    // its timeout. The server must have answered by then (the mint must
    // have happened): 5 s is slack for one mint on a busy machine.
    let proxy = LossyProxy::start(upstream, b"");
    let through_proxy = Client::builder(format!("http://{}", proxy.addr))
        .timeout(Duration::from_secs(60))
        .retry(RetryPolicy {
            max_attempts: 20,
            attempt_timeout: Duration::from_secs(5),
            ..RetryPolicy::default()
        })
        .connect_lazy()
        .unwrap();

    let err = through_proxy
        .mint(Mint::new("u").run_id("lossy"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, tessera_client::Error::DeadlineExceeded),
        "{err:?}"
    );
    let page = direct
        .list_grants(tessera_client::ListGrants::new().run_id("lossy"))
        .await
        .unwrap();
    assert_eq!(page.active_count, 1, "minted once, never again");
}
