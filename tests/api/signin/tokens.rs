//! `/oauth2/token`'s sign-in grants: codes are single use and PKCE-bound,
//! a replayed code or refresh token revokes its whole family, and every
//! token is an ordinary grant for the resource.

use super::{REDIRECT, Signin};
use crate::{
    both_backends,
    support::{Backend, MCP_RESOURCE, http::Auth},
};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const INVALID_GRANT: &str =
    "the grant is invalid, expired, used, revoked, or was issued to another client";

async fn redeem(
    signin: &Signin,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> crate::support::http::Reply {
    signin
        .post(
            "/oauth2/token",
            Auth::None,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", client_id),
                ("resource", MCP_RESOURCE),
            ],
        )
        .await
}

async fn refresh(signin: &Signin, client_id: &str, token: &str) -> crate::support::http::Reply {
    signin
        .post(
            "/oauth2/token",
            Auth::None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", client_id),
                ("resource", MCP_RESOURCE),
            ],
        )
        .await
}

fn invalid_grant(reply: &crate::support::http::Reply) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "invalid_grant", "error_description": INVALID_GRANT})
    );
}

async fn a_code_gives_tokens_for_its_resource_once(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("none").await;
    let id = client["client_id"].as_str().unwrap();

    // A wrong verifier spends the code and gets nothing.
    let code = signin.code(id, "alice", VERIFIER).await;
    let wrong = "x".repeat(43);
    invalid_grant(&redeem(&signin, id, &code, &wrong).await);
    invalid_grant(&redeem(&signin, id, &code, VERIFIER).await);
    // A verifier that is not one (RFC 7636 4.1) is named.
    let code = signin.code(id, "alice", VERIFIER).await;
    let short = redeem(&signin, id, &code, "short").await;
    assert_eq!(short.status, 400);
    assert!(short.text().contains("code_verifier"), "{}", short.text());

    // Another client's code.
    let other = signin.register("none").await;
    let code = signin.code(id, "alice", VERIFIER).await;
    invalid_grant(
        &redeem(
            &signin,
            other["client_id"].as_str().unwrap(),
            &code,
            VERIFIER,
        )
        .await,
    );

    // The right one: a bearer token for the resource, for alice.
    let code = signin.code(id, "alice", VERIFIER).await;
    let reply = redeem(&signin, id, &code, VERIFIER).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), ["no-store"]);
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "docs:read");
    let access = tokens["access_token"].as_str().unwrap();
    let seen = signin.active(access).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["sub"], "alice");
    assert_eq!(seen["aud"], serde_json::json!([MCP_RESOURCE]));
    assert_eq!(seen["client_id"], id);
    // The refresh token is no access token for the resource.
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(signin.active(refresh_token).await["active"], false);

    // Replayed: refused, and the tokens it gave are revoked before the answer.
    invalid_grant(&redeem(&signin, id, &code, VERIFIER).await);
    assert_eq!(signin.active(access).await["active"], false);
    invalid_grant(&refresh(&signin, id, refresh_token).await);

    // Neither token, nor the code, is stored or logged in the clear.
    for row in signin.app.db.dump().await {
        let row = String::from_utf8_lossy(&row).into_owned();
        assert!(!row.contains(access) && !row.contains(refresh_token) && !row.contains(&code));
    }
}

async fn a_reused_refresh_token_revokes_its_family(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("none").await;
    let id = client["client_id"].as_str().unwrap();
    let code = signin.code(id, "alice", VERIFIER).await;
    let first = redeem(&signin, id, &code, VERIFIER).await.json();
    let first_refresh = first["refresh_token"].as_str().unwrap();

    // Rotation: a new pair; the old refresh token is spent.
    let second = refresh(&signin, id, first_refresh).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    let second_access = second["access_token"].as_str().unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(signin.active(second_access).await["sub"], "alice");
    // Another client cannot use it (and does not spend it).
    let other = signin.register("none").await;
    invalid_grant(
        &refresh(
            &signin,
            other["client_id"].as_str().unwrap(),
            second_refresh,
        )
        .await,
    );

    // The spent one again: refused, and the whole family is revoked.
    invalid_grant(&refresh(&signin, id, first_refresh).await);
    for access in [first["access_token"].as_str().unwrap(), second_access] {
        assert_eq!(signin.active(access).await["active"], false);
    }
    invalid_grant(&refresh(&signin, id, second_refresh).await);
}

async fn confidential_clients_prove_their_secret(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("client_secret_basic").await;
    let id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    let code = signin.code(id, "bob", VERIFIER).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", REDIRECT),
    ];
    // Without its secret, or with a wrong one: invalid_client, code unspent.
    let mut with_id = fields.to_vec();
    with_id.push(("client_id", id));
    let reply = signin.post("/oauth2/token", Auth::None, &with_id).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let reply = signin
        .post("/oauth2/token", Auth::Basic(id, "wrong"), &fields)
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(!reply.text().contains("wrong"));
    let reply = signin
        .post("/oauth2/token", Auth::Basic(id, secret), &fields)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        signin
            .active(reply.json()["access_token"].as_str().unwrap())
            .await["sub"],
        "bob"
    );
}

async fn registration_checks_every_field(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let post = |body: serde_json::Value| {
        let request = http::Request::post("/oauth2/register")
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .unwrap();
        crate::support::http::send(
            signin.app.http_addr,
            None,
            crate::support::http::Version::H1,
            request,
        )
    };
    for (body, error, field) in [
        (
            serde_json::json!({}),
            "invalid_redirect_uri",
            "redirect_uris: is required",
        ),
        (
            serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
            "redirect_uris[0]: must be https, or http on a loopback host",
        ),
        (
            serde_json::json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
            "grant_types:",
        ),
        (
            serde_json::json!({"redirect_uris": [REDIRECT], "client_name": "x".repeat(201)}),
            "invalid_client_metadata",
            "client_name:",
        ),
    ] {
        let reply = post(body).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert_eq!(reply.json()["error"], error);
        let description = reply.json()["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(description.starts_with(field), "{description}");
    }
    // A public client gets no secret.
    let public = signin.register("none").await;
    assert!(public.get("client_secret").is_none());
    assert_eq!(public["token_endpoint_auth_method"], "none");
    assert_eq!(public["redirect_uris"], serde_json::json!([REDIRECT]));
}

both_backends!(
    a_code_gives_tokens_for_its_resource_once,
    a_reused_refresh_token_revokes_its_family,
    confidential_clients_prove_their_secret,
    registration_checks_every_field,
);
