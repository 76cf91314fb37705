//! The gate in front of `TokenAuthority`: who may call, and how many at once.
//!
//! Everything a call must pass before it costs the server anything is
//! decided here from the headers and the path alone, before the body is
//! read: the bearer key, then the role the method needs. A refusal is
//! audited with the method and answered at once.
//!
//! Only then is the body received, under a short deadline and a size limit,
//! and only a call whose body has fully arrived takes an in-flight permit:
//! one from its client's share and one from the server's total. So a client
//! that opens streams and never finishes them holds no permit, and a client
//! that floods the server with real calls is shed at its share while the
//! others keep theirs. Shedding answers RESOURCE_EXHAUSTED at once rather
//! than queueing: queued calls only grow latency and memory until clients
//! time out, while a quick refusal lets them back off or try another
//! replica.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
};
use tracing::{debug, info};

use crate::{
    audit,
    clients::{AuthError, Caller, Clients, Role},
    input::MAX_MESSAGE,
};

/// How many calls run at once, in all and per client, and how long a body
/// may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub max_in_flight: usize,
    pub max_in_flight_per_client: usize,
    pub body_timeout: Duration,
}

/// Wraps the `TokenAuthority` service; clones share the permits.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
}

struct Shared {
    clients: Arc<Clients>,
    admission: Admission,
    total: Arc<Semaphore>,
    /// One semaphore per client id, made on its first call. A std mutex:
    /// it is held for a map lookup, never across an await.
    per_client: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl<S> Gate<S> {
    pub fn new(inner: S, clients: Arc<Clients>, admission: Admission) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                clients,
                total: Arc::new(Semaphore::new(admission.max_in_flight)),
                admission,
                per_client: Mutex::default(),
            }),
        }
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

/// The role each method needs; `None`: any authenticated client (operator
/// reads, and methods that do not exist, which the service answers
/// UNIMPLEMENTED).
fn role_for(method: &str) -> Option<Role> {
    match method {
        "Mint" => Some(Role::Mint),
        "Validate" => Some(Role::Validate),
        "Claim" => Some(Role::Claim),
        "Revoke" => Some(Role::Revoke),
        _ => None,
    }
}

/// The method as the audit trail names it: the path is the caller's text,
/// so only the service's own method names are repeated.
fn logged(method: &str) -> &str {
    match method {
        "Mint" | "Validate" | "Claim" | "Revoke" | "GetGrant" | "ListGrants" => method,
        _ => "other",
    }
}

/// The key of the request's one `authorization` header, which must read
/// exactly `Bearer <key>` (the scheme in any case, one space, a key without
/// spaces). Several headers, or any other shape, authenticate nobody.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, &'static str> {
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

impl Shared {
    /// The caller, if its key is known and it has the method's role.
    fn admit(&self, method: &str, headers: &http::HeaderMap) -> Result<Arc<Caller>, Status> {
        let method = logged(method);
        let caller = bearer(headers)
            .and_then(|key| {
                self.clients
                    .authenticate(key)
                    .map_err(|_| "missing or unknown client key")
            })
            .map_err(|reason| {
                info!(target: audit::TARGET, event = "authenticate", outcome = "refused", method, reason, "authentication failed");
                Status::from(AuthError::Unauthenticated)
            })?;
        if let Some(role) = role_for(method).filter(|&role| !caller.has(role)) {
            info!(
                target: audit::TARGET,
                event = "authorize",
                outcome = "refused",
                client = %caller.id,
                method,
                role = role.name(),
                "permission denied"
            );
            return Err(AuthError::PermissionDenied(role).into());
        }
        Ok(caller)
    }

    /// A permit from the client's share and one from the total, or neither.
    fn permits(&self, client: &str) -> Option<[OwnedSemaphorePermit; 2]> {
        let share = {
            let mut map = self
                .per_client
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match map.get(client) {
                Some(share) => share.clone(),
                None => {
                    let share = Arc::new(Semaphore::new(self.admission.max_in_flight_per_client));
                    map.insert(client.to_owned(), share.clone());
                    share
                }
            }
        };
        let own = share.try_acquire_owned().ok()?;
        let total = self.total.clone().try_acquire_owned().ok()?;
        Some([own, total])
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
        let method = request
            .uri()
            .path()
            .rsplit_once('/')
            .map_or("", |(_, method)| method);
        let caller = match self.shared.admit(method, request.headers()) {
            Ok(caller) => caller,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        // The service that was made ready serves this call; the clone left
        // behind is made ready for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let limited = Limited::new(body, MAX_MESSAGE + FRAME_HEADER);
            let body = match tokio::time::timeout(shared.admission.body_timeout, limited.collect())
                .await
            {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                    let status = Status::out_of_range(format!(
                        "request message larger than the {MAX_MESSAGE}-byte limit"
                    ));
                    return Ok(status.into_http());
                }
                Ok(Err(err)) => {
                    debug!(client = %caller.id, error = %err, "request body failed");
                    return Ok(Status::cancelled("request body failed").into_http());
                }
                Err(_) => {
                    let method = logged(parts.uri.path().rsplit('/').next().unwrap_or(""));
                    info!(client = %caller.id, method, "request body not received in time");
                    let status = Status::deadline_exceeded(format!(
                        "request body not received within {:?}",
                        shared.admission.body_timeout
                    ));
                    return Ok(status.into_http());
                }
            };
            let Some(permits) = shared.permits(&caller.id) else {
                debug!(client = %caller.id, "overloaded: call refused");
                let status = Status::resource_exhausted("server overloaded; retry with backoff");
                return Ok(status.into_http());
            };
            parts.extensions.insert(caller);
            let response = inner
                .call(http::Request::from_parts(parts, Full::new(body)))
                .await;
            drop(permits);
            response
        })
    }
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
}
