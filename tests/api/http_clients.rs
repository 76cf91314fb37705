//! Client authentication at the HTTP face, and how its refusals are logged.
//!
//! `client_secret_post` (RFC 6749 2.3.1) sends `client_id` and
//! `client_secret` together; a secret alone is a request missing a
//! required parameter, which RFC 6749 5.2 answers `invalid_request` (400),
//! before any key is looked at. (`invalid_client`, 401, is for
//! authentication that was attempted whole and failed, as RFC 7662 2.3
//! also says of introspection.)

use serde_json::Value;
use tessera::pb::{self, token_authority_client::TokenAuthorityClient};
use tonic::Code;

use crate::support::{
    Backend, Keys, Process, TestApp, TestDb, channel, check, eventually,
    http::{Auth, Version, form, get, send},
    keyed, mint_req,
};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_without_its_client_id_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    let token = minted.token.as_str();
    let exchange = [
        ("grant_type", EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", ACCESS),
    ];
    let before = app.count_all().await;
    for (path, client, fields) in [
        ("/oauth2/introspect", "reader", &[("token", token)][..]),
        ("/oauth2/revoke", "minter", &[("token", token)][..]),
        ("/oauth2/token", "minter", &exchange[..]),
    ] {
        let key = app.keys.key(client);
        // The attack: the key alone as client_secret, with no client_id or
        // an empty one.
        for id in [None, Some("")] {
            let mut sent = fields.to_vec();
            sent.push(("client_secret", key));
            if let Some(id) = id {
                sent.push(("client_id", id));
            }
            let reply = send(
                app.http_addr,
                None,
                Version::H1,
                form(path, Auth::None, &sent),
            )
            .await;
            assert_eq!(reply.status, 400, "{path}: {}", reply.text());
            let body = reply.json();
            assert_eq!(body["error"], "invalid_request", "{path}");
            let description = body["error_description"].as_str().unwrap();
            assert!(
                description.starts_with("client_id: is required with client_secret"),
                "{description}"
            );
            assert!(!reply.text().contains(key), "{path}");
        }
        // Both, as RFC 6749 2.3.1 says: accepted.
        let mut both = fields.to_vec();
        both.extend([("client_id", client), ("client_secret", key)]);
        if path != "/oauth2/revoke" {
            let reply = send(
                app.http_addr,
                None,
                Version::H1,
                form(path, Auth::None, &both),
            )
            .await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        }
    }
    // The refused revoke revoked nothing; the refused exchange minted nothing.
    assert!(app.validate("minter", check(token)).await.unwrap().valid);
    assert_eq!(
        app.count_all().await,
        before + 1,
        "only the accepted exchange"
    );
}

/// A call refused for a missing role is logged with its client, on its
/// access line as on its audit line, over gRPC and HTTP alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_role_names_its_client_in_the_access_line() {
    let db = TestDb::new(Backend::Sqlite).await;
    let keys = Keys::new();
    let server = Process::spawn(db.url(), keys.file.path(), "info").await;
    let metrics = get("/metrics", Some(keys.key("minter")));
    assert_eq!(
        send(server.addr, None, Version::H1, metrics).await.status,
        403
    );
    let mut client = TokenAuthorityClient::new(channel(server.addr).await);
    let denied = client.mint(keyed(keys.key("reader"), mint_req("u"))).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let unknown = client
        .validate(keyed("tsk_unknown", pb::ValidateRequest::default()))
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unauthenticated);
    let log = server.log.clone();
    let lines = || -> Vec<Value> {
        let log = log.lock().unwrap();
        log.iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let access = |method: &str| {
        lines()
            .into_iter()
            .find(|l| l["target"] == "tessera::access" && l["method"] == method)
    };
    eventually("three access lines", async || {
        ["metrics", "Mint", "Validate"]
            .iter()
            .all(|m| access(m).is_some())
    })
    .await;
    for (method, code, client) in [
        ("metrics", "403", "minter"),
        ("Mint", "PERMISSION_DENIED", "reader"),
        ("Validate", "UNAUTHENTICATED", ""),
    ] {
        let line = access(method).unwrap();
        assert_eq!(
            (&line["code"], &line["client"]),
            (&code.into(), &client.into()),
            "{line}"
        );
    }
    let authorize: Vec<Value> = lines()
        .into_iter()
        .filter(|l| l["event"] == "authorize")
        .map(|l| l["client"].clone())
        .collect();
    assert_eq!(authorize, ["minter", "reader"]);
    server.terminate().await;
}
