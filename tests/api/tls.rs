//! TLS on the listener (gRPC and HTTP), mTLS, certificate reloads, the
//! rule against plaintext beyond loopback, and TLS to PostgreSQL.

use tessera::{app::App, config::TlsConfig, pb::token_authority_client::TokenAuthorityClient};

use crate::support::{
    Backend, Keys, Options, TestApp, TestDb, check, config, eventually,
    http::{self, Auth, Version, form},
    keyed, mint_req,
    tls::{Ca, Leaf, replace, rustls_client, tls_channel, write},
};

struct Files {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("tessera test CA"),
        }
    }

    fn config(&self, leaf: &Leaf, client_ca: Option<&str>) -> TlsConfig {
        TlsConfig {
            tls_cert: Some(write(&self.dir, "tls.crt", &leaf.cert)),
            tls_key: Some(write(&self.dir, "tls.key", &leaf.key)),
            tls_client_ca: client_ca.map(|pem| write(&self.dir, "ca.crt", pem)),
            plaintext: false,
        }
    }
}

async fn spawn_tls(tls: TlsConfig) -> TestApp {
    TestApp::spawn_with(
        Backend::Sqlite,
        Options {
            tls,
            ..Options::default()
        },
    )
    .await
}

async fn validates(app: &TestApp, channel: tonic::transport::Channel) -> bool {
    let token = {
        let mut client = TokenAuthorityClient::new(channel.clone());
        let minted = client
            .mint(keyed(app.keys.key("minter"), mint_req("u")))
            .await;
        match minted {
            Ok(minted) => minted.into_inner().token,
            Err(_) => return false,
        }
    };
    let mut client = TokenAuthorityClient::new(channel);
    client
        .validate(keyed(app.keys.key("minter"), check(&token)))
        .await
        .is_ok_and(|r| r.into_inner().valid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_are_served_over_tls() {
    let files = Files::new();
    let app = spawn_tls(files.config(&files.ca.server(), None)).await;
    let channel = tls_channel(app.addr, &files.ca.pem, None).await.unwrap();
    assert!(validates(&app, channel).await);

    // HTTP/1.1 and HTTP/2 over TLS (ALPN), with the same listener.
    for (version, alpn) in [(Version::H1, &b"http/1.1"[..]), (Version::H2, &b"h2"[..])] {
        let client = rustls_client(&files.ca.pem, &[alpn]);
        let request = form(
            "/oauth2/introspect",
            Auth::Bearer(app.keys.key("reader")),
            &[("token", "tsr_x")],
        );
        let reply = http::send(app.addr, Some(client), version, request).await;
        assert_eq!(reply.body, br#"{"active":false}"#);
    }
    let metadata = http::send(
        app.addr,
        Some(rustls_client(&files.ca.pem, &[b"http/1.1"])),
        Version::H1,
        http::get("/.well-known/oauth-authorization-server", None),
    )
    .await;
    assert_eq!(metadata.json()["issuer"], format!("https://{}", app.addr));

    // Plaintext to a TLS listener gets nowhere; nor does a client that
    // trusts another CA.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await;
    assert!(plain.is_err() || !validates(&app, plain.unwrap()).await);
    let stranger = Ca::new("another CA");
    assert!(tls_channel(app.addr, &stranger.pem, None).await.is_err());

    // `tessera health` speaks TLS too.
    let ca = write(&files.dir, "server-ca.crt", &files.ca.pem);
    let addr = app.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        crate::ops::tessera(&["health", "--addr", &addr, "--tls-ca", ca.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SERVING\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let files = Files::new();
    let client_ca = Ca::new("client CA");
    let app = spawn_tls(files.config(&files.ca.server(), Some(&client_ca.pem))).await;
    let with_cert = tls_channel(app.addr, &files.ca.pem, Some(&client_ca.client("proxy")))
        .await
        .unwrap();
    assert!(validates(&app, with_cert).await);
    // Without a certificate, or with one the client CA did not sign: the
    // handshake fails (with TLS 1.3 the client may learn it on first use).
    let unsigned = Ca::new("rogue CA").client("proxy");
    for identity in [None, Some(&unsigned)] {
        let refused = match tls_channel(app.addr, &files.ca.pem, identity).await {
            Err(_) => true,
            Ok(channel) => !validates(&app, channel).await,
        };
        assert!(refused);
    }
}

/// cert-manager rewrites the files: new connections get the new
/// certificate, open ones carry on, and a bad file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_dropping_connections() {
    let files = Files::new();
    let config = files.config(&files.ca.server(), None);
    let (cert, key) = (
        config.tls_cert.clone().unwrap(),
        config.tls_key.clone().unwrap(),
    );
    let app = spawn_tls(config).await;
    let open = tls_channel(app.addr, &files.ca.pem, None).await.unwrap();
    assert!(validates(&app, open.clone()).await);

    // A broken certificate is not taken up.
    replace(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    // The server has read the broken file (and kept its certificate).
    eventually("the broken certificate is read", async || {
        let scrape = http::get("/metrics", Some(app.keys.key("scraper")));
        let client = rustls_client(&files.ca.pem, &[b"http/1.1"]);
        let metrics = http::send(app.addr, Some(client), Version::H1, scrape).await;
        metrics
            .text()
            .contains(r#"tessera_reloads_total{file="tls",result="failed"} "#)
    })
    .await;
    let still = tls_channel(app.addr, &files.ca.pem, None).await.unwrap();
    assert!(validates(&app, still).await);

    let rotated = Ca::new("rotated CA");
    let leaf = rotated.server();
    replace(&key, &leaf.key);
    replace(&cert, &leaf.cert);
    eventually("new connections get the new certificate", async || {
        tls_channel(app.addr, &rotated.pem, None).await.is_ok()
    })
    .await;
    assert!(tls_channel(app.addr, &files.ca.pem, None).await.is_err());
    assert!(
        validates(&app, open).await,
        "the open connection was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_beyond_loopback_needs_to_be_asked_for() {
    let db = TestDb::new(Backend::Sqlite).await;
    let keys = Keys::new();
    let clients = Some(keys.file.path().to_owned());
    let mut open = config(db.url(), clients.clone(), &Options::default());
    open.listen = "0.0.0.0:0".into();
    let err = App::build(open.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("without TLS") && err.contains("--plaintext"),
        "{err}"
    );
    let dev = crate::support::config(db.url(), None, &Options::default());
    let err = App::build(tessera::config::Config {
        listen: "0.0.0.0:0".into(),
        ..dev
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("dev mode"), "{err}");
    open.tls.plaintext = true;
    App::build(open)
        .await
        .expect("--plaintext is an explicit choice");

    // Host names resolve.
    let mut named = config(db.url(), clients, &Options::default());
    named.listen = "localhost:0".into();
    let app = App::build(named).await.expect("localhost resolves");
    assert!(app.local_addr().ip().is_loopback());
}

/// `sslmode=require` reaches PostgreSQL over TLS (Debian's runs with
/// `ssl = on`); `verify-full` against a CA that did not sign the server's
/// certificate fails at start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let url = format!("{}&sslmode=require", db.url());
    let app = TestApp::start_config(
        db.shared(),
        keys.clone(),
        config(&url, Some(keys.file.path().to_owned()), &Options::default()),
    )
    .await;
    let token = app.mint("minter", mint_req("u")).await.unwrap().token;
    assert!(app.validate("minter", check(&token)).await.unwrap().valid);
    let name = url
        .rsplit("application_name=")
        .next()
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let pool = sqlx::PgPool::connect(&crate::support::postgres_url())
        .await
        .unwrap();
    let ssl: Vec<bool> = sqlx::query_scalar(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
    )
    .bind(name)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!ssl.is_empty() && ssl.iter().all(|on| *on), "{ssl:?}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = write(&dir, "wrong-ca.crt", &Ca::new("not the database's CA").pem);
    let url = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        db.url(),
        wrong.display()
    );
    let err = App::build(config(
        &url,
        Some(keys.file.path().to_owned()),
        &Options::default(),
    ))
    .await
    .err()
    .expect("an untrusted database certificate is refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
}
