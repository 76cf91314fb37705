//! Who the OAuth clients are: a client ID metadata document fetched from
//! the URL that is its `client_id` (MCP authorization spec, draft
//! `client-id-metadata-document`), or a client registered by RFC 7591.
//! Each can be switched off. Redirect URIs are compared as exact strings.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    Db,
    fetch::{FetchError, Fetcher},
    store,
};
use crate::input::MAX_ID;

/// Largest client ID metadata document read (the draft suggests 5 KB).
pub const MAX_DOCUMENT: usize = 5 * 1024;
/// Longest a document is cached, whatever its `max-age`.
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Documents cached at most; beyond, the expired go, then all.
const CACHE_ENTRIES: usize = 1024;
pub const MAX_REDIRECT_URIS: usize = 10;
pub const MAX_REDIRECT_URI: usize = 512;
pub const MAX_CLIENT_NAME: usize = 200;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client (`none`): PKCE is its only proof.
    None,
    /// `client_secret_basic` or `client_secret_post`, with the secret's SHA-256.
    Secret { method: &'static str, hash: String },
}

/// An OAuth client as Tessera knows it for one request.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    /// `client_name` from its metadata: shown as text, never as markup.
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub auth: ClientAuth,
}

/// Why a client is not one Tessera will deal with. The words name the
/// field and the cause, never the document's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("client_id: {0}")]
    Invalid(&'static str),
    #[error("client_id: its metadata document {0}")]
    Document(String),
    #[error("client_id: not a registered client")]
    Unknown,
}

/// Resolves client ids to clients.
pub struct Registry {
    fetcher: Fetcher,
    cimd: bool,
    registration: bool,
    cache: Mutex<HashMap<String, (Arc<OAuthClient>, Instant)>>,
}

impl Registry {
    pub fn new(fetcher: Fetcher, cimd: bool, registration: bool) -> Self {
        Self {
            fetcher,
            cimd,
            registration,
            cache: Mutex::default(),
        }
    }

    pub fn cimd(&self) -> bool {
        self.cimd
    }

    pub fn registration(&self) -> bool {
        self.registration
    }

    /// The client `client_id` names.
    pub async fn resolve(&self, db: &Db, client_id: &str) -> Result<Arc<OAuthClient>, ClientError> {
        if client_id.is_empty() {
            return Err(ClientError::Invalid("is required"));
        }
        if client_id.len() > MAX_ID {
            return Err(ClientError::Invalid("must be at most 256 bytes"));
        }
        if client_id.starts_with("https://") || client_id.starts_with("http://") {
            if !self.cimd {
                return Err(ClientError::Invalid(
                    "client ID metadata documents are turned off on this server",
                ));
            }
            return self.document(client_id).await;
        }
        if !self.registration {
            return Err(ClientError::Unknown);
        }
        match store::client(db, client_id).await {
            Ok(Some(client)) => Ok(Arc::new(client)),
            Ok(None) => Err(ClientError::Unknown),
            Err(err) => {
                tracing::warn!(error = %err, "reading a registered client failed");
                Err(ClientError::Document("could not be read".into()))
            }
        }
    }

    async fn document(&self, client_id: &str) -> Result<Arc<OAuthClient>, ClientError> {
        let url = Url::parse(client_id).map_err(|_| ClientError::Invalid("is not a URL"))?;
        if url.scheme() != "https" {
            return Err(ClientError::Invalid("a URL client_id must use https"));
        }
        if url.path() == "/" || url.path().is_empty() {
            return Err(ClientError::Invalid("a URL client_id must have a path"));
        }
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(ClientError::Invalid(
                "a URL client_id must have no fragment and no credentials",
            ));
        }
        if let Some((client, until)) = self.cache().get(client_id)
            && *until > Instant::now()
        {
            return Ok(client.clone());
        }
        let (headers, body) =
            self.fetcher
                .get(&url, MAX_DOCUMENT)
                .await
                .map_err(|err| match err {
                    FetchError::NotHttps => ClientError::Invalid("a URL client_id must use https"),
                    err => ClientError::Document(err.to_string()),
                })?;
        let client = Arc::new(parse_document(client_id, &body)?);
        if let Some(ttl) = cache_ttl(&headers) {
            let mut cache = self.cache();
            if cache.len() >= CACHE_ENTRIES {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(client_id.to_owned(), (client.clone(), Instant::now() + ttl));
        }
        Ok(client)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<OAuthClient>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a document may be reused (RFC 9111 `Cache-Control`):
/// `max-age`, capped; nothing for `no-store`, `no-cache` or no `max-age`.
fn cache_ttl(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return None;
            }
            if let Some(seconds) = lower.strip_prefix("max-age=") {
                max_age = seconds.trim_matches('"').parse::<u64>().ok();
            }
        }
    }
    max_age
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s).min(MAX_CACHE))
}

/// A document's fields, checked: its `client_id` must be the URL it was
/// fetched from, exactly; it must list redirect URIs; it must not claim a
/// shared secret (the draft forbids `client_secret_*` for URL clients).
pub fn parse_document(client_id: &str, body: &[u8]) -> Result<OAuthClient, ClientError> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| ClientError::Document("is not JSON".into()))?;
    let bad = |why: &str| ClientError::Document(why.to_owned());
    let fields = doc.as_object().ok_or_else(|| bad("is not a JSON object"))?;
    if fields.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(bad("names a different client_id than its own URL"));
    }
    let metadata = Metadata::from_json(fields).map_err(|why| bad(&why))?;
    match metadata.auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => {
            return Err(bad(
                "asks for a token_endpoint_auth_method other than none (the only one Tessera \
                 accepts for URL client ids)",
            ));
        }
    }
    Ok(OAuthClient {
        client_id: client_id.to_owned(),
        name: metadata.name,
        redirect_uris: metadata.redirect_uris,
        auth: ClientAuth::None,
    })
}

/// The client metadata fields (RFC 7591 2) Tessera reads.
pub struct Metadata {
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
}

impl Metadata {
    /// Reads and limits the fields; the error names the field.
    pub fn from_json(fields: &serde_json::Map<String, Value>) -> Result<Self, String> {
        let name = match fields.get("client_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if name.len() <= MAX_CLIENT_NAME => Some(name.clone()),
            Some(Value::String(_)) => {
                return Err(format!(
                    "client_name: must be at most {MAX_CLIENT_NAME} bytes"
                ));
            }
            Some(_) => return Err("client_name: must be a string".into()),
        };
        let redirect_uris =
            strings(fields, "redirect_uris")?.ok_or("redirect_uris: is required")?;
        if redirect_uris.is_empty() || redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(format!(
                "redirect_uris: must list 1 to {MAX_REDIRECT_URIS} URIs"
            ));
        }
        for (i, uri) in redirect_uris.iter().enumerate() {
            check_redirect_uri(uri).map_err(|why| format!("redirect_uris[{i}]: {why}"))?;
        }
        let auth_method = match fields.get("token_endpoint_auth_method") {
            None | Some(Value::Null) => None,
            Some(Value::String(method)) => Some(method.clone()),
            Some(_) => return Err("token_endpoint_auth_method: must be a string".into()),
        };
        Ok(Self {
            name,
            redirect_uris,
            auth_method,
            grant_types: strings(fields, "grant_types")?,
            response_types: strings(fields, "response_types")?,
        })
    }
}

fn strings(
    fields: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= 32 => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{name}: must be an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("{name}: must be an array of at most 32 strings")),
    }
}

/// A redirect URI a client may register: absolute, no fragment, https or
/// http on a loopback host (native apps, RFC 8252 7.3).
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_REDIRECT_URI {
        return Err("must be at most 512 bytes");
    }
    let url = Url::parse(uri).map_err(|_| "must be an absolute URI")?;
    if url.fragment().is_some() {
        return Err("must not have a fragment");
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must be https, or http on a loopback host"),
    }
}

/// The SHA-256 (hex) of a client secret, as stored and compared.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://app.example.com/oauth/client.json";

    #[test]
    fn a_document_must_name_itself_and_list_redirects() {
        let ok = format!(
            r#"{{"client_id":"{URL}","client_name":"App <b>","redirect_uris":["http://127.0.0.1:3000/cb"]}}"#
        );
        let client = parse_document(URL, ok.as_bytes()).unwrap();
        assert_eq!(client.name.as_deref(), Some("App <b>"));
        assert_eq!(client.auth, ClientAuth::None);

        let other =
            r#"{"client_id":"https://evil.example/c","redirect_uris":["https://a.example/cb"]}"#;
        let err = parse_document(URL, other.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("different client_id"), "{err}");

        let secret = format!(
            r#"{{"client_id":"{URL}","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}}"#
        );
        assert!(parse_document(URL, secret.as_bytes()).is_err());
        let no_redirects = format!(r#"{{"client_id":"{URL}"}}"#);
        let err = parse_document(URL, no_redirects.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("redirect_uris"), "{err}");
        let plain_http =
            format!(r#"{{"client_id":"{URL}","redirect_uris":["http://a.example/cb"]}}"#);
        assert!(parse_document(URL, plain_http.as_bytes()).is_err());
    }

    #[test]
    fn caching_follows_cache_control() {
        let headers = |value: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
            map
        };
        assert_eq!(
            cache_ttl(&headers("max-age=60")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cache_ttl(&headers("public, max-age=999999")),
            Some(MAX_CACHE)
        );
        assert_eq!(cache_ttl(&headers("no-store")), None);
        assert_eq!(cache_ttl(&headers("max-age=60, no-cache")), None);
        assert_eq!(cache_ttl(&reqwest::header::HeaderMap::new()), None);
    }
}
