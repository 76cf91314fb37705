//! Operations: restarts, health, reflection, the sweeper, shutdown.

use std::time::{Duration, Instant};

use tessera::pb::{self, Denial, revoke_request::Target};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{
    Backend, Keys, Options, PATIENCE, Process, Proxy, TestApp, TestDb, channel, check, claim,
    config, eventually, keyed, mint_req, postgres_addr, revoke,
};

crate::both_backends!(
    grants_survive_a_restart,
    sweeper_deletes_grants_past_retention,
    health_and_reflection
);

async fn grants_survive_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let live = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 2,
                payload: b"p".to_vec(),
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    assert!(
        app.claim("minter", claim(&live.token))
            .await
            .unwrap()
            .claimed
    );
    let revoked = app.mint("minter", mint_req("u")).await.unwrap();
    app.revoke("minter", revoke(Target::Token(revoked.token.clone())))
        .await
        .unwrap();
    let (db, keys) = app.stop().await;

    let app = TestApp::start(db, keys, Options::default()).await;
    let again = app.claim("minter", claim(&live.token)).await.unwrap();
    assert!(again.claimed);
    assert_eq!(again.grant.unwrap().use_count, 2);
    assert_eq!(again.payload, b"p");
    assert!(
        !app.claim("minter", claim(&live.token))
            .await
            .unwrap()
            .claimed
    );
    let gone = app.validate("minter", check(&revoked.token)).await.unwrap();
    assert_eq!(gone.denial, Denial::TokenUnknown as i32);
}

async fn sweeper_deletes_grants_past_retention(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            retention: "300ms",
            sweep_interval: "100ms",
            ..Options::default()
        },
    )
    .await;
    let short = pb::MintRequest {
        ttl: Some(prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000,
        }),
        ..mint_req("u")
    };
    let expired = app.mint("minter", short).await.unwrap();
    let used = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    assert!(
        app.claim("minter", claim(&used.token))
            .await
            .unwrap()
            .claimed
    );
    let revoked = app.mint("minter", mint_req("u")).await.unwrap();
    app.revoke("minter", revoke(Target::Token(revoked.token.clone())))
        .await
        .unwrap();
    let live = app.mint("minter", mint_req("u")).await.unwrap();
    let id = |m: &pb::MintResponse| m.grant.as_ref().unwrap().grant_id.clone();

    eventually("the sweeper deleted what ended", async || {
        app.count_all().await <= 1
    })
    .await;
    for gone in [&expired, &used, &revoked] {
        assert_eq!(
            app.get("minter", &id(gone)).await.unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
    assert!(
        app.validate("minter", check(&live.token))
            .await
            .unwrap()
            .valid
    );
}

async fn health_and_reflection(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "tessera.v1.TokenAuthority"] {
        wait_for(&mut health, service, ServingStatus::Serving, PATIENCE).await;
    }
    // Health needs no key (the request carries none).
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    use tonic_reflection::pb::{v1, v1alpha};
    let mut v1_client =
        v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = v1_client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1 reflection lists services");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "tessera.v1.TokenAuthority",
        "tessera.v1.Credentials",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "tessera.v1.TokenAuthority".into(),
            ),
        ),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

async fn wait_for(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    want: ServingStatus,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == want as i32) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{service:?} not {want:?} within {within:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Readiness follows the database: cut PostgreSQL off through a proxy, the
/// server turns NOT_SERVING within 5 s, and SERVING again when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database() {
    let proxy = Proxy::start(postgres_addr().await).await;
    let mut app = TestApp::spawn_behind(&proxy).await;
    let channel = app.channel.clone();
    let mut health = HealthClient::new(channel.clone());
    let names = ["", "tessera.v1.TokenAuthority"];
    for service in names {
        wait_for(&mut health, service, ServingStatus::Serving, PATIENCE).await;
    }

    proxy.cut();
    for service in names {
        // Two health intervals (2 s), with slack for a busy machine: a
        // server that never noticed would not pass.
        let took = wait_for(
            &mut health,
            service,
            ServingStatus::NotServing,
            Duration::from_secs(20),
        )
        .await;
        eprintln!("{service:?} NOT_SERVING after {took:?}");
    }
    // Liveness is about the process: it stays SERVING through the outage.
    let liveness = health
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap();
    assert_eq!(liveness.into_inner().status, ServingStatus::Serving as i32);
    // Calls fail as UNAVAILABLE, never as a denial.
    let err = app.mint("minter", mint_req("u")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // A malformed token is judged without the database: still a denial.
    let answer = app.validate("proxy", check("tsr_garbage")).await.unwrap();
    assert_eq!(answer.denial, Denial::TokenMalformed as i32);

    proxy.restore();
    for service in names {
        let took = wait_for(&mut health, service, ServingStatus::Serving, PATIENCE).await;
        eprintln!("{service:?} SERVING after {took:?}");
    }
    app.shutdown().await;
}

/// SIGTERM: the process finishes and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly() {
    let db = TestDb::new(Backend::Sqlite).await;
    let keys = Keys::new();
    let server = Process::spawn(db.url(), keys.file.path(), "info").await;
    let channel = channel(server.addr).await;
    let mut client = pb::token_authority_client::TokenAuthorityClient::new(channel);
    let request = keyed(keys.key("minter"), mint_req("u"));
    client.mint(request).await.unwrap();
    let log = server.terminate().await;
    assert!(log.iter().any(|l| l.contains("\"stopped\"")), "{log:#?}");
}

/// Without a clients file the server refuses to listen beyond loopback.
#[tokio::test]
async fn dev_mode_stays_on_loopback() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = config(db.url(), None, &Options::default());
    config.listen = "0.0.0.0:0".parse().unwrap();
    let err = tessera::app::App::build(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

pub fn tessera(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("tessera runs")
}

/// `client-key` prints an entry the server accepts, and the key only to the
/// terminal (stderr), never into the file-bound stdout.
#[test]
fn client_key_prints_an_entry_that_admits_the_key() {
    let out = tessera(&["client-key", "egress-proxy", "claim", "validate"]);
    assert!(out.status.success());
    let entry = String::from_utf8(out.stdout).unwrap();
    let key = String::from_utf8(out.stderr)
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("tsk_"))
        .expect("the key is printed")
        .to_owned();
    assert!(
        !entry.contains(&key[4..]),
        "the entry holds only the key's hash"
    );
    let clients = tessera::clients::Clients::parse(&entry).unwrap();
    let caller = clients.authenticate(Some(&key)).unwrap();
    assert_eq!(caller.id, "egress-proxy");
    assert!(caller.has(tessera::clients::Role::Claim));
    assert!(!caller.has(tessera::clients::Role::Mint));

    let bad = tessera(&["client-key", "egress-proxy", "superuser"]);
    assert!(!bad.status.success());
}

/// `tessera migrate` prepares a database that a server started with
/// `--no-migrate` then uses; without it, `--no-migrate` refuses to start
/// (rather than report SERVING while every call fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_command_and_no_migrate_flag() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDb::new(backend).await;
        let keys = Keys::new();
        let mut unmigrated = config(db.url(), Some(keys.file.path().into()), &Options::default());
        unmigrated.no_migrate = true;
        let err = tessera::app::App::build(unmigrated.clone())
            .await
            .err()
            .expect("an empty database is refused at start")
            .to_string();
        assert!(err.contains("tessera migrate"), "{err}");

        let out = tessera(&["migrate", "--database-url", db.url()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let app = TestApp::start_config(db, keys, unmigrated).await;
        assert!(app.mint("minter", mint_req("u")).await.is_ok());
    }
}
