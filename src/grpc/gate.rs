//! The gate in front of `TokenAuthority` and `Credentials`: the [`Door`]
//! applied to gRPC, one gate for every service.
//!
//! The key and the role the method needs are checked from the headers and
//! the path alone ([`route`]), before the body is read; a refusal is audited with the
//! method and answered at once. Then the body is received under a short
//! deadline and a size limit, and only then does the call take its
//! in-flight permits (RESOURCE_EXHAUSTED at once when there are none).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
};
use tracing::{debug, info};

use crate::{
    clients::{Caller, Role},
    door::{Door, Presented},
    failure::Failure,
    input::MAX_MESSAGE,
};

/// Wraps a gRPC service; clones share the door.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    door: Arc<Door>,
}

impl<S> Gate<S> {
    pub fn new(inner: S, door: Arc<Door>) -> Self {
        Self { inner, door }
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

/// The caller a response was served to, in the response's extensions, for
/// the access log.
#[derive(Clone)]
pub struct Served(pub Arc<Caller>);

/// The role each method needs; `None`: any authenticated client (operator
/// reads, and methods that do not exist, which the service answers
/// UNIMPLEMENTED).
fn role_for(method: &str) -> Option<Role> {
    match method {
        "Mint" | "Rotate" | "Delegate" => Some(Role::Mint),
        "Validate" => Some(Role::Validate),
        "Claim" => Some(Role::Claim),
        "Revoke" => Some(Role::Revoke),
        _ => None,
    }
}

/// The method a path calls, as logs and metrics name it, and the role it
/// needs. Every `Credentials` path needs the `credentials` role, even one
/// that names no method (the service answers it UNIMPLEMENTED).
pub fn route(path: &str) -> (&'static str, Option<Role>) {
    match path
        .strip_prefix('/')
        .and_then(|path| path.strip_prefix(crate::pb::credentials_server::SERVICE_NAME))
        .and_then(|path| path.strip_prefix('/'))
    {
        Some(method) => (credentials_logged(method), Some(Role::Credentials)),
        None => {
            let method = logged(path.rsplit_once('/').map_or("", |(_, method)| method));
            (method, role_for(method))
        }
    }
}

/// A `Credentials` method as the audit trail names it (prefixed: `Get`
/// alone would say little beside `TokenAuthority`'s methods).
fn credentials_logged(method: &str) -> &'static str {
    match method {
        "Put" => "Credentials/Put",
        "Get" => "Credentials/Get",
        "BeginRefresh" => "Credentials/BeginRefresh",
        "CompleteRefresh" => "Credentials/CompleteRefresh",
        "AbortRefresh" => "Credentials/AbortRefresh",
        "Delete" => "Credentials/Delete",
        "List" => "Credentials/List",
        _ => "other",
    }
}

/// The method as the audit trail names it: the path is the caller's text,
/// so only the service's own method names are repeated.
pub fn logged(method: &str) -> &'static str {
    match method {
        "Mint" => "Mint",
        "Validate" => "Validate",
        "Claim" => "Claim",
        "Revoke" => "Revoke",
        "GetGrant" => "GetGrant",
        "ListGrants" => "ListGrants",
        "Rotate" => "Rotate",
        "Delegate" => "Delegate",
        _ => "other",
    }
}

/// The key of the request's one `authorization` header, which must read
/// exactly `Bearer <key>` (the scheme in any case, one space, a key without
/// spaces). Several headers, or any other shape, authenticate nobody.
pub fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, &'static str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("several authorization headers");
    }
    let value = value
        .to_str()
        .map_err(|_| "malformed authorization header")?;
    match value.split_once(' ') {
        Some((scheme, key))
            if scheme.eq_ignore_ascii_case("bearer")
                && !key.is_empty()
                && !key.contains(|c: char| c.is_ascii_whitespace()) =>
        {
            Ok(Some(key))
        }
        _ => Err("malformed authorization header"),
    }
}

/// A gRPC frame's header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (method, role) = route(request.uri().path());
        let presented = Presented {
            key: bearer(request.headers()),
            client_id: None,
        };
        let caller = match self.door.admit("grpc", method, presented, role) {
            Ok(caller) => caller,
            Err(refused) => {
                let response = Status::from(refused.error).into_http();
                let response = match refused.client {
                    Some(client) => served(response, client),
                    None => response,
                };
                return Box::pin(async move { Ok(response) });
            }
        };
        // The service that was made ready serves this call; the clone left
        // behind is made ready for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let door = self.door.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let limited = Limited::new(body, MAX_MESSAGE + FRAME_HEADER);
            let body_timeout = door.admission().body_timeout;
            let body = match tokio::time::timeout(body_timeout, limited.collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                    let status = Status::out_of_range(format!(
                        "request message larger than the {MAX_MESSAGE}-byte limit"
                    ));
                    return Ok(served(status.into_http(), caller));
                }
                Ok(Err(err)) => {
                    debug!(client = %caller.id, error = %err, "request body failed");
                    let status = Status::cancelled("request body failed");
                    return Ok(served(status.into_http(), caller));
                }
                Err(_) => {
                    info!(client = %caller.id, method, "request body not received in time");
                    let status = Status::deadline_exceeded(format!(
                        "request body not received within {body_timeout:?}"
                    ));
                    return Ok(served(status.into_http(), caller));
                }
            };
            let Some(permits) = door.permits(&caller.id) else {
                let status = Status::from(Failure::overloaded());
                return Ok(served(status.into_http(), caller));
            };
            parts.extensions.insert(caller.clone());
            let response = inner
                .call(http::Request::from_parts(parts, Full::new(body)))
                .await;
            drop(permits);
            response.map(|response| served(response, caller))
        })
    }
}

fn served(mut response: http::Response<Body>, caller: Arc<Caller>) -> http::Response<Body> {
    response.extensions_mut().insert(Served(caller));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for value in values {
            headers.append(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_one_exact_bearer_header_names_a_key() {
        assert_eq!(bearer(&headers(&["Bearer tsk_a"])), Ok(Some("tsk_a")));
        assert_eq!(bearer(&headers(&["bearer tsk_a"])), Ok(Some("tsk_a")));
        assert_eq!(bearer(&headers(&[])), Ok(None));
        for bad in [
            &["Bearer  tsk_a"][..],
            &["Bearer tsk_a "],
            &["Bearer tsk_a\t"],
            &["Bearer "],
            &["Bearer"],
            &["Basic tsk_a"],
            &["tsk_a"],
            &["Bearer tsk_a", "Bearer tsk_b"],
        ] {
            assert!(bearer(&headers(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_by_method() {
        assert_eq!(role_for("Mint"), Some(Role::Mint));
        assert_eq!(role_for("Validate"), Some(Role::Validate));
        assert_eq!(role_for("Claim"), Some(Role::Claim));
        assert_eq!(role_for("Revoke"), Some(Role::Revoke));
        assert_eq!(role_for("GetGrant"), None);
        assert_eq!(role_for("ListGrants"), None);
        assert_eq!(logged("Claim"), "Claim");
        assert_eq!(logged("Claim\"forged=1"), "other");
    }

    #[test]
    fn routes_by_service() {
        let credentials = Some(Role::Credentials);
        assert_eq!(
            route("/tessera.v1.TokenAuthority/Mint"),
            ("Mint", Some(Role::Mint))
        );
        assert_eq!(
            route("/tessera.v1.TokenAuthority/GetGrant"),
            ("GetGrant", None)
        );
        assert_eq!(
            route("/tessera.v1.Credentials/Get"),
            ("Credentials/Get", credentials)
        );
        assert_eq!(
            route("/tessera.v1.Credentials/BeginRefresh"),
            ("Credentials/BeginRefresh", credentials)
        );
        assert_eq!(
            route("/tessera.v1.Credentials/Nope"),
            ("other", credentials)
        );
        assert_eq!(route("/tessera.v1.Credentials/"), ("other", credentials));
        assert_eq!(route("/tessera.v1.CredentialsX/Get"), ("other", None));
    }
}
