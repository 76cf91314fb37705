//! [`BearerAuth`]: a tower layer that lets through only requests bearing a
//! Tessera token that Tessera validates, with the route's scopes.
//!
//! The answers are the ones RFC 6750 and the MCP authorization spec ask
//! for, so an MCP client finds its way to Tessera from them:
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization: Bearer` | 401, `WWW-Authenticate: Bearer resource_metadata="<url>"` |
//! | a token Tessera refuses (unknown, revoked, used up, expired, malformed, not for this client, …), or whose audience does not name this resource's URI | 401, `WWW-Authenticate: Bearer error="invalid_token", resource_metadata="<url>"`: the same bytes whatever the reason |
//! | a valid token without the route's scopes | 403, `WWW-Authenticate: Bearer error="insufficient_scope", scope="<the route's scopes>", resource_metadata="<url>"` |
//! | a valid token with them | the inner service, with the [`Grant`] in the request's extensions |
//! | Tessera unreachable | 503 |
//! | `GET /.well-known/oauth-protected-resource…` | the RFC 9728 metadata (no token needed) |

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use prost::bytes::Bytes;
use tower::{Layer, Service};

use crate::{Client, Consistency, Denial, Error, Grant, Token, Validate, Validation};

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Guards HTTP routes with Tessera tokens; a [`tower::Layer`] (for axum's
/// `Router::layer` and `route_layer`, or any tower stack, such as around
/// `rmcp`'s streamable HTTP service). Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), tessera_client::Error> {
/// use axum::{Extension, Router, routing::get};
/// use tessera_client::{BearerAuth, Client, Grant};
///
/// let tessera = Client::from_env().await?;
/// // Tessera tokens with scope `mcp` open everything but /healthz;
/// // /admin also needs `admin`.
/// let auth = BearerAuth::new(tessera, "https://mcp.example.com/mcp")?
///     .require(["mcp"])
///     .public("/healthz")
///     .scopes_for("/admin", ["mcp", "admin"]);
/// let app: Router = Router::new()
///     .route("/mcp", get(|Extension(grant): Extension<Grant>| async move { grant.subject }))
///     .route("/healthz", get(|| async { "ok" }))
///     .layer(auth); // also serves /.well-known/oauth-protected-resource/mcp
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
/// The layer answers `GET` on the RFC 9728 paths itself only where it sees
/// them: apply it with `Router::layer` (not only `route_layer`), or serve
/// [`BearerAuth::metadata_json`] at [`BearerAuth::metadata_paths`] yourself.
/// Paths are matched as the layer sees them (inside a `nest`, without the
/// prefix).
#[derive(Clone)]
pub struct BearerAuth {
    shared: Arc<Shared>,
    /// The scopes a request needs where no `public` or `scopes_for` rule
    /// applies.
    required: Arc<[String]>,
}

#[derive(Clone)]
struct Shared {
    client: Client,
    consistency: Consistency,
    /// The resource identifier (RFC 9728 `resource`), e.g.
    /// `https://mcp.example.com/mcp`.
    resource: String,
    /// The same, in the canonical form Tessera keeps audience entries in:
    /// what a grant's audience must name (RFC 8707).
    audience: String,
    /// `/.well-known/oauth-protected-resource` + the resource's path.
    metadata_path: String,
    /// The absolute URL of that document, for `resource_metadata`.
    metadata_url: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    resource_name: Option<String>,
    /// Path prefixes with their own rule; the longest that matches wins.
    rules: Vec<(String, Access)>,
}

#[derive(Clone, Debug)]
enum Access {
    Public,
    Scopes(Arc<[String]>),
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("client", &self.shared.client)
            .field("resource", &self.shared.resource)
            .field("consistency", &self.shared.consistency)
            .field("authorization_servers", &self.shared.authorization_servers)
            .field("required", &self.required)
            .field("rules", &self.shared.rules)
            .finish()
    }
}

impl BearerAuth {
    /// A layer validating tokens with `client`, for the protected resource
    /// `resource` (the URL clients use to reach it, such as an MCP
    /// server's endpoint `https://mcp.example.com/mcp`: RFC 9728's
    /// resource identifier, without query or fragment; `https`, or `http`
    /// on a loopback host). The authorization server it names is the
    /// client's URL (Tessera's issuer by default; see
    /// [`BearerAuth::authorization_server`]).
    ///
    /// A token passes only if Tessera finds it valid for this layer's
    /// client *and* its audience names `resource` (RFC 8707; compared in
    /// canonical form, so `https://MCP.example.com/mcp/` is the same): mint
    /// tokens for an MCP server with its URL in `audience`, as MCP clients
    /// ask for it with `resource`. Any such token passes until
    /// [`BearerAuth::require`] says which scopes. (A token whose audience
    /// names this client's id but not `resource`, and that lacks a route's
    /// scopes, is answered 403 rather than 401: Tessera reports the missing
    /// scope before the layer sees the grant.)
    pub fn new(client: Client, resource: impl Into<String>) -> Result<Self, Error> {
        let resource = resource.into();
        let bad = |why: &str| Error::Config(format!("resource {resource:?}: {why}"));
        let audience = crate::resource::canonical(&resource).map_err(bad)?;
        let uri: Uri = resource.parse().map_err(|_| bad("not a URL"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(bad("not an absolute URL"));
        };
        let path = uri.path().trim_end_matches('/');
        let metadata_path = format!("{WELL_KNOWN}{path}");
        let metadata_url = format!("{scheme}://{authority}{metadata_path}");
        Ok(Self {
            shared: Arc::new(Shared {
                authorization_servers: vec![client.url().to_owned()],
                client,
                consistency: Consistency::Full,
                resource,
                audience,
                metadata_path,
                metadata_url,
                scopes_supported: Vec::new(),
                resource_name: None,
                rules: Vec::new(),
            }),
            required: Arc::from([]),
        })
    }

    fn edit(mut self, change: impl FnOnce(&mut Shared)) -> Self {
        change(Arc::make_mut(&mut self.shared));
        self
    }

    /// The same layer, requiring every one of `scopes` wherever no rule
    /// says otherwise. Returns a new layer and leaves this one as it was,
    /// so one `BearerAuth` can guard each route with its own scopes:
    /// `get(handler).route_layer(auth.require(["tool:search"]))`.
    pub fn require<I: IntoIterator<Item = S>, S: Into<String>>(&self, scopes: I) -> Self {
        Self {
            shared: self.shared.clone(),
            required: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// Requests whose path is `prefix` or lies below it (`/healthz`,
    /// `/public/…`) pass without a token.
    pub fn public(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.edit(|shared| shared.rules.push((prefix, Access::Public)))
    }

    /// Requests whose path is `prefix` or lies below it need exactly these
    /// scopes (instead of the layer's `require`d ones).
    pub fn scopes_for<I: IntoIterator<Item = S>, S: Into<String>>(
        self,
        prefix: impl Into<String>,
        scopes: I,
    ) -> Self {
        let prefix = prefix.into();
        let scopes = Access::Scopes(scopes.into_iter().map(Into::into).collect());
        self.edit(|shared| shared.rules.push((prefix, scopes)))
    }

    /// How fresh Tessera's answer must be: FULL (the default) asks the
    /// database; BOUNDED may answer from Tessera's memory, at most its
    /// `--cache-max-age` old, and is cheaper.
    pub fn consistency(self, consistency: Consistency) -> Self {
        self.edit(|shared| shared.consistency = consistency)
    }

    /// The authorization server the metadata names, when Tessera's issuer
    /// (`--issuer`) is not the URL this client calls it by.
    pub fn authorization_server(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.edit(|shared| shared.authorization_servers = vec![issuer])
    }

    /// `scopes_supported` in the metadata.
    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(self, scopes: I) -> Self {
        let scopes = scopes.into_iter().map(Into::into).collect();
        self.edit(|shared| shared.scopes_supported = scopes)
    }

    /// `resource_name` in the metadata.
    pub fn resource_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|shared| shared.resource_name = Some(name))
    }

    /// The URL of the RFC 9728 document, as `resource_metadata` names it.
    pub fn metadata_url(&self) -> &str {
        &self.shared.metadata_url
    }

    /// Where the layer serves the RFC 9728 document: the resource's own
    /// well-known path (`/.well-known/oauth-protected-resource/mcp` for
    /// `…/mcp`) and the root one, where MCP clients look next.
    pub fn metadata_paths(&self) -> Vec<String> {
        let mut paths = vec![self.shared.metadata_path.clone()];
        if self.shared.metadata_path != WELL_KNOWN {
            paths.push(WELL_KNOWN.to_owned());
        }
        paths
    }

    /// The RFC 9728 protected resource metadata document.
    pub fn metadata_json(&self) -> String {
        let shared = &self.shared;
        let mut out = format!(
            "{{\"resource\":{},\"authorization_servers\":{},\"bearer_methods_supported\":[\"header\"]",
            json_string(&shared.resource),
            json_array(&shared.authorization_servers),
        );
        if !shared.scopes_supported.is_empty() {
            out.push_str(",\"scopes_supported\":");
            out.push_str(&json_array(&shared.scopes_supported));
        }
        if let Some(name) = &shared.resource_name {
            out.push_str(",\"resource_name\":");
            out.push_str(&json_string(name));
        }
        out.push('}');
        out
    }

    /// What a request to `path` needs.
    fn access(&self, path: &str) -> Access {
        self.shared
            .rules
            .iter()
            .filter(|(prefix, _)| under(path, prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, access)| access.clone())
            .unwrap_or_else(|| Access::Scopes(self.required.clone()))
    }

    fn is_metadata(&self, path: &str) -> bool {
        path == self.shared.metadata_path || path == WELL_KNOWN
    }

    /// The answer to a request that may not pass.
    fn refuse(&self, refusal: Refusal<'_>) -> Response<Full<Bytes>> {
        let url = quoted(&self.shared.metadata_url);
        let (status, challenge) = match refusal {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer resource_metadata={url}"),
            ),
            Refusal::Invalid => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer error=\"invalid_token\", resource_metadata={url}"),
            ),
            Refusal::Scope(scopes) => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer error=\"insufficient_scope\", scope={}, resource_metadata={url}",
                    quoted(&scopes.join(" "))
                ),
            ),
        };
        let mut response = Response::new(Full::default());
        *response.status_mut() = status;
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn metadata_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.metadata_json())));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=300"),
        );
        response
    }

    /// Tessera is unreachable, overloaded, or refused this service's key.
    fn failed(status: StatusCode) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::default());
        *response.status_mut() = status;
        response
    }
}

enum Refusal<'a> {
    Missing,
    Invalid,
    Scope(&'a [String]),
}

/// Whether `path` is `prefix` or below it, segment-wise.
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// The bearer token of a request: `None` when it has no bearer
/// credentials at all, `Some(Err)` when they are not usable (two
/// `Authorization` headers, an empty or non-ASCII token).
fn bearer(headers: &HeaderMap) -> Option<Result<Token, ()>> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    let bearer = value.to_str().ok().and_then(|text| {
        let (scheme, token) = text.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim_start_matches(' '))
    });
    let Some(token) = bearer else {
        // Another scheme (Basic, say): no bearer credentials.
        return values.next().is_some().then_some(Err(()));
    };
    if values.next().is_some() || token.is_empty() || token.contains(' ') {
        return Some(Err(()));
    }
    Some(Ok(Token::new(token)))
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_array(items: &[String]) -> String {
    let items: Vec<_> = items.iter().map(|item| json_string(item)).collect();
    format!("[{}]", items.join(","))
}

impl<S> Layer<S> for BearerAuth {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            inner,
            auth: self.clone(),
        }
    }
}

/// The service [`BearerAuth`] wraps around another. Its responses are the
/// inner service's (`Either::Left`) or its own refusals and metadata
/// (`Either::Right`).
#[derive(Clone, Debug)]
pub struct BearerService<S> {
    inner: S,
    auth: BearerAuth,
}

type Answer<B> = Response<Either<B, Full<Bytes>>>;

impl<S, B, ResBody> Service<Request<B>> for BearerService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Answer<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The inner service that was polled ready serves this request; a
        // clone takes its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let own = |response: Response<Full<Bytes>>| Ok(response.map(Either::Right));
            let path = request.uri().path();
            if auth.is_metadata(path) && matches!(*request.method(), Method::GET | Method::HEAD) {
                return own(auth.metadata_response());
            }
            let scopes = match auth.access(path) {
                Access::Public => {
                    return inner.call(request).await.map(|r| r.map(Either::Left));
                }
                Access::Scopes(scopes) => scopes,
            };
            let token = match bearer(request.headers()) {
                None => return own(auth.refuse(Refusal::Missing)),
                Some(Err(())) => return own(auth.refuse(Refusal::Invalid)),
                Some(Ok(token)) => token,
            };
            let check = Validate::new(token)
                .scopes(scopes.iter().cloned())
                .consistency(auth.shared.consistency);
            match auth.shared.client.validate(check).await {
                // Valid for this client, but made for another resource (or
                // for any): refused like any other token.
                Ok(Validation::Valid(grant)) if !grant.audience.contains(&auth.shared.audience) => {
                    own(auth.refuse(Refusal::Invalid))
                }
                Ok(Validation::Valid(grant)) => {
                    request.extensions_mut().insert::<Grant>(grant);
                    inner.call(request).await.map(|r| r.map(Either::Left))
                }
                Ok(Validation::Denied(Denial::ScopeMissing)) => {
                    own(auth.refuse(Refusal::Scope(&scopes)))
                }
                Ok(Validation::Denied(_)) => own(auth.refuse(Refusal::Invalid)),
                // A token Tessera will not even look at (over 128 bytes,
                // control characters) is refused like any other.
                Err(Error::InvalidArgument(field)) if field.starts_with("token") => {
                    own(auth.refuse(Refusal::Invalid))
                }
                Err(Error::Unavailable { .. } | Error::DeadlineExceeded | Error::Overloaded) => {
                    own(BearerAuth::failed(StatusCode::SERVICE_UNAVAILABLE))
                }
                Err(_) => own(BearerAuth::failed(StatusCode::INTERNAL_SERVER_ERROR)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers() {
        let parse = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::AUTHORIZATION, value.parse().unwrap());
            }
            bearer(&headers).map(|r| r.map(|t| t.into_plaintext()))
        };
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["Basic abc"]), None);
        assert_eq!(parse(&["Bearer tsr_x"]), Some(Ok("tsr_x".into())));
        assert_eq!(parse(&["bearer tsr_x"]), Some(Ok("tsr_x".into())));
        assert_eq!(parse(&["Bearer "]), Some(Err(())));
        assert_eq!(parse(&["Bearer a b"]), Some(Err(())));
        assert_eq!(parse(&["Bearer a", "Bearer b"]), Some(Err(())));
    }

    #[test]
    fn prefixes_match_by_segment() {
        assert!(under("/healthz", "/healthz"));
        assert!(under("/public/x", "/public/"));
        assert!(under("/public/x", "/public"));
        assert!(!under("/healthzz", "/healthz"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_array(&["x".into(), "y".into()]), "[\"x\",\"y\"]");
    }
}
