//! End to end: Tessera, the example served on a real port, and rmcp's own
//! MCP client over streamable HTTP. A valid token lists and calls the tool;
//! a token without `mcp` is refused 403 `insufficient_scope`; a revoked
//! token, and a token of a revoked run, are refused 401.

#[path = "../../../client/tests/api/support.rs"]
mod support;

use http::{StatusCode, header};
use rmcp::{
    RoleClient, ServiceExt,
    model::CallToolRequestParams,
    service::{ClientInitializeError, RunningService},
    transport::{
        StreamableHttpClientTransport,
        streamable_http_client::{StreamableHttpClientTransportConfig, StreamableHttpError},
    },
};
use tessera_client::{Client, Mint, Minted, Revoke};

/// The example's Router on an ephemeral loopback port; returns its `/mcp` URL.
async fn serve_example(tessera: Client) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = tessera_mcp_example::app(tessera, &resource).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    resource
}

/// rmcp's client: initialize over streamable HTTP with `Bearer <token>`.
async fn connect(
    resource: &str,
    minted: &Minted,
) -> Result<RunningService<RoleClient, ()>, ClientInitializeError> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(resource).auth_header(minted.token.expose());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
}

/// The HTTP refusal under an rmcp initialize error, if it is one.
fn refusal(error: &ClientInitializeError) -> &StreamableHttpError<reqwest::Error> {
    match error {
        ClientInitializeError::TransportError { error, .. } => error
            .error
            .downcast_ref()
            .unwrap_or_else(|| panic!("not a streamable HTTP error: {error}")),
        other => panic!("not a transport error: {other}"),
    }
}

/// The same initialize, as a plain HTTP request: status and challenge.
async fn raw_initialize(resource: &str, minted: &Minted) -> (StatusCode, String) {
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let response = reqwest::Client::new()
        .post(resource)
        .bearer_auth(minted.token.expose())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(initialize)
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), challenge)
}

async fn assert_refused_401(resource: &str, minted: &Minted) {
    let Err(error) = connect(resource, minted).await else {
        panic!("a revoked token connected");
    };
    assert!(
        matches!(refusal(&error), StreamableHttpError::AuthRequired(_)),
        "{error}"
    );
    let (status, challenge) = raw_initialize(resource, minted).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer "), "{challenge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_against_the_example_behind_tessera() {
    // See the dev-dependency on rustls: already installed is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = support::Server::start();
    let tessera = server.client().await;
    let resource = serve_example(tessera.clone()).await;
    // The audience names the example's resource URI, which the layer
    // checks, and (in dev mode, where its Tessera caller `dev` declares no
    // resource) that caller, whom Tessera checks.
    let mint = |scopes: &[&str], run: &str| {
        Mint::new("user-42")
            .audience(["dev", resource.as_str()])
            .scopes(scopes.iter().copied())
            .run_id(run)
    };

    // (1) A valid token: rmcp lists the tools and calls `whoami`, which
    // sees the token's grant.
    let valid = tessera.mint(mint(&["mcp"], "run-1")).await.unwrap();
    let client = connect(&resource, &valid).await.expect("connects");
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(names, ["whoami"]);
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let text = result.content[0].as_text().expect("text").text.clone();
    assert_eq!(
        text,
        format!("subject user-42 (grant {})", valid.grant.grant_id)
    );

    // (2) A token without the tool's scope `mcp`: 403 insufficient_scope,
    // naming `mcp`, both through rmcp and on the wire.
    let unscoped = tessera.mint(mint(&["tool:x"], "run-1")).await.unwrap();
    let Err(error) = connect(&resource, &unscoped).await else {
        panic!("a token without `mcp` connected");
    };
    match refusal(&error) {
        StreamableHttpError::InsufficientScope(refused) => {
            assert_eq!(refused.required_scope.as_deref(), Some("mcp"));
        }
        other => panic!("expected insufficient scope, got {other}"),
    }
    let (status, challenge) = raw_initialize(&resource, &unscoped).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains(r#"error="insufficient_scope", scope="mcp""#),
        "{challenge}"
    );

    // (3) The valid token, revoked: the open session's next call fails, and
    // a new connection is refused 401.
    tessera
        .revoke(Revoke::token(valid.token.clone()))
        .await
        .unwrap();
    assert!(
        client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .is_err()
    );
    assert_refused_401(&resource, &valid).await;
    client.cancel().await.unwrap();

    // (4) A token of a run, once the run is revoked: 401.
    let in_run = tessera.mint(mint(&["mcp"], "run-2")).await.unwrap();
    connect(&resource, &in_run)
        .await
        .expect("connects before the run is revoked")
        .cancel()
        .await
        .unwrap();
    let revoked = tessera.revoke(Revoke::run("run-2")).await.unwrap();
    assert_eq!(revoked, 1);
    assert_refused_401(&resource, &in_run).await;

    // (5) Valid at Tessera for `dev`, but not made for this resource: 401.
    let elsewhere = Mint::new("user-42").audience(["dev", "https://other.example.com/mcp"]);
    let elsewhere = tessera.mint(elsewhere.scopes(["mcp"])).await.unwrap();
    assert_refused_401(&resource, &elsewhere).await;
}
