//! The MCP server behind `BearerAuth`, against a real Tessera: refused
//! without a token, discoverable through RFC 9728, and its tool sees the
//! token's grant.

#[path = "../../../client/tests/api/support.rs"]
mod support;

use axum::{Router, body::Body};
use http::{Request, Response, StatusCode, header};
use tessera_client::{Mint, Token};
use tower::Service;

const RESOURCE: &str = "http://127.0.0.1:8000/mcp";

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Response<Body>, String) {
    let mut app = app.clone();
    std::future::poll_fn(|cx| <Router as Service<Request<Body>>>::poll_ready(&mut app, cx))
        .await
        .unwrap();
    let response = app.call(request).await.unwrap();
    let status = response.status();
    let (parts, body) = response.into_parts();
    // Far beyond any plausible delay, even on a busy machine.
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        axum::body::to_bytes(body, 1 << 20),
    )
    .await
    .expect("the body ends")
    .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    (status, Response::from_parts(parts, Body::empty()), text)
}

fn rpc(token: Option<&Token>, session: Option<&str>, body: serde_json::Value) -> Request<Body> {
    let mut request = Request::post(RESOURCE)
        .header(header::HOST, "127.0.0.1:8000")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_endpoint_opens_only_to_tessera_tokens() {
    let server = support::Server::start();
    let tessera = server.client().await;
    let app = tessera_mcp_example::app(tessera.clone(), RESOURCE).unwrap();
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}
    });

    // No token: 401, pointing at the metadata, which names Tessera.
    let (status, response, _) = call(&app, rpc(None, None, initialize.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""
    );
    let metadata = Request::get("http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app, metadata).await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"][0], server.url.as_str());

    // A token without `mcp`: 403 naming it.
    let other = tessera
        .mint(
            Mint::new("user-42")
                .audience(["dev", RESOURCE])
                .scopes(["tool:x"]),
        )
        .await
        .unwrap();
    let (status, response, _) = call(&app, rpc(Some(&other.token), None, initialize.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\", scope=\"mcp\""),
        "{challenge}"
    );

    // A token with `mcp`: the MCP conversation, and the tool sees the grant.
    let minted = tessera
        .mint(
            Mint::new("user-42")
                .audience(["dev", RESOURCE])
                .scopes(["mcp"]),
        )
        .await
        .unwrap();
    let token = Some(&minted.token);
    let (status, response, body) = call(&app, rpc(token, None, initialize)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|value| value.to_str().unwrap().to_owned());
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = call(&app, rpc(token, session.as_deref(), initialized)).await;
    assert!(status.is_success(), "{status} {body}");
    let whoami = serde_json::json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}
    });
    let (status, _, body) = call(&app, rpc(token, session.as_deref(), whoami)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(&format!(
            "subject user-42 (grant {})",
            minted.grant.grant_id
        )),
        "{body}"
    );
}
