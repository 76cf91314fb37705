//! The five systems of `../shared/USE-CASES.md`, each followed step by step
//! through Tessera, as that system would call it.

use std::{sync::Arc, time::Duration};

use tessera::pb::{self, revoke_request::Target, token_authority_client::TokenAuthorityClient};
use tonic::Code;

use crate::support::{
    Backend, Keys, Process, TestApp, TestDb, channel, check, claim,
    http::{Auth, Version, form, get, send},
    keyed, mint_req, revoke,
};

fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// 1. One-shot proxy credential: the platform mints a token bound to a
/// secret's id, usable once, for 60 s, by the egress proxy only; the proxy
/// claims it and learns the secret's id; nothing else works; operators see
/// what is outstanding; the audit trail names the grant and the secret's
/// id, never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_1_one_shot_proxy_credential() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let server = Process::spawn(db.url(), keys.file.path(), "info").await;
    let mut client = TokenAuthorityClient::new(channel(server.addr).await);
    let (platform, proxy) = (keys.key("minter"), keys.key("proxy"));
    let one_shot = |ttl| pb::MintRequest {
        audience: vec!["proxy".into()],
        max_uses: 1,
        ttl,
        payload: b"secret-id-7".to_vec(),
        labels: [("secret_id".to_owned(), "secret-id-7".to_owned())].into(),
        ..mint_req("agent-run-1")
    };
    let minted = client
        .mint(keyed(platform, one_shot(secs(60))))
        .await
        .unwrap()
        .into_inner();
    let grant_id = minted.grant.unwrap().grant_id;

    // Operators see one outstanding token.
    let outstanding = client
        .list_grants(keyed(platform, pb::ListGrantsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outstanding.active_count, 1);
    // Only the proxy may claim it; the platform itself is refused, as for
    // an unknown token.
    let not_proxy = client
        .claim(keyed(platform, claim(&minted.token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(not_proxy.denial, pb::Denial::TokenUnknown as i32);
    let claimed = client
        .claim(keyed(proxy, claim(&minted.token)))
        .await
        .unwrap()
        .into_inner();
    assert!(claimed.claimed);
    assert_eq!(claimed.payload, b"secret-id-7");
    let again = client
        .claim(keyed(proxy, claim(&minted.token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.denial, pb::Denial::TokenUnknown as i32);
    // A claim after expiry fails.
    let short = prost_types::Duration {
        seconds: 0,
        nanos: 50_000_000,
    };
    let late = client
        .mint(keyed(platform, one_shot(Some(short))))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let expired = client
        .claim(keyed(proxy, claim(&late.token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expired.denial, pb::Denial::TokenExpired as i32);

    let log = server.terminate().await.join("\n");
    let claim_line = log
        .lines()
        .find(|l| l.contains("\"event\":\"claim\"") && l.contains("\"outcome\":\"claimed\""))
        .expect("the claim is audited");
    assert!(
        claim_line.contains(&grant_id) && claim_line.contains("secret-id-7"),
        "{claim_line}"
    );
    assert!(
        !log.contains(&minted.token[8..]),
        "a token in the audit trail"
    );
}

/// 2. Resume ticket for a suspended workflow: the checkpoint is the
/// payload; the server peeks before claiming on behalf of the verified
/// principal; a foreign principal gets exactly the unknown-ticket answer;
/// a replay fails; of eight racing resumers exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_2_resume_ticket() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    let suspend = || pb::MintRequest {
        max_uses: 1,
        payload: b"{\"step\":7}".to_vec(),
        ..mint_req("alice")
    };
    let ticket = app.mint("minter", suspend()).await.unwrap().token;
    assert!(ticket.len() >= 4 + 43, "256 bits of entropy in base62");
    let as_principal = |who: &str| pb::ClaimRequest {
        subject: who.to_owned(),
        ..claim(&ticket)
    };
    let peek = pb::ValidateRequest {
        subject: "alice".into(),
        ..check(&ticket)
    };
    assert!(app.validate("minter", peek).await.unwrap().valid);
    let foreign = app.claim("minter", as_principal("mallory")).await.unwrap();
    let unknown = app
        .claim("minter", claim(tessera::token::Token::generate().expose()))
        .await
        .unwrap();
    assert_eq!(
        prost::Message::encode_to_vec(&foreign),
        prost::Message::encode_to_vec(&unknown)
    );
    let resumed = app.claim("minter", as_principal("alice")).await.unwrap();
    assert_eq!(resumed.payload, b"{\"step\":7}");
    assert!(
        !app.claim("minter", as_principal("alice"))
            .await
            .unwrap()
            .claimed
    );

    let ticket = app.mint("minter", suspend()).await.unwrap().token;
    let resumers: Vec<_> = (0..8)
        .map(|_| {
            let (app, ticket) = (app.clone(), ticket.clone());
            tokio::spawn(async move {
                let resume = pb::ClaimRequest {
                    subject: "alice".into(),
                    ..claim(&ticket)
                };
                app.claim("minter", resume).await.unwrap().claimed
            })
        })
        .collect();
    let mut winners = 0;
    for resumer in resumers {
        winners += usize::from(resumer.await.unwrap());
    }
    assert_eq!(winners, 1);
}

/// 3. Run-scoped tool token: minted when the agent process starts (default
/// TTL), listing endpoints and operations, the project and plugin tier as
/// labels; every tool call checks it; distinct answers for a missing,
/// invalid, expired and out-of-scope token; the run's tokens counted, then
/// revoked at once when the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_3_run_scoped_tool_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let start = pb::MintRequest {
        run_id: "chat-run-1".into(),
        scopes: vec!["tool:figma.read".into(), "connector:*".into()],
        labels: [
            ("project".to_owned(), "p-9".to_owned()),
            ("plugin_tier".to_owned(), "trusted".to_owned()),
        ]
        .into(),
        ..mint_req("designer-3")
    };
    let run = app.mint("minter", start.clone()).await.unwrap();
    let grant = run.grant.unwrap();
    let lifetime = grant.expires_at.unwrap().seconds - grant.issued_at.unwrap().seconds;
    assert!(
        (899..=900).contains(&lifetime),
        "15 minutes by default: {lifetime}"
    );
    app.mint("minter", start).await.unwrap();

    let tool_call = |token: &str, scope: &str| pb::ValidateRequest {
        required_scopes: vec![scope.to_owned()],
        ..check(token)
    };
    assert!(
        app.validate("proxy", tool_call(&run.token, "tool:figma.read"))
            .await
            .unwrap()
            .valid
    );
    assert!(
        app.validate("proxy", tool_call(&run.token, "connector:github"))
            .await
            .unwrap()
            .valid
    );
    let denial = async |token: &str, scope: &str| {
        app.validate("proxy", tool_call(token, scope))
            .await
            .map(|r| r.denial)
    };
    let missing = denial("", "tool:figma.read").await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(
        denial("tsr_garbage", "tool:x").await.unwrap(),
        pb::Denial::TokenMalformed as i32
    );
    let forged = tessera::token::Token::generate().expose().to_owned();
    assert_eq!(
        denial(&forged, "tool:x").await.unwrap(),
        pb::Denial::TokenUnknown as i32
    );
    assert_eq!(
        denial(&run.token, "tool:figma.write").await.unwrap(),
        pb::Denial::ScopeMissing as i32
    );
    let brief = pb::MintRequest {
        ttl: Some(prost_types::Duration {
            seconds: 0,
            nanos: 20_000_000,
        }),
        ..mint_req("designer-3")
    };
    let brief = app.mint("minter", brief).await.unwrap().token;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        denial(&brief, "tool:x").await.unwrap(),
        pb::Denial::TokenExpired as i32
    );

    let count = async || {
        let query = pb::ListGrantsRequest {
            run_id: "chat-run-1".into(),
            ..Default::default()
        };
        let page = app
            .client()
            .list_grants(app.req("minter", query))
            .await
            .unwrap();
        page.into_inner().active_count
    };
    assert_eq!(count().await, 2);
    let exited = pb::RevokeRequest {
        reason: pb::RevokeReason::RunEnded as i32,
        ..revoke(Target::RunId("chat-run-1".into()))
    };
    assert_eq!(app.revoke("minter", exited).await.unwrap().revoked, 2);
    assert_eq!(count().await, 0);
    let ended = app
        .client()
        .get_grant(app.req(
            "minter",
            pb::GetGrantRequest {
                grant_id: grant.grant_id,
            },
        ))
        .await;
    assert_eq!(
        ended.unwrap().into_inner().grant.unwrap().revoke_reason,
        pb::RevokeReason::RunEnded as i32
    );
}

/// 5. User and team tokens for a knowledge MCP server, which verifies the
/// bearer tokens its callers send through RFC 7662 introspection: scopes
/// as allowed libraries and tools, expiry, last use recorded, one token
/// deactivated, a user disabled, a team token rotated with an overlap,
/// failures counted by reason, tokens shown only masked, public calls
/// without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_5_user_and_team_tokens() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let long_lived = |subject: &str| pb::MintRequest {
        audience: vec!["reader".into()],
        scopes: vec!["library:handbook".into(), "tool:search".into()],
        ttl: secs(30 * 86_400),
        ..mint_req(subject)
    };
    let introspect = async |token: &str| {
        let request = form(
            "/oauth2/introspect",
            Auth::Basic("reader", app.keys.key("reader")),
            &[("token", token)],
        );
        send(app.http_addr, None, Version::H1, request).await.json()
    };
    let laptop = app.mint("minter", long_lived("bob")).await.unwrap();
    let phone = app.mint("minter", long_lived("bob")).await.unwrap();
    let team = app.mint("minter", long_lived("team-ml")).await.unwrap();
    let answer = introspect(&laptop.token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "library:handbook tool:search");
    assert!(answer["exp"].as_i64().unwrap() > answer["iat"].as_i64().unwrap() + 29 * 86_400);

    // Last use is recorded (Validate writes it in bulk, within a second).
    let id = laptop.grant.as_ref().unwrap().grant_id.clone();
    crate::support::eventually("last use recorded", async || {
        let request = app.req(
            "minter",
            pb::GetGrantRequest {
                grant_id: id.clone(),
            },
        );
        let grant = app
            .client()
            .get_grant(request)
            .await
            .unwrap()
            .into_inner()
            .grant
            .unwrap();
        grant.last_used_at.is_some() && grant.token_hint == laptop.token[..8]
    })
    .await;

    // One token deactivated; then the user disabled.
    app.revoke("minter", revoke(Target::Token(laptop.token.clone())))
        .await
        .unwrap();
    assert_eq!(introspect(&laptop.token).await["active"], false);
    assert_eq!(introspect(&phone.token).await["active"], true);
    let disabled = pb::RevokeRequest {
        reason: pb::RevokeReason::SubjectDisabled as i32,
        ..revoke(Target::Subject("bob".into()))
    };
    assert_eq!(app.revoke("minter", disabled).await.unwrap().revoked, 1);
    assert_eq!(introspect(&phone.token).await["active"], false);

    // The team token, reused on every request, is rotated with an overlap
    // (3 s: slack for the two introspections that must come inside it).
    let overlap = Duration::from_secs(3);
    let rotation = pb::RotateRequest {
        target: Some(pb::rotate_request::Target::Token(team.token.clone())),
        overlap: Some(overlap.try_into().unwrap()),
        ttl: None,
    };
    let rotated = app
        .client()
        .rotate(app.req("minter", rotation))
        .await
        .unwrap()
        .into_inner();
    let rotated_at = std::time::Instant::now();
    assert_eq!(introspect(&team.token).await["active"], true);
    assert_eq!(introspect(&rotated.token).await["active"], true);
    // The overlap ran from before the answer came.
    tokio::time::sleep_until((rotated_at + overlap + Duration::from_millis(100)).into()).await;
    assert_eq!(introspect(&team.token).await["active"], false);

    // Failures by reason, for the operators; public calls need no token.
    let metrics = send(
        app.http_addr,
        None,
        Version::H1,
        get("/metrics", Some(app.keys.key("scraper"))),
    )
    .await
    .text();
    let revoked =
        r#"tessera_token_checks_total{op="validate",outcome="TOKEN_UNKNOWN",hidden="REVOKED"}"#;
    assert!(metrics.contains(revoked), "{metrics}");
    assert_eq!(
        send(
            app.http_addr,
            None,
            Version::H1,
            get("/.well-known/oauth-authorization-server", None)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(app.http_addr, None, Version::H1, get("/healthz", None))
            .await
            .status,
        200
    );
}

/// 4. Stored upstream credentials per bearer: the runtime keeps each
/// bearer's upstream access and refresh tokens; they survive a restart,
/// are isolated per bearer, say when the access token is near expiry; of
/// many workers one refreshes at a time while readers are served the old
/// secret; and a grant can name the credential so that the egress proxy's
/// claim receives the upstream key itself (the agent never sees it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_4_stored_upstream_credentials() {
    use crate::credentials::{ACCESS, secret, with_key};
    let key = crate::support::seal_key_file(&[("k1", crate::credentials::K1)]);
    let app = TestApp::spawn_with(Backend::Postgres, with_key(&key)).await;
    let near = (std::time::SystemTime::now() + Duration::from_secs(60)).into();
    let put = pb::PutRequest {
        bearer_id: "bearer-1".into(),
        name: "github".into(),
        secret: secret(ACCESS),
        expires_at: Some(near),
        if_version: Some(0),
    };
    let stored = app
        .credentials()
        .put(app.req("minter", put))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.version, 1);
    let get = |bearer: &str| pb::GetRequest {
        bearer_id: bearer.into(),
        name: "github".into(),
        refresh_window: None,
    };

    // It survives a restart, and another bearer has nothing.
    let keys = app.keys.clone();
    let (db, _) = app.stop().await;
    let app = Arc::new(TestApp::start(db, keys, with_key(&key)).await);
    let read = app
        .credentials()
        .get(app.req("minter", get("bearer-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (read.version, read.refresh_due),
        (1, true),
        "expires within 5 minutes"
    );
    assert_eq!(read.secret, secret(ACCESS));
    let other = app
        .credentials()
        .get(app.req("minter", get("bearer-2")))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);

    // Eight workers notice; one refreshes, the others keep reading.
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let begin = pb::BeginRefreshRequest {
                    bearer_id: "bearer-1".into(),
                    name: "github".into(),
                    lease_ttl: Some(prost_types::Duration {
                        seconds: 30,
                        nanos: 0,
                    }),
                };
                app.credentials()
                    .begin_refresh(app.req("minter", begin))
                    .await
                    .unwrap()
                    .into_inner()
            })
        })
        .collect();
    let mut holders = Vec::new();
    for worker in workers {
        let lease = worker.await.unwrap();
        if lease.granted {
            holders.push(lease.lease_id);
        }
    }
    assert_eq!(holders.len(), 1, "one refresher at a time");
    let during = app
        .credentials()
        .get(app.req("minter", get("bearer-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(during.version, 1, "readers are served the current secret");
    let fresh = pb::CompleteRefreshRequest {
        lease_id: holders[0].clone(),
        secret: secret(b"at-REFRESHED"),
        expires_at: Some((std::time::SystemTime::now() + Duration::from_secs(3600)).into()),
    };
    let refreshed = app
        .credentials()
        .complete_refresh(app.req("minter", fresh))
        .await
        .unwrap();
    assert_eq!(refreshed.into_inner().version, 2);

    // The grant names the credential; the egress proxy's claim gets the
    // upstream key, current at claim time.
    let mint = pb::MintRequest {
        audience: vec!["proxy".into()],
        max_uses: 1,
        payload_credential: Some(pb::CredentialRef {
            bearer_id: "bearer-1".into(),
            name: "github".into(),
        }),
        ..mint_req("bearer-1")
    };
    let minted = app.mint("minter", mint.clone()).await.unwrap();
    let named = minted.grant.unwrap().payload_credential.unwrap();
    assert_eq!(named.bearer_id, "bearer-1");
    let claimed = app.claim("proxy", claim(&minted.token)).await.unwrap();
    assert!(claimed.claimed);
    assert_eq!(claimed.credential, secret(b"at-REFRESHED"));
    assert_eq!(claimed.credential_version, 2);
    // A credential the minter does not have cannot be named.
    let missing = pb::MintRequest {
        payload_credential: Some(pb::CredentialRef {
            bearer_id: "bearer-9".into(),
            name: "github".into(),
        }),
        ..mint.clone()
    };
    let err = app.mint("minter", missing).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("payload_credential"), "{err:?}");
    // A credential deleted after the mint: the claim fails and spends nothing.
    let orphan = app.mint("minter", mint).await.unwrap().token;
    let delete = pb::DeleteRequest {
        bearer_id: "bearer-1".into(),
        name: "github".into(),
    };
    app.credentials()
        .delete(app.req("minter", delete))
        .await
        .unwrap();
    let err = app.claim("proxy", claim(&orphan)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let still = app.validate("proxy", check(&orphan)).await.unwrap();
    assert_eq!((still.valid, still.grant.unwrap().use_count), (true, 0));
}
