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
/// drops every reply, and is cut after `cut_after`; later connections
/// forward both ways.
struct LossyProxy {
    addr: std::net::SocketAddr,
    /// What the first connection's replies held, dropped.
    dropped: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<u32>>,
}

impl LossyProxy {
    fn start(upstream: std::net::SocketAddr, cut_after: Duration) -> Self {
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
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                if first {
                    pipe(
                        server.try_clone().unwrap(),
                        client.try_clone().unwrap(),
                        Some(sink.clone()),
                    );
                    std::thread::spawn(move || {
                        std::thread::sleep(cut_after);
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                    });
                } else {
                    pipe(server, client, None);
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

/// Copies `from` to `to` on a thread of its own; with `drop_into`, keeps
/// the bytes there instead of forwarding them.
fn pipe(mut from: TcpStream, mut to: TcpStream, drop_into: Option<Arc<Mutex<Vec<u8>>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match &drop_into {
                Some(sink) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                None => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
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
    let proxy = LossyProxy::start(upstream, Duration::from_millis(1000));
    let through_proxy = Client::builder(format!("http://{}", proxy.addr))
        .timeout(Duration::from_secs(15))
        .retry(RetryPolicy {
            max_attempts: 20,
            attempt_timeout: Duration::from_millis(300),
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
    let proxy = LossyProxy::start(upstream, Duration::from_millis(1000));
    let through_proxy = Client::builder(format!("http://{}", proxy.addr))
        .timeout(Duration::from_secs(15))
        .retry(RetryPolicy {
            max_attempts: 20,
            attempt_timeout: Duration::from_millis(300),
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
