//! Sign-in (issue 20) over real HTTP, against real PostgreSQL and SQLite:
//! the metadata, the browser endpoints' refusals, consent, and the token
//! endpoint's codes and refresh tokens. A person's sign-in at the upstream
//! provider is the end-to-end harness's (tests/signin, a real provider in
//! Chromium); here a flow that signed in is written with the server's own
//! store functions, and everything after it goes over HTTP.

mod browser;
mod cimd;
mod tokens;

use std::{path::PathBuf, sync::Arc};

use tessera::signin::{
    self, SigninConfig,
    store::{Code, Db, Flow},
};

use crate::support::{
    Backend, MCP_RESOURCE, Options, TestApp, TestDb,
    http::{Auth, Reply, Version, form, get, send},
};

pub const REDIRECT: &str = "http://127.0.0.1:33333/callback";
pub const CLIENT_NAME: &str = "Editor <b>&</b>";

/// A server with sign-in on: a provider that is never reached (the tests
/// that need a signed-in person write the flow), and one resource.
pub struct Signin {
    pub app: TestApp,
    pub db: Db,
    _files: Arc<tempfile::TempDir>,
}

pub fn config(dir: &tempfile::TempDir) -> SigninConfig {
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    SigninConfig {
        oidc_issuer: Some("http://127.0.0.1:9/".into()),
        oidc_client_id_file: Some(write("id", "tessera\n")),
        oidc_client_secret_file: Some(write("secret", "provider-secret\n")),
        oidc_subject_claim: "sub".into(),
        signin_resources: Some(write(
            "resources.toml",
            &format!(
                "[[resource]]\nuri = \"{MCP_RESOURCE}\"\nname = \"Docs\"\n\
                 scopes = [\"docs:read\", \"docs:write\"]\ndefault_scopes = [\"docs:read\"]\n"
            ),
        )),
        consent_ttl: std::time::Duration::from_secs(3600),
        refresh_ttl: std::time::Duration::from_secs(86_400),
        ..SigninConfig::default()
    }
}

impl Signin {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, change: impl FnOnce(&mut SigninConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut signin = config(&dir);
        change(&mut signin);
        let options = Options {
            signin,
            ..Options::default()
        };
        let app = TestApp::spawn_with(backend, options).await;
        let db = connect(&app.db).await;
        Self {
            app,
            db,
            _files: Arc::new(dir),
        }
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = get(path, None);
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert(http::header::COOKIE, cookie.parse().unwrap());
        }
        send(self.app.http_addr, None, Version::H1, request).await
    }

    pub async fn post(&self, path: &str, auth: Auth<'_>, fields: &[(&str, &str)]) -> Reply {
        send(
            self.app.http_addr,
            None,
            Version::H1,
            form(path, auth, fields),
        )
        .await
    }

    /// Registers a public client (RFC 7591) with [`REDIRECT`].
    pub async fn register(&self, method: &str) -> serde_json::Value {
        let body = serde_json::json!({
            "client_name": CLIENT_NAME,
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": method,
        });
        let request = http::Request::post("/oauth2/register")
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .unwrap();
        let reply = send(self.app.http_addr, None, Version::H1, request).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()
    }

    /// A flow in which `subject` has signed in, as the provider's callback
    /// leaves it; and the cookie of the browser that holds it.
    pub async fn signed_in(
        &self,
        client_id: &str,
        subject: &str,
        challenge: &str,
    ) -> (String, String) {
        let flow_id = signin::random_secret();
        let binding = signin::random_secret();
        let now = signin::now_us();
        let flow = Flow {
            flow_id: flow_id.clone(),
            binding_hash: signin::digest_hex(&binding),
            client_id: client_id.to_owned(),
            redirect_uri: REDIRECT.to_owned(),
            state: Some("st-1".into()),
            code_challenge: challenge.to_owned(),
            resource: MCP_RESOURCE.to_owned(),
            scopes: vec!["docs:read".into()],
            subject: None,
            expires_at: now + 600_000_000,
        };
        signin::store::insert_flow(&self.db, &flow, now)
            .await
            .unwrap();
        assert!(
            signin::store::set_subject(&self.db, &flow_id, subject)
                .await
                .unwrap()
        );
        let cookie = format!("{}={binding}", signin::flow_cookie_name(&flow_id));
        (flow_id, cookie)
    }

    /// A code issued to `client_id` for `subject`, as consent leaves it.
    pub async fn code(&self, client_id: &str, subject: &str, verifier: &str) -> String {
        let code = signin::random_secret();
        let now = signin::now_us();
        let row = Code {
            client_id: client_id.to_owned(),
            redirect_uri: REDIRECT.to_owned(),
            code_challenge: signin::s256(verifier),
            resource: MCP_RESOURCE.to_owned(),
            scopes: vec!["docs:read".into()],
            subject: subject.to_owned(),
            family: format!("signin-test-{}", &signin::random_secret()[..8]),
            expires_at: now + 60_000_000,
        };
        signin::store::insert_code(&self.db, &signin::digest_hex(&code), &row, now)
            .await
            .unwrap();
        code
    }

    /// Introspection by the MCP server's own client (`mcp`, serving
    /// [`MCP_RESOURCE`]).
    pub async fn active(&self, token: &str) -> serde_json::Value {
        let key = self.app.keys.key("mcp").to_owned();
        let reply = self
            .post(
                "/oauth2/introspect",
                Auth::Bearer(&key),
                &[("token", token)],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }
}

async fn connect(db: &TestDb) -> Db {
    match db.backend {
        Backend::Postgres => Db::Postgres(sqlx::PgPool::connect(db.url()).await.unwrap()),
        Backend::Sqlite => Db::Sqlite(sqlx::SqlitePool::connect(db.url()).await.unwrap()),
    }
}

/// The query parameters of a redirect's `Location`.
pub fn location(reply: &Reply) -> (String, Vec<(String, String)>) {
    assert_eq!(reply.status, 303, "{}", reply.text());
    let location = reply.header("location").pop().expect("a Location");
    let url = url::Url::parse(&location).unwrap();
    let base = location.split('?').next().unwrap().to_owned();
    let pairs = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (base, pairs)
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A refusal shown on Tessera's own page: 400, HTML, no redirect.
pub fn shown(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.header("location").is_empty());
    assert!(reply.header("content-type")[0].starts_with("text/html"));
    assert!(
        reply.text().contains(why),
        "{why:?} not in {}",
        reply.text()
    );
}
