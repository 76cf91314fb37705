//! RFC 8693 token exchange: Delegate over HTTP, for services that speak OAuth.

use serde_json::Value;
use tessera::pb;

use crate::support::{
    Backend, TestApp, check,
    http::{Auth, Reply, Version, form, send},
    mint_req,
};

crate::both_backends!(a_token_is_exchanged_for_a_narrower_one);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn exchange(app: &TestApp, client: &str, fields: &[(&str, &str)]) -> Reply {
    let auth = Auth::Basic(client, app.keys.key(client));
    send(
        app.http_addr,
        None,
        Version::H1,
        form("/oauth2/token", auth, fields),
    )
    .await
}

async fn a_token_is_exchanged_for_a_narrower_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = app
        .mint(
            "minter",
            pb::MintRequest {
                audience: vec!["minter".into(), "proxy".into()],
                scopes: vec!["connector:*".into(), "tool:search".into()],
                ttl: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 0,
                }),
                ..mint_req("user-42")
            },
        )
        .await
        .unwrap();
    let base = [
        ("grant_type", EXCHANGE),
        ("subject_token", parent.token.as_str()),
        ("subject_token_type", ACCESS),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut fields = base.to_vec();
        fields.extend_from_slice(extra);
        fields
    };
    let reply = exchange(
        &app,
        "minter",
        &with(&[
            ("scope", "connector:github"),
            ("audience", "proxy"),
            ("requested_token_type", ACCESS),
        ]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), ["no-store"]);
    let body = reply.json();
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "connector:github");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((595..=600).contains(&expires_in), "{body}");
    let child = body["access_token"].as_str().unwrap();
    let scoped = pb::ValidateRequest {
        required_scopes: vec!["connector:github".into()],
        ..check(child)
    };
    let valid = app.validate("proxy", scoped).await.unwrap();
    assert!(valid.valid);
    assert_eq!(
        valid.grant.unwrap().parent_grant_id,
        parent.grant.unwrap().grant_id
    );
    // Only `proxy` may use it.
    assert!(!app.validate("minter", check(child)).await.unwrap().valid);

    let error = |reply: Reply| -> (u16, Value) { (reply.status, reply.json()["error"].clone()) };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with(&[("scope", "tool:*")]), "invalid_scope"),
        (with(&[("audience", "reader")]), "invalid_target"),
        // A resource URI is an audience entry: outside the parent's, or not
        // a URI at all, it is not a target.
        (
            with(&[("resource", "https://mcp.example/")]),
            "invalid_target",
        ),
        (with(&[("resource", "proxy")]), "invalid_target"),
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (base[..2].to_vec(), "invalid_request"),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", "tsr_not_a_live_one"),
                ("subject_token_type", ACCESS),
            ],
            "invalid_grant",
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(
            error(exchange(&app, "minter", &fields).await),
            (400, expected.into()),
            "{fields:?}"
        );
    }
    // Delegating needs the `mint` role.
    assert_eq!(exchange(&app, "reader", &with(&[])).await.status, 403);
}
