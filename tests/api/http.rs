//! The HTTP face, with a real HTTP client: RFC 7662 introspection, RFC 7009
//! revocation, RFC 8414 metadata, probes and metrics.

use std::collections::BTreeMap;

use serde_json::json;
use tessera::pb::{self, revoke_request::Target};

use crate::support::{
    Backend, Options, TestApp, check, claim,
    http::{Auth, Reply, Version, form, get, send},
    mint_req, revoke,
};

crate::both_backends!(
    introspection_answers_as_rfc_7662,
    every_refusal_is_the_same_bytes,
    revocation_as_rfc_7009
);

async fn introspect(app: &TestApp, auth: Auth<'_>, token: &str) -> Reply {
    let request = form("/oauth2/introspect", auth, &[("token", token)]);
    send(app.http_addr, None, Version::H1, request).await
}

async fn introspection_answers_as_rfc_7662(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                audience: vec!["reader".into(), "proxy".into()],
                run_id: "run-7".into(),
                scopes: vec!["tool:search".into(), "connector:*".into()],
                labels: BTreeMap::from([("project".into(), "p-1".into())])
                    .into_iter()
                    .collect(),
                max_uses: 3,
                ..mint_req("user-42")
            },
        )
        .await
        .unwrap();
    let grant = minted.grant.unwrap();
    let reply = introspect(&app, Auth::Bearer(app.keys.key("reader")), &minted.token).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), ["no-store"]);
    assert_eq!(reply.header("content-type"), ["application/json"]);
    let body = reply.json();
    let expires = grant.expires_at.unwrap();
    let issued = grant.issued_at.unwrap();
    assert_eq!(
        body,
        json!({
            "active": true,
            "scope": "tool:search connector:*",
            "client_id": "minter",
            "sub": "user-42",
            "aud": ["reader", "proxy"],
            "exp": expires.seconds,
            "iat": issued.seconds,
            "iss": format!("http://{}", app.addr),
            "jti": grant.grant_id,
            "token_type": "Bearer",
            "run_id": "run-7",
            "max_uses": 3,
            "use_count": 0,
            "labels": {"project": "p-1"},
        })
    );
    // A non-consuming check: the uses are all still there.
    app.claim("proxy", claim(&minted.token)).await.unwrap();
    let body = introspect(&app, Auth::Bearer(app.keys.key("reader")), &minted.token)
        .await
        .json();
    assert_eq!(body["use_count"], 1);

    // Basic (RFC 6749 2.3.1) and form credentials authenticate the same client.
    let key = app.keys.key("reader");
    assert_eq!(
        introspect(&app, Auth::Basic("reader", key), &minted.token)
            .await
            .json()["active"],
        true
    );
    let post = form(
        "/oauth2/introspect",
        Auth::None,
        &[
            ("token", &minted.token),
            ("client_id", "reader"),
            ("client_secret", key),
        ],
    );
    assert_eq!(
        send(app.http_addr, None, Version::H1, post).await.json()["active"],
        true
    );
    // Over HTTP/2 too.
    let h2 = form(
        "/oauth2/introspect",
        Auth::Bearer(key),
        &[("token", &minted.token)],
    );
    assert_eq!(
        send(app.http_addr, None, Version::H2, h2).await.json()["active"],
        true
    );
}

async fn every_refusal_is_the_same_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let for_reader = || pb::MintRequest {
        audience: vec!["reader".into()],
        ..mint_req("u")
    };
    let mint = async |request| app.mint("minter", request).await.unwrap().token;
    let revoked = mint(for_reader()).await;
    app.revoke("minter", revoke(Target::Token(revoked.clone())))
        .await
        .unwrap();
    let used = mint(pb::MintRequest {
        max_uses: 1,
        audience: vec!["reader".into(), "proxy".into()],
        ..mint_req("u")
    })
    .await;
    app.claim("proxy", claim(&used)).await.unwrap();
    let not_for_reader = mint(pb::MintRequest {
        audience: vec!["proxy".into()],
        ..mint_req("u")
    })
    .await;
    let expired = mint(pb::MintRequest {
        ttl: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1_000_000,
        }),
        ..for_reader()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let never = tessera::token::Token::generate().expose().to_owned();
    let live = mint(for_reader()).await;
    assert!(app.validate("reader", check(&live)).await.unwrap().valid);

    let key = app.keys.key("reader");
    let first = introspect(&app, Auth::Bearer(key), &never).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, br#"{"active":false}"#);
    for token in [
        &revoked,
        &used,
        &not_for_reader,
        &expired,
        &"tsr_not_a_token".to_owned(),
    ] {
        let reply = introspect(&app, Auth::Bearer(key), token).await;
        assert_eq!(
            (reply.status, &reply.body),
            (first.status, &first.body),
            "{token}"
        );
        let names = |r: &Reply| {
            let mut names: Vec<(String, String)> = r
                .headers
                .iter()
                .filter(|(name, _)| *name != "date")
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&reply), names(&first));
    }
}

async fn revocation_as_rfc_7009(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.mint("minter", mint_req("u")).await.unwrap().token;
    let revoke = |client: &'static str, token: String| {
        let app = &app;
        async move {
            let key = app.keys.key(client);
            let request = form(
                "/oauth2/revoke",
                Auth::Bearer(key),
                &[("token", &token), ("token_type_hint", "access_token")],
            );
            send(app.http_addr, None, Version::H1, request).await
        }
    };
    // `reader` lacks the role: 403, nothing revoked.
    let refused = revoke("reader", token.clone()).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "access_denied");
    assert!(app.validate("minter", check(&token)).await.unwrap().valid);
    // Another issuer's grant is not revoked, and the answer does not say so.
    assert_eq!(revoke("other", token.clone()).await.status, 200);
    assert!(app.validate("minter", check(&token)).await.unwrap().valid);
    assert_eq!(revoke("minter", token.clone()).await.status, 200);
    assert!(!app.validate("minter", check(&token)).await.unwrap().valid);
    // Unknown and malformed tokens: 200 as well (RFC 7009 2.2).
    assert_eq!(revoke("minter", token).await.status, 200);
    assert_eq!(revoke("minter", "tsr_nope".into()).await.status, 200);
    let grants = app
        .client()
        .list_grants(app.req(
            "minter",
            pb::ListGrantsRequest {
                include_inactive: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(grants[0].revoke_reason, pb::RevokeReason::Manual as i32);
}

/// A bad caller is 401 with challenges; bad input is 400 naming the field;
/// neither reads or writes a grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callers_and_bad_input_are_refused_clearly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    let (token, id) = (minted.token, minted.grant.unwrap().grant_id);
    let key = app.keys.key("reader");
    let long = "x".repeat(129);

    // The description says what the caller can fix: no key, or a key not
    // known; a known key under another client's id reads exactly like an
    // unknown key, so the answer tells nothing about which keys exist.
    let unknown = "not a known client key";
    for (auth, says) in [
        (Auth::None, "no client key"),
        (Auth::Bearer("tsk_unknown"), unknown),
        (Auth::Basic("proxy", key), unknown),
        (Auth::Basic("reader", "tsk_wrong"), unknown),
    ] {
        let reply = introspect(&app, auth, &token).await;
        assert_eq!(reply.status, 401);
        let body = reply.json();
        assert_eq!(body["error"], "invalid_client");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with(says), "{description}");
        assert!(description.contains("tessera clients add"), "{description}");
        assert!(!reply.header("www-authenticate").is_empty());
    }
    let mismatch = introspect(&app, Auth::Basic("proxy", key), &token).await;
    let wrong = introspect(&app, Auth::Basic("reader", "tsk_wrong"), &token).await;
    assert_eq!(
        mismatch.json(),
        wrong.json(),
        "same bytes for every refused key"
    );
    let bearer = introspect(&app, Auth::Bearer("tsk_unknown"), &token).await;
    assert_eq!(
        bearer.header("www-authenticate"),
        [r#"Bearer realm="tessera", error="invalid_token""#]
    );
    let basic = introspect(&app, Auth::Basic("reader", "tsk_wrong"), &token).await;
    assert_eq!(
        basic.header("www-authenticate"),
        [r#"Basic realm="tessera""#]
    );
    // `ops` has no validate role.
    assert_eq!(
        introspect(&app, Auth::Bearer(app.keys.key("ops")), &token)
            .await
            .status,
        403
    );

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "token: is required"),
        (
            vec![("token", &token), ("token", &token)],
            "token: is given more than once",
        ),
        (vec![("token", &long)], "token: must be at most 128 bytes"),
        (
            vec![("token", &token), ("client_secret", key)],
            "client_secret: must not be sent",
        ),
    ];
    for (fields, expected) in cases {
        let reply = send(
            app.http_addr,
            None,
            Version::H1,
            form("/oauth2/introspect", Auth::Bearer(key), &fields),
        )
        .await;
        assert_eq!(reply.status, 400, "{expected}");
        assert_eq!(reply.json()["error"], "invalid_request");
        let description = reply.json()["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(description.starts_with(expected), "{description}");
        assert!(!description.contains(&token[8..]) && !description.contains(key));
    }
    let mut json_body = form(
        "/oauth2/introspect",
        Auth::Bearer(key),
        &[("token", &token)],
    );
    json_body
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    assert_eq!(
        send(app.http_addr, None, Version::H1, json_body)
            .await
            .status,
        400
    );
    let huge = "a".repeat(20_000);
    let reply = send(
        app.http_addr,
        None,
        Version::H1,
        form("/oauth2/introspect", Auth::Bearer(key), &[("token", &huge)]),
    )
    .await;
    assert_eq!(reply.status, 413);
    // Nothing was used or written.
    let request = app.req("minter", pb::GetGrantRequest { grant_id: id });
    let grant = app
        .client()
        .get_grant(request)
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap();
    assert_eq!((grant.use_count, grant.last_used_at), (0, None));

    assert_eq!(
        send(app.http_addr, None, Version::H1, get("/nowhere", None))
            .await
            .status,
        404
    );
    assert_eq!(
        send(
            app.http_addr,
            None,
            Version::H1,
            get("/oauth2/introspect", None)
        )
        .await
        .status,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_probes_and_metrics() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let base = format!("http://{}", app.addr);
    let metadata = send(
        app.http_addr,
        None,
        Version::H1,
        get("/.well-known/oauth-authorization-server", None),
    )
    .await;
    assert_eq!(metadata.status, 200);
    let metadata = metadata.json();
    assert_eq!(metadata["issuer"], base);
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{base}/oauth2/introspect")
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{base}/oauth2/revoke")
    );
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );

    assert_eq!(
        send(app.http_addr, None, Version::H1, get("/healthz", None))
            .await
            .text(),
        "ok\n"
    );
    crate::support::eventually("ready", async || {
        send(app.http_addr, None, Version::H1, get("/readyz", None))
            .await
            .status
            == 200
    })
    .await;

    // Some traffic, including a refusal whose real reason only metrics show.
    let token = app.mint("minter", mint_req("u")).await.unwrap().token;
    app.revoke("minter", revoke(Target::Token(token.clone())))
        .await
        .unwrap();
    assert!(!app.validate("minter", check(&token)).await.unwrap().valid);
    introspect(&app, Auth::Bearer("tsk_unknown"), &token).await;

    // Only the `metrics` role reads them.
    assert_eq!(
        send(app.http_addr, None, Version::H1, get("/metrics", None))
            .await
            .status,
        401
    );
    assert_eq!(
        send(
            app.http_addr,
            None,
            Version::H1,
            get("/metrics", Some(app.keys.key("minter")))
        )
        .await
        .status,
        403
    );
    let reply = send(
        app.http_addr,
        None,
        Version::H1,
        get("/metrics", Some(app.keys.key("scraper"))),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type")[0].starts_with("application/openmetrics-text"));
    let text = reply.text();
    let clients = format!("tessera_clients {}", crate::support::CLIENTS.len());
    for line in [
        r#"tessera_requests_total{interface="grpc",method="Mint",code="OK"} 1"#,
        r#"tessera_requests_total{interface="http",method="introspect",code="401"} 1"#,
        r#"tessera_auth_failures_total{interface="http",reason="unauthenticated"} 2"#,
        r#"tessera_token_checks_total{op="validate",outcome="TOKEN_UNKNOWN",hidden="REVOKED"} 1"#,
        r#"tessera_db_pool_max_connections 8"#,
        &clients,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(
        text.contains("tessera_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    for secret in [&token[8..], app.keys.key("minter"), "\"u\""] {
        assert!(!text.contains(secret), "{secret} in metrics");
    }
}

/// `--http-listen` puts the HTTP face on an address of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_face_can_listen_apart() {
    let options = Options {
        http_listen: Some("127.0.0.1:0"),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;
    assert_ne!(app.http_addr, app.addr);
    assert_eq!(
        send(app.http_addr, None, Version::H1, get("/healthz", None))
            .await
            .status,
        200
    );
    assert_eq!(
        send(app.addr, None, Version::H1, get("/healthz", None))
            .await
            .status,
        404
    );
    let token = app.mint("minter", mint_req("u")).await.unwrap().token;
    assert_eq!(
        introspect(&app, Auth::Bearer(app.keys.key("minter")), &token)
            .await
            .json()["active"],
        true
    );
}

/// A body that does not arrive in time is cut at `--body-timeout` (408),
/// holding no in-flight permit meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let options = Options {
        body_timeout: "300ms",
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;
    let mut stream = tokio::net::TcpStream::connect(app.http_addr).await.unwrap();
    let head = format!(
        "POST /oauth2/introspect HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\ntoken=",
        app.keys.key("reader")
    );
    // The deadline runs from the head's arrival: after this moment.
    let started = std::time::Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = crate::support::answered("the stalled body", stream.read(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
}
