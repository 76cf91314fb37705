//! The HTTP face: OAuth 2.0 endpoints for MCP servers and other HTTP
//! services (RFC 7662 introspection, RFC 7009 revocation, RFC 8693
//! token exchange, RFC 8414 metadata), probes for load balancers that do not speak gRPC, and
//! Prometheus metrics. A thin layer over the same authority and the same
//! door as gRPC: the same rules, the same client shares.

// The error of a handler's steps is the HTTP answer itself, built once and
// returned at once: boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod auth;
mod exchange;
mod grants;
mod oauth;
mod register;
mod signin;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use crate::{
    authority::{Authority, Error},
    clients::{AuthError, Role},
    door::{Credentials, Door, Refused},
    grpc::Served,
    input::InvalidInput,
    metrics::Metrics,
    store::{Store, StoreError},
};

/// Largest form body accepted: a token is at most 128 bytes.
const MAX_FORM: usize = 16 * 1024;

/// What the handlers share.
pub struct Face<S> {
    pub authority: Arc<Authority<S>>,
    pub door: Arc<Door>,
    pub metrics: Arc<Metrics>,
    /// `iss`, and the base of the endpoints named in the metadata.
    pub issuer: String,
    /// Whether the database answers (what `/readyz` reports).
    pub ready: Arc<AtomicBool>,
    /// The authorization-code flow, when `--oidc-issuer` turns it on.
    pub signin: Option<Arc<crate::signin::Signin<S>>>,
}

pub fn router<S: Store>(face: Arc<Face<S>>) -> Router {
    let metadata_path = oauth::metadata_path(&face.issuer);
    let mut router = Router::new()
        .route("/oauth2/introspect", post(oauth::introspect::<S>))
        .route("/oauth2/revoke", post(oauth::revoke::<S>))
        .route("/oauth2/token", post(exchange::token::<S>))
        .route(
            "/oauth2/authorize",
            get(signin::authorize::<S>).post(oauth::authorize),
        )
        .route("/oauth2/callback", get(signin::callback::<S>))
        .route(
            "/oauth2/consent",
            get(signin::consent_page::<S>).post(signin::consent_answer::<S>),
        )
        .route("/oauth2/register", post(register::register::<S>))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata::<S>),
        )
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>));
    if metadata_path != "/.well-known/oauth-authorization-server" {
        router = router.route(&metadata_path, get(oauth::metadata::<S>));
    }
    router.with_state(face)
}

async fn readyz<S: Store>(State(face): State<Arc<Face<S>>>) -> Response {
    if face.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, "ready\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// The counts include the hidden reasons of refusals, so only a client
/// with the `metrics` role may read them.
async fn metrics<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let read = auth::from_headers(request.headers());
    let credentials = Credentials {
        key: read.key.as_ref().map(Option::as_deref).map_err(|e| *e),
        client_id: read.client_id.as_deref(),
    };
    match face
        .door
        .admit("http", "metrics", credentials, Some(Role::Metrics))
    {
        Ok(caller) => {
            let mut response = Response::new(Body::from(face.metrics.encode()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response.extensions_mut().insert(Served(caller));
            response
        }
        Err(err) => refused(err, read.scheme),
    }
}

/// Requests that match no route: gRPC callers get UNIMPLEMENTED as gRPC
/// expects, anyone else a 404.
pub async fn fallback(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        tonic::Status::unimplemented("").into_http()
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON answer that no cache may keep (RFC 6749 5.1, RFC 7662 2.2).
fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An OAuth error answer (RFC 6749 5.2).
fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(description) => {
            serde_json::json!({ "error": error, "error_description": description })
        }
        None => serde_json::json!({ "error": error }),
    };
    json(status, body.to_string())
}

fn invalid(err: &InvalidInput) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some(&err.to_string()),
    )
}

/// A refused caller: 401 with the challenges for how it tried, or 403 for
/// a client without the endpoint's role (named in the access line).
fn refused(refusal: Refused, scheme: auth::Scheme) -> Response {
    let err = refusal.error;
    let response = match err {
        // RFC 6749 5.2's code stays `invalid_client`; the description says
        // what the caller can fix (never anything about other keys).
        AuthError::Unauthenticated(why) => {
            let mut response = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                Some(&why.to_string()),
            );
            for challenge in auth::challenges(scheme) {
                response.headers_mut().append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            response
        }
        AuthError::PermissionDenied(_) => oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            Some(&err.to_string()),
        ),
    };
    match refusal.client {
        Some(client) => oauth::served(response, client),
        None => response,
    }
}

/// Every authority error becomes an HTTP answer here; the detail goes to
/// the log (by the same mapping as gRPC), never onto the wire.
fn failure(err: Error) -> Response {
    match err {
        Error::Invalid(invalid_input) => invalid(&invalid_input),
        Error::NotFound => oauth_error(StatusCode::NOT_FOUND, "not_found", None),
        // RFC 8693 2.2.2: a subject_token that is not valid for this use.
        Error::ParentUnknown => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            Some("subject_token: no live grant this client may delegate from"),
        ),
        Error::Precondition(why) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", Some(&why))
        }
        Error::Forbidden(why) => oauth_error(StatusCode::FORBIDDEN, "access_denied", Some(&why)),
        // No OAuth endpoint reads a stored credential; a failure here is the service's.
        Error::Credential(err) => {
            err.log();
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
        }
        Error::Store(StoreError::Unavailable(_)) => {
            err.log();
            let mut response = oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                None,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Error::Store(StoreError::Internal(_)) | Error::Unsealable(_) => {
            err.log();
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
        }
    }
}

fn overloaded() -> Response {
    let mut response = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        Some("server overloaded; retry with backoff"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A form body's fields, each at most once (RFC 6749 3.2) but for those
/// a standard lets repeat (RFC 8693's `audience` and `resource`).
struct Form(Vec<(String, String)>);

/// Fields that may be given more than once.
const REPEATABLE: [&str; 2] = ["audience", "resource"];

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

/// Receives a form body under the body deadline and size limit.
async fn read_form(door: &Door, request: Request) -> Result<Form, Response> {
    let form_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Content-Type must be application/x-www-form-urlencoded"),
        ));
    }
    let timeout = door.admission().body_timeout;
    let body = Limited::new(request.into_body(), MAX_FORM).collect();
    let bytes: Bytes = match tokio::time::timeout(timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                Some(&format!("request body larger than {MAX_FORM} bytes")),
            ));
        }
        Ok(Err(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("request body failed"),
            ));
        }
        Err(_) => {
            return Err(oauth_error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                Some(&format!("request body not received within {timeout:?}")),
            ));
        }
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(&bytes) {
        if !REPEATABLE.contains(&&*key) && fields.iter().any(|(seen, _)| *seen == key) {
            // Only the endpoints' own field names are repeated back.
            let field = match &*key {
                "token"
                | "token_type_hint"
                | "client_id"
                | "client_secret"
                | "grant_type"
                | "subject_token"
                | "subject_token_type"
                | "requested_token_type"
                | "scope"
                | "actor_token"
                | "actor_token_type"
                | "code"
                | "code_verifier"
                | "redirect_uri"
                | "refresh_token"
                | "flow"
                | "csrf"
                | "decision" => &*key,
                _ => "a form field",
            };
            return Err(invalid(&InvalidInput::new(
                field,
                "is given more than once",
            )));
        }
        fields.push((key.into_owned(), value.into_owned()));
    }
    Ok(Form(fields))
}
