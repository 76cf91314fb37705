//! The attacks of the security review, reproduced as written: stalled
//! streams and floods from one client against the others, bodies sent to
//! methods the client may not call, garbage bodies, and forged
//! `authorization` headers. Raw HTTP/2 (the h2 crate) where a gRPC client
//! would not misbehave on purpose.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tonic::Code;

use crate::support::{
    Backend, HeldClaims, Options, Process, TestApp, TestDb, check, keyed, mint_req,
};

/// One HTTP/2 connection to the server, speaking gRPC by hand.
struct Raw {
    addr: std::net::SocketAddr,
    send: h2::client::SendRequest<Bytes>,
    ping: h2::PingPong,
}

/// A call whose body is still owed: holding it keeps the stream open.
struct Stalled {
    _body: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, mut connection) = h2::client::handshake(tcp).await.unwrap();
        let ping = connection.ping_pong().unwrap();
        tokio::spawn(connection);
        Self { addr, send, ping }
    }

    /// Returns once the server has read every frame sent before.
    async fn flush(&mut self) {
        self.ping.ping(h2::Ping::opaque()).await.unwrap();
    }

    fn request(&self, method: &str, authorization: &[&str]) -> http::Request<()> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/tessera.v1.TokenAuthority/{method}",
                self.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for value in authorization {
            request = request.header("authorization", *value);
        }
        request.body(()).unwrap()
    }

    /// Sends the headers of a call and never its body.
    async fn stall(&mut self, method: &str, authorization: &[&str]) -> Stalled {
        let request = self.request(method, authorization);
        let mut send = self.send.clone().ready().await.unwrap();
        let (response, body) = send.send_request(request, false).unwrap();
        Stalled {
            _body: body,
            response,
        }
    }

    /// A whole call with `message` as the body of its one gRPC frame;
    /// returns its grpc-status and grpc-message.
    async fn call(
        &mut self,
        method: &str,
        authorization: &[&str],
        message: &[u8],
    ) -> (i32, String) {
        let request = self.request(method, authorization);
        let mut send = self.send.clone().ready().await.unwrap();
        let (response, mut body) = send.send_request(request, false).unwrap();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(message);
        // A call refused from its headers may be answered and reset before
        // its body goes out: then there is nothing to send it to.
        let _ = body.send_data(Bytes::from(frame), true);
        status_of(response).await
    }
}

/// The gRPC status of a response: in its headers (trailers-only) or trailers.
async fn status_of(response: h2::client::ResponseFuture) -> (i32, String) {
    let response = response.await.unwrap();
    let read = |headers: &http::HeaderMap| {
        headers.get("grpc-status").map(|code| {
            let message = headers
                .get("grpc-message")
                .map(|m| m.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (code.to_str().unwrap().parse().unwrap(), message)
        })
    };
    if let Some(status) = read(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    read(&trailers).expect("grpc-status in the trailers")
}

/// The review's attack: `reader` (validate role only) opens 600 streams to
/// Mint over 3 connections and never sends a body, and `minter` stalls more
/// streams than the whole in-flight limit on calls it may make. Before the
/// fix every stalled stream held a permit until the sockets closed, and
/// `platform`'s calls failed with RESOURCE_EXHAUSTED. Now the role is
/// refused from the path at once (and audited, with the method), a stream
/// waiting for its body holds no permit and is cut at the body deadline,
/// and the victim is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_of_one_client_cannot_fail_another() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = crate::support::Keys::new();
    let server = Process::spawn_with(
        db.url(),
        keys.file.path(),
        "info",
        // The body deadline is the window in which the stalls hold: long
        // enough that a busy machine serves the victim inside it.
        &["--max-in-flight", "8", "--body-timeout", "10s"],
    )
    .await;
    let bearer = |client: &str| format!("Bearer {}", keys.key(client));
    let mut platform = tessera::pb::token_authority_client::TokenAuthorityClient::new(
        crate::support::channel(server.addr).await,
    );
    let token = platform
        .mint(keyed(keys.key("minter"), mint_req("u")))
        .await
        .unwrap()
        .into_inner()
        .token;

    let mut stalled = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect(server.addr).await;
        for _ in 0..200 {
            stalled.push(raw.stall("Mint", &[&bearer("reader")]).await);
        }
        connections.push(raw);
    }
    let mut waiting = Vec::new();
    let mut raw = Raw::connect(server.addr).await;
    for _ in 0..32 {
        waiting.push(raw.stall("Validate", &[&bearer("minter")]).await);
    }
    connections.push(raw);
    // Every stalled stream has reached the server before the victim calls.
    for raw in &mut connections {
        raw.flush().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    for _ in 0..10 {
        let answer = platform
            .validate(keyed(keys.key("proxy"), check(&token)))
            .await
            .expect("served while another client stalls");
        assert!(answer.into_inner().valid);
    }
    // Served while every stall still holds: none of the streams waiting
    // for a body has been answered (the server's frames sent before the
    // ping's answer have all been read).
    let minter = connections.last_mut().unwrap();
    minter.flush().await;
    for call in &mut waiting {
        let polled_once = tokio::time::timeout(Duration::ZERO, &mut call.response).await;
        assert!(
            polled_once.is_err(),
            "a stalled stream was cut before the victim was served"
        );
    }

    // Refused from the path, before any body: every one of the 600.
    for call in stalled {
        let (code, message) = status_of(call.response).await;
        assert_eq!(code, Code::PermissionDenied as i32, "{message}");
    }
    // A body that never comes is given up on at the deadline.
    let (code, message) = status_of(waiting.pop().unwrap().response).await;
    assert_eq!(code, Code::DeadlineExceeded as i32, "{message}");
    assert!(message.contains("request%20body"), "{message}");

    let log = server.terminate().await;
    let refused: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|e: &serde_json::Value| e["event"] == "authorize")
        .collect();
    assert_eq!(refused.len(), 600, "every refusal is audited");
    assert_eq!(refused[0]["client"], "reader");
    assert_eq!(refused[0]["method"], "Mint");
    assert_eq!(refused[0]["role"], "mint");
}

/// One client with calls stuck on the database takes at most its share of
/// --max-in-flight (half by default): its next call is shed, while other
/// clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_the_whole_in_flight_limit() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options {
            max_in_flight: 8,
            ..Options::default()
        },
    )
    .await;
    let free = app.mint("minter", mint_req("u")).await.unwrap().token;
    let held = HeldClaims::start(&app, "minter", 4).await;

    let err = app.mint("minter", mint_req("u")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "past its share");
    for client in ["other", "proxy"] {
        let answer = app.validate(client, check(&free)).await;
        assert!(answer.unwrap().valid, "{client} is served");
    }
    assert!(app.mint("other", mint_req("u")).await.is_ok());

    held.release().await;
    assert!(
        app.mint("minter", mint_req("u")).await.is_ok(),
        "served again"
    );
}

/// A body sent to a method the client may not call is never looked at: the
/// answer is PERMISSION_DENIED. A body that does not decode is
/// INVALID_ARGUMENT with a fixed message, not INTERNAL with the decoder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_before_bodies_and_garbage_is_invalid() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let bearer = |client: &str| format!("Bearer {}", app.keys.key(client));
    let mut raw = Raw::connect(app.addr).await;
    let garbage = [0xff, 0xff, 0xff, 0xff];
    let (code, _) = raw.call("Mint", &[&bearer("reader")], &garbage).await;
    assert_eq!(code, Code::PermissionDenied as i32);
    let (code, message) = raw.call("Mint", &[&bearer("minter")], &garbage).await;
    assert_eq!(code, Code::InvalidArgument as i32, "{message}");
    assert_eq!(
        message,
        "the%20request%20is%20not%20a%20valid%20protobuf%20message"
    );
    assert_eq!(app.count_all().await, 0, "nothing written");
}

/// Exactly one `authorization: Bearer <key>`: two headers (even both with
/// the right key), two spaces, or trailing whitespace authenticate nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_exact_bearer_header_authenticates() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app.keys.key("minter");
    let mut raw = Raw::connect(app.addr).await;
    let empty_mint = [];
    let good = format!("Bearer {key}");
    let (code, _) = raw.call("GetGrant", &[&good], &empty_mint).await;
    assert_ne!(code, Code::Unauthenticated as i32, "the exact form works");
    for bad in [
        vec![good.clone(), good.clone()],
        vec![good.clone(), format!("Bearer {}", app.keys.key("other"))],
        vec![format!("Bearer  {key}")],
        vec![format!("Bearer {key} ")],
        vec![format!("Bearer {key}\t")],
        vec![format!("Bearer\t{key}")],
        vec![key.to_owned()],
    ] {
        let headers: Vec<&str> = bad.iter().map(String::as_str).collect();
        let (code, message) = raw.call("Mint", &headers, &empty_mint).await;
        assert_eq!(code, Code::Unauthenticated as i32, "{bad:?}: {message}");
        assert!(!message.contains(&key[4..]), "the key is never echoed");
        // grpc-message as sent: percent-encoded.
        let said = message.replace("%20", " ").replace("%60", "`");
        assert!(
            said.starts_with("the authorization header is not `Bearer"),
            "{bad:?}: {said}"
        );
    }
    assert_eq!(app.count_all().await, 0);
}
