//! Who may come in, and how many at once: shared by the gRPC gate and the
//! HTTP face, so a client's share of the server is one share whichever
//! interface it uses.
//!
//! A call is judged from its credentials first (the key, then the role its
//! method needs), before anything else is read. Only a call whose request
//! has fully arrived takes in-flight permits: one from its client's share
//! and one from the server's total. So a client that opens requests and
//! never finishes them holds no permit, and a client that floods the server
//! with real calls is shed at its share while the others keep theirs.
//! Shedding answers at once rather than queueing: queued calls only grow
//! latency and memory until clients time out, while a quick refusal lets
//! them back off or try another replica.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    audit::{AuthFailure, Event},
    clients::{AuthError, Caller, Directory, Role, Unauthenticated},
    metrics::Metrics,
};

/// How many calls run at once, in all and per client, and how long a
/// request body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub max_in_flight: usize,
    pub max_in_flight_per_client: usize,
    pub body_timeout: Duration,
}

/// What a request presented to say who it is (a key, and the client id
/// it claims): not the stored upstream `credentials`, which are another
/// thing entirely.
pub struct Presented<'a> {
    /// The key, `None` if none was given, or why the credentials were unreadable.
    pub key: Result<Option<&'a str>, &'static str>,
    /// The client id the request claims (HTTP Basic and form credentials):
    /// it must be the key's own.
    pub client_id: Option<&'a str>,
}

pub struct Door {
    clients: Arc<Directory>,
    admission: Admission,
    total: Arc<Semaphore>,
    /// One semaphore per client id, made on its first call. A std mutex:
    /// it is held for a map lookup, never across an await.
    per_client: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: Arc<Metrics>,
}

/// A call the door turned away: why, and the client that made it when
/// its key named one (it lacked the method's role), so that the call's
/// access line names the client its audit line names.
#[derive(Debug)]
pub struct Refused {
    pub error: AuthError,
    pub client: Option<Arc<Caller>>,
}

/// Held while a call is served.
pub struct Permits {
    _held: [OwnedSemaphorePermit; 2],
}

impl Door {
    pub fn new(clients: Arc<Directory>, admission: Admission, metrics: Arc<Metrics>) -> Self {
        Self {
            clients,
            total: Arc::new(Semaphore::new(admission.max_in_flight)),
            admission,
            per_client: Mutex::default(),
            metrics,
        }
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The caller, if its credentials name a client that has `role` (any
    /// client, for `None`). Refusals are audited with the method, which
    /// must be one of the server's own names (never the caller's text).
    pub fn admit(
        &self,
        interface: &'static str,
        method: &'static str,
        presented: Presented<'_>,
        role: Option<Role>,
    ) -> Result<Arc<Caller>, Refused> {
        let clients = self.clients.get();
        let why = match presented.key {
            Err(_) => Unauthenticated::Malformed,
            Ok(None) => Unauthenticated::NoKey,
            Ok(Some(_)) => Unauthenticated::UnknownKey,
        };
        let caller = presented
            .key
            .map_err(AuthFailure::Unreadable)
            .and_then(|key| {
                clients
                    .authenticate(key)
                    .map_err(|_| AuthFailure::UnknownKey)
            })
            .and_then(|caller| match presented.client_id {
                Some(id) if id != caller.id && !clients.is_dev() => {
                    Err(AuthFailure::ClientMismatch)
                }
                _ => Ok(caller),
            })
            .map_err(|reason| {
                Event::Authenticate {
                    interface,
                    method,
                    reason,
                }
                .write();
                self.metrics.auth_failure(interface, "unauthenticated");
                Refused {
                    error: AuthError::Unauthenticated(why),
                    client: None,
                }
            })?;
        if let Some(role) = role.filter(|&role| !caller.has(role)) {
            Event::Authorize {
                interface,
                client: &caller.id,
                method,
                role,
            }
            .write();
            self.metrics.auth_failure(interface, "permission_denied");
            return Err(Refused {
                error: AuthError::PermissionDenied(role),
                client: Some(caller),
            });
        }
        Ok(caller)
    }

    /// A permit from the client's share and one from the total, or neither.
    pub fn permits(&self, client: &str) -> Option<Permits> {
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
        let Ok(own) = share.try_acquire_owned() else {
            self.metrics.shed("client_share");
            return None;
        };
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            self.metrics.shed("total");
            return None;
        };
        Some(Permits {
            _held: [own, total],
        })
    }
}
