//! `BearerAuth` in an axum app, against a real server.

use axum::{Extension, Router, body::Body, routing::get};
use http::{Request, Response, StatusCode, header};
use tessera_client::{BearerAuth, Client, Consistency, Grant, Mint, Revoke, Token};
use tower::Service;

use crate::support::Server;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

fn app(tessera: Client) -> Router {
    let auth = BearerAuth::new(tessera, RESOURCE)
        .unwrap()
        .require(["mcp"])
        .public("/healthz")
        .scopes_for("/admin", ["mcp", "admin"])
        .scopes_supported(["mcp", "admin"]);
    let whoami = |Extension(grant): Extension<Grant>| async move { grant.subject };
    Router::new()
        .route("/mcp", get(whoami).post(whoami))
        .route("/admin", get(whoami))
        .route("/healthz", get(|| async { "ok" }))
        // The same layer, with scopes of its own for one route (inside
        // the router-wide one).
        .route(
            "/search",
            get(whoami).route_layer(auth.require(["tool:search"])),
        )
        .layer(auth)
}

async fn send(
    app: &Router,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut app = app.clone();
    std::future::poll_fn(|cx| <Router as Service<Request<Body>>>::poll_ready(&mut app, cx))
        .await
        .unwrap();
    let response: Response<Body> = app
        .call(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned());
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

/// A token for this resource that Tessera shows its dev-mode caller: the
/// audience names both (with a clients file, the layer's client would
/// declare the resource, and the URI alone would do: see below).
fn for_here(subject: &str) -> Mint {
    Mint::new(subject).audience(["dev", RESOURCE])
}

async fn setup() -> (Server, Client, Router) {
    let server = Server::start();
    let tessera = server.client().await;
    let app = app(tessera.clone());
    (server, tessera, app)
}

#[tokio::test]
async fn public_routes_and_the_metadata_need_no_token() {
    let (server, _, app) = setup().await;
    assert_eq!(
        send(&app, "/healthz", None).await,
        (StatusCode::OK, None, "ok".into())
    );

    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, _, body) = send(&app, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(
            doc["authorization_servers"],
            serde_json::json!([server.url])
        );
        assert_eq!(
            doc["bearer_methods_supported"],
            serde_json::json!(["header"])
        );
        assert_eq!(doc["scopes_supported"], serde_json::json!(["mcp", "admin"]));
    }
}

#[tokio::test]
async fn a_missing_token_is_401_with_the_resource_metadata() {
    let (_server, _, app) = setup().await;
    let (status, challenge, _) = send(&app, "/mcp", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer resource_metadata=\"{METADATA}\"")
    );
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler_with_its_grant() {
    let (_server, tessera, app) = setup().await;
    let minted = tessera
        .mint(for_here("user-42").scopes(["mcp", "tool:*"]))
        .await
        .unwrap();
    let token = minted.token.expose();
    assert_eq!(
        send(&app, "/mcp", Some(token)).await,
        (StatusCode::OK, None, "user-42".into())
    );
    assert_eq!(send(&app, "/search", Some(token)).await.0, StatusCode::OK);

    // BOUNDED answers too.
    let bounded = BearerAuth::new(tessera, RESOURCE)
        .unwrap()
        .consistency(Consistency::Bounded)
        .require(["mcp"]);
    let app = Router::new()
        .route(
            "/mcp",
            get(|Extension(grant): Extension<Grant>| async move { grant.grant_id }),
        )
        .layer(bounded);
    let (status, _, body) = send(&app, "/mcp", Some(token)).await;
    assert_eq!((status, body), (StatusCode::OK, minted.grant.grant_id));
}

#[tokio::test]
async fn a_token_without_the_route_scope_is_403_naming_the_scope() {
    let (_server, tessera, app) = setup().await;
    let minted = tessera.mint(for_here("u").scopes(["mcp"])).await.unwrap();
    let (status, challenge, _) = send(&app, "/admin", Some(minted.token.expose())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.unwrap(),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp admin\", resource_metadata=\"{METADATA}\""
        )
    );
    let (status, challenge, _) = send(&app, "/search", Some(minted.token.expose())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.unwrap().contains("scope=\"tool:search\""));
}

#[tokio::test]
async fn every_refused_token_gets_the_same_401() {
    let (_server, tessera, app) = setup().await;
    let revoked = tessera.mint(for_here("u").scopes(["mcp"])).await.unwrap();
    tessera.revoke(Revoke::token(&revoked.token)).await.unwrap();
    let used_up = tessera
        .mint(for_here("u").scopes(["mcp"]).max_uses(1))
        .await
        .unwrap();
    tessera
        .claim(tessera_client::Claim::new(&used_up.token))
        .await
        .unwrap();
    let never_minted = Token::new(revoked.token.expose().replace("tsr_", "tsr_x"));
    let long = format!("tsr_{}", "a".repeat(200));
    let answers = [
        send(&app, "/mcp", Some(revoked.token.expose())).await,
        send(&app, "/mcp", Some(used_up.token.expose())).await,
        send(&app, "/mcp", Some(never_minted.expose())).await,
        send(
            &app,
            "/mcp",
            Some("tsr_00000000000000000000000000000000000000000000000000"),
        )
        .await,
        send(&app, "/mcp", Some("not-a-token")).await,
        send(&app, "/mcp", Some(&long)).await,
    ];
    let expected = (
        StatusCode::UNAUTHORIZED,
        Some(format!(
            "Bearer error=\"invalid_token\", resource_metadata=\"{METADATA}\""
        )),
        String::new(),
    );
    for answer in answers {
        assert_eq!(answer, expected);
    }
}

#[tokio::test]
async fn only_tokens_naming_this_resource_pass() {
    let (_server, tessera, app) = setup().await;
    let with = |audience: &[&str]| Mint::new("u").scopes(["mcp"]).audience(audience.to_vec());
    // Spelt otherwise, the same resource (Tessera keeps it canonical).
    let spelt = tessera
        .mint(with(&["dev", "HTTPS://MCP.example.com:443/mcp/"]))
        .await
        .unwrap();
    assert_eq!(
        send(&app, "/mcp", Some(spelt.token.expose())).await.0,
        StatusCode::OK
    );
    // Valid at Tessera for this client, but not made for this resource.
    for audience in [&["dev"][..], &["dev", "https://other.example.com/mcp"], &[]] {
        let minted = tessera.mint(with(audience)).await.unwrap();
        let (status, challenge, _) = send(&app, "/mcp", Some(minted.token.expose())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{audience:?}");
        assert!(
            challenge
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\"")
        );
    }
    assert!(BearerAuth::new(tessera.clone(), "http://mcp.example.com/mcp").is_err());
    assert!(BearerAuth::new(tessera, "https://mcp.example.com/mcp#x").is_err());
}

/// As deployed: the layer's client declares the resource in the clients
/// file, so the orchestrator names only the URI, and Tessera shows the
/// layer no token for anyone.
#[tokio::test]
async fn a_client_serving_the_resource_sees_tokens_for_its_uri() {
    let (mcp_key, mcp) = Server::client_key("mcp", &["validate", "--resource", RESOURCE]);
    let (minter_key, minter) = Server::client_key("orchestrator", &["mint"]);
    let server = Server::start_with(Some(&format!("{mcp}{minter}")), &[]);
    let client = |key: String| {
        let url = server.url.clone();
        async move { Client::builder(url).key(key).connect().await.unwrap() }
    };
    let orchestrator = client(minter_key).await;
    let app = app(client(mcp_key).await);
    let for_uri = orchestrator
        .mint(Mint::new("user-42").scopes(["mcp"]).audience([RESOURCE]))
        .await
        .unwrap();
    assert_eq!(
        send(&app, "/mcp", Some(for_uri.token.expose())).await,
        (StatusCode::OK, None, "user-42".into())
    );
    let for_anyone = orchestrator
        .mint(Mint::new("u").scopes(["mcp"]))
        .await
        .unwrap();
    assert_eq!(
        send(&app, "/mcp", Some(for_anyone.token.expose())).await.0,
        StatusCode::UNAUTHORIZED
    );
}
