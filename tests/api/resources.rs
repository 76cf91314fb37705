//! Resource URIs (RFC 8707) as audiences: a resource server (here client
//! `mcp`, which declares `https://mcp.example.com/mcp` in the clients file,
//! spelt otherwise) sees tokens made for its id or its URI, and no others —
//! not even tokens for anyone; Mint, Delegate and token exchange take URIs
//! in their canonical form; introspection names them in `aud`.

use tessera::pb;
use tonic::Code;

use crate::support::{
    Backend, MCP_RESOURCE, TestApp, check, claim,
    http::{Auth, Reply, Version, form, get, send},
    mint_req,
};

crate::both_backends!(
    a_resource_server_sees_tokens_for_its_id_or_its_uri,
    delegation_and_exchange_carry_resource_uris
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn introspect(app: &TestApp, client: &str, token: &str) -> Reply {
    let auth = Auth::Basic(client, app.keys.key(client));
    let request = form("/oauth2/introspect", auth, &[("token", token)]);
    send(app.http_addr, None, Version::H1, request).await
}

async fn mint_for(app: &TestApp, audience: &[&str]) -> String {
    let request = pb::MintRequest {
        audience: audience.iter().map(|a| a.to_string()).collect(),
        scopes: vec!["tool:*".into()],
        ..mint_req("user-42")
    };
    app.mint("minter", request).await.unwrap().token
}

async fn a_resource_server_sees_tokens_for_its_id_or_its_uri(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Minted for the URI as a client might spell it: kept canonical.
    let for_uri = mint_for(&app, &["HTTPS://mcp.EXAMPLE.com:443/mcp/"]).await;
    let reply = introspect(&app, "mcp", &for_uri).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["active"], true, "{}", reply.text());
    assert_eq!(reply.json()["aud"], serde_json::json!([MCP_RESOURCE]));
    // The URI names `mcp` only: to a client with no resource it is an
    // audience of strangers.
    assert_eq!(
        introspect(&app, "reader", &for_uri).await.json()["active"],
        false
    );

    let for_id = mint_for(&app, &["mcp"]).await;
    assert_eq!(
        introspect(&app, "mcp", &for_id).await.json()["active"],
        true
    );
    let elsewhere = mint_for(&app, &["https://other.example.com/mcp", "proxy"]).await;
    assert_eq!(
        introspect(&app, "mcp", &elsewhere).await.json()["active"],
        false
    );

    // A token for anyone is not a token for a resource server; other
    // clients still see it.
    let for_anyone = mint_for(&app, &[]).await;
    assert_eq!(
        introspect(&app, "mcp", &for_anyone).await.json()["active"],
        false
    );
    assert_eq!(
        introspect(&app, "reader", &for_anyone).await.json()["active"],
        true
    );

    // The same rule on every path: gRPC Validate and Claim.
    assert!(app.validate("mcp", check(&for_uri)).await.unwrap().valid);
    assert!(!app.validate("mcp", check(&for_anyone)).await.unwrap().valid);
    let claimed = app.claim("mcp", claim(&for_uri)).await.unwrap();
    assert!(claimed.claimed, "{claimed:?}");

    // A URI that is not one a resource server may have is refused, by field.
    for (bad, why) in [
        (
            "http://mcp.example.com/mcp",
            "must use https (http only on a loopback host)",
        ),
        (
            "https://mcp.example.com/mcp#tools",
            "must not have a fragment",
        ),
        ("https://", "must be an absolute URI"),
    ] {
        let request = pb::MintRequest {
            audience: vec!["proxy".into(), bad.into()],
            ..mint_req("user-42")
        };
        let err = app.mint("minter", request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.message(), format!("audience[1]: {why}"));
    }
    let twice = pb::MintRequest {
        audience: vec![MCP_RESOURCE.into(), "https://MCP.example.com/mcp/".into()],
        ..mint_req("user-42")
    };
    let err = app.mint("minter", twice).await.unwrap_err();
    assert_eq!(err.message(), "audience[1]: is a duplicate");
}

async fn delegation_and_exchange_carry_resource_uris(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = mint_for(&app, &["minter", "proxy", MCP_RESOURCE]).await;

    // Delegate over gRPC, naming the URI in another spelling.
    let request = pb::DelegateRequest {
        parent_token: parent.clone(),
        audience: vec!["https://mcp.example.com/mcp/".into()],
        ..Default::default()
    };
    let child = app
        .client()
        .delegate(app.req("minter", request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(child.grant.unwrap().audience, [MCP_RESOURCE]);
    assert_eq!(
        introspect(&app, "mcp", &child.token).await.json()["active"],
        true
    );
    assert_eq!(
        introspect(&app, "proxy", &child.token).await.json()["active"],
        false
    );

    // Token exchange: `resource` (RFC 8707) and `audience` together.
    let exchange = |extra: Vec<(&'static str, &'static str)>| {
        let mut fields = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", parent.as_str()),
            ("subject_token_type", ACCESS),
        ];
        fields.extend(extra);
        let auth = Auth::Basic("minter", app.keys.key("minter"));
        send(
            app.http_addr,
            None,
            Version::H1,
            form("/oauth2/token", auth, &fields),
        )
    };
    let reply = exchange(vec![
        ("resource", "https://MCP.example.com/mcp"),
        ("audience", "proxy"),
        ("audience", "https://mcp.example.com/mcp/"),
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let answer = introspect(&app, "mcp", &token).await.json();
    assert_eq!(answer["aud"], serde_json::json!(["proxy", MCP_RESOURCE]));
    assert_eq!(
        introspect(&app, "proxy", &token).await.json()["active"],
        true
    );

    for (resource, why) in [
        (
            "https://other.example.com/mcp",
            "not in the parent token's audience",
        ),
        ("mcp", "resource[0]: must be an absolute https URI"),
        (
            "https://mcp.example.com/mcp#x",
            "resource[0]: must not have a fragment",
        ),
    ] {
        let reply = exchange(vec![("resource", resource)]).await;
        assert_eq!(reply.status, 400, "{resource}");
        let body = reply.json();
        assert_eq!(body["error"], "invalid_target", "{resource}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(why), "{resource}: {description}");
    }
}

/// The metadata names an authorization endpoint, as the MCP SDKs' schemas
/// require, and that endpoint exists and refuses: Tessera has no
/// authorization flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_endpoint_exists_and_refuses() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let well_known = get("/.well-known/oauth-authorization-server", None);
    let metadata = send(app.http_addr, None, Version::H1, well_known)
        .await
        .json();
    let base = format!("http://{}", app.addr);
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{base}/oauth2/authorize")
    );
    assert_eq!(metadata["token_endpoint"], format!("{base}/oauth2/token"));
    assert_eq!(metadata["response_types_supported"], serde_json::json!([]));
    let flow =
        "/oauth2/authorize?response_type=code&client_id=x&redirect_uri=https://evil.example/";
    for request in [get(flow, None), form("/oauth2/authorize", Auth::None, &[])] {
        let reply = send(app.http_addr, None, Version::H1, request).await;
        assert_eq!(reply.status, 400);
        assert!(reply.header("location").is_empty(), "never redirects");
        assert_eq!(reply.json()["error"], "unsupported_response_type");
    }
}
