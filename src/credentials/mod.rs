//! Credentials: upstream secrets (an OAuth access and refresh token, say)
//! that a client keeps per bearer, sealed at rest, with one refresher at a
//! time across every worker and replica.
//!
//! A credential belongs to the client that put it: it is found by (client,
//! bearer, name), so another client's credential is simply not there. Its
//! version grows by one on every write, and a write may be conditional on
//! it (Put's `if_version`). A refresh is a lease: [`Credentials::begin_refresh`]
//! grants it to exactly one caller at a time, for a TTL after which a
//! holder that died loses it; [`Credentials::complete_refresh`] commits the
//! new secret only while the lease is still held on the version it was
//! granted for. Readers keep reading the committed version throughout.
//! Every decision that races is one conditional statement in the store.
//!
//! Layout: [`secret`] the secret and its limits, [`keyring`] sealing under
//! the `--seal-key` keys, [`keycheck`] proving them against the database
//! at start, [`input`] the other limits, [`lease`] lease ids and
//! the refresh outcome, [`rekey`] re-sealing under a new key.

use std::{future::Future, sync::Arc, time::Duration};

pub mod input;
pub mod keycheck;
pub mod keyring;
pub mod lease;
pub mod rekey;
pub mod secret;

pub use crate::store::credentials::Slot;
pub use keyring::{Keyring, Unsealable};
pub use lease::{LeaseId, Refresh};
pub use secret::Secret;

use crate::{
    audit::Event,
    clients::Caller,
    grant::Micros,
    input::InvalidInput,
    metrics::Metrics,
    store::{
        CredentialStore, StoreError,
        credentials::{Listed, Stored},
    },
};

/// What FAILED_PRECONDITION says when there is no `--seal-key`.
pub const DISABLED: &str = "credentials are disabled: this server has no seal key. Start it \
     with --seal-key FILE (or TESSERA_SEAL_KEY=FILE), a file of KEYID:64hexdigits lines, e.g. \
     `echo \"k1:$(openssl rand -hex 32)\" > seal.key`";

/// How often an unconditional Put retries when racing writers keep
/// changing the version under it.
const PUT_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{DISABLED}")]
    Disabled,
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("credential not found")]
    NotFound,
    /// Put's `if_version` did not match: read again and retry.
    #[error("{0}")]
    VersionMismatch(&'static str),
    /// Writers kept racing: retry.
    #[error("the credential changed concurrently; retry")]
    Contended,
    /// The lease expired, was released, superseded or never granted to
    /// this client: nothing was written.
    #[error(
        "the lease is not held (expired, completed, aborted, superseded by a Put, or not this \
         client's); nothing was written"
    )]
    LeaseNotHeld,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unsealable(#[from] Unsealable),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A Put whose fields passed their limits.
#[derive(Debug)]
pub struct PutSpec {
    pub bearer_id: String,
    pub name: String,
    pub secret: Secret,
    pub expires_at: Option<Micros>,
    /// `None`: create or replace; `Some(0)`: create only; `Some(n)`:
    /// replace version n only.
    pub if_version: Option<u64>,
}

/// What Get answers.
#[derive(Debug)]
pub struct Current {
    pub secret: Secret,
    pub version: u64,
    pub expires_at: Option<Micros>,
    /// The access token expires within the asked window, by the database's clock.
    pub refresh_due: bool,
}

/// A page of List.
#[derive(Debug)]
pub struct Page {
    pub credentials: Vec<Listed>,
    pub next_page_token: Option<String>,
}

pub struct Credentials<S> {
    store: S,
    /// `None`: no `--seal-key`, every call is refused.
    keyring: Option<Arc<Keyring>>,
    metrics: Arc<Metrics>,
}

/// A current secret and its version, when it comes.
pub type SecretFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Option<(Secret, u64)>>> + Send + 'a>>;

/// Where the authority reads the secret a claim hands over: the
/// Credentials service, seen through one method, so that the authority
/// does not depend on how credentials are stored.
pub trait SecretSource: Send + Sync {
    fn current<'a>(
        &'a self,
        client_id: &'a str,
        bearer_id: &'a str,
        name: &'a str,
    ) -> SecretFuture<'a>;
}

impl<S: CredentialStore> SecretSource for Credentials<S> {
    fn current<'a>(
        &'a self,
        client_id: &'a str,
        bearer_id: &'a str,
        name: &'a str,
    ) -> SecretFuture<'a> {
        Box::pin(self.current_secret(client_id, bearer_id, name))
    }
}

impl<S: CredentialStore> Credentials<S> {
    pub fn new(store: S, keyring: Option<Arc<Keyring>>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            keyring,
            metrics,
        }
    }

    fn keyring(&self) -> Result<&Keyring> {
        self.keyring.as_deref().ok_or(Error::Disabled)
    }

    /// Whether the service is on (there is a seal key): checked first,
    /// before any field, by every call.
    pub fn enabled(&self) -> Result<()> {
        self.keyring().map(|_| ())
    }

    fn slot(caller: &Caller, bearer_id: String, name: String) -> Result<Slot> {
        Ok(Slot {
            client_id: caller.id.clone(),
            bearer_id: input::bearer_id(bearer_id)?,
            name: input::name("name", name)?,
        })
    }

    pub async fn put(&self, caller: &Caller, spec: PutSpec) -> Result<u64> {
        let keyring = self.keyring()?;
        let slot = Self::slot(caller, spec.bearer_id, spec.name)?;
        let (secret, expires_at) = (&spec.secret, spec.expires_at);
        let outcome = match spec.if_version {
            Some(0) => self
                .store
                .create(&slot, &keyring.seal(&slot, 1, secret), expires_at)
                .await?
                .then_some(1)
                .ok_or(Error::VersionMismatch(
                    "if_version is 0 but the credential exists",
                )),
            Some(version) => self
                .store
                .replace(
                    &slot,
                    version,
                    &keyring.seal(&slot, version + 1, secret),
                    expires_at,
                )
                .await?
                .then_some(version + 1)
                .ok_or(Error::VersionMismatch(
                    "if_version does not match the stored version (or there is none)",
                )),
            None => self.put_any(keyring, &slot, secret, expires_at).await,
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(Error::VersionMismatch(_) | Error::Contended) => "conflict",
            Err(_) => "error",
        };
        self.metrics.credential("put", label);
        let version = outcome?;
        Event::CredentialPut {
            slot: &slot,
            version,
        }
        .write();
        Ok(version)
    }

    /// Create or replace, whatever the version: compare-and-set in a loop.
    async fn put_any(
        &self,
        keyring: &Keyring,
        slot: &Slot,
        secret: &Secret,
        expires_at: Option<Micros>,
    ) -> Result<u64> {
        for _ in 0..PUT_ATTEMPTS {
            let written = match self.store.version(slot).await? {
                None => self
                    .store
                    .create(slot, &keyring.seal(slot, 1, secret), expires_at)
                    .await?
                    .then_some(1),
                Some(version) => self
                    .store
                    .replace(
                        slot,
                        version,
                        &keyring.seal(slot, version + 1, secret),
                        expires_at,
                    )
                    .await?
                    .then_some(version + 1),
            };
            if let Some(version) = written {
                return Ok(version);
            }
        }
        Err(Error::Contended)
    }

    pub async fn get(
        &self,
        caller: &Caller,
        bearer_id: String,
        name: String,
        refresh_window: Option<Duration>,
    ) -> Result<Current> {
        self.keyring()?;
        let window = input::refresh_window(refresh_window)?;
        let slot = Self::slot(caller, bearer_id, name)?;
        let found = self.read(&slot).await;
        self.metrics.credential(
            "get",
            match &found {
                Ok(Some(_)) => "ok",
                Ok(None) => "not_found",
                Err(_) => "error",
            },
        );
        let (stored, secret) = found?.ok_or(Error::NotFound)?;
        let due_by = stored.now.saturating_add(crate::grant::micros(window));
        Ok(Current {
            secret,
            version: stored.version,
            expires_at: stored.expires_at,
            refresh_due: stored.expires_at.is_some_and(|at| at <= due_by),
        })
    }

    async fn read(&self, slot: &Slot) -> Result<Option<(Stored, Secret)>> {
        let keyring = self.keyring()?;
        let Some(stored) = self.store.read(slot).await? else {
            return Ok(None);
        };
        let secret = keyring.open(slot, stored.version, &stored.sealed)?;
        Ok(Some((stored, secret)))
    }

    /// The secret `client_id` keeps for `bearer_id` under `name`, and its
    /// version; `None` if there is none. For other services of this server
    /// (the caller is already authorised, and its limits already checked).
    pub async fn current_secret(
        &self,
        client_id: &str,
        bearer_id: &str,
        name: &str,
    ) -> Result<Option<(Secret, u64)>> {
        let slot = Slot {
            client_id: client_id.to_owned(),
            bearer_id: bearer_id.to_owned(),
            name: name.to_owned(),
        };
        Ok(self
            .read(&slot)
            .await?
            .map(|(stored, secret)| (secret, stored.version)))
    }

    pub async fn begin_refresh(
        &self,
        caller: &Caller,
        bearer_id: String,
        name: String,
        lease_ttl: Option<Duration>,
    ) -> Result<Refresh> {
        self.keyring()?;
        let ttl = input::lease_ttl(lease_ttl)?;
        let slot = Self::slot(caller, bearer_id, name)?;
        let outcome = lease::begin(&self.store, &slot, ttl).await;
        self.metrics.credential(
            "begin_refresh",
            match &outcome {
                Ok(Refresh::Granted { .. }) => "granted",
                Ok(Refresh::Held { .. }) => "held",
                Err(Error::NotFound) => "not_found",
                Err(_) => "error",
            },
        );
        if let Ok(Refresh::Granted { fence, version, .. }) = &outcome {
            Event::CredentialLease {
                slot: &slot,
                version: *version,
                fence: *fence,
            }
            .write();
        }
        outcome
    }

    pub async fn complete_refresh(
        &self,
        caller: &Caller,
        lease_id: String,
        secret: Secret,
        expires_at: Option<Micros>,
    ) -> Result<u64> {
        let keyring = self.keyring()?;
        let lease_id = LeaseId::parse(lease_id)?;
        let outcome = async {
            let leased = self
                .store
                .leased(&caller.id, lease_id.as_str())
                .await?
                .ok_or(Error::LeaseNotHeld)?;
            let next = leased.version + 1;
            let sealed = keyring.seal(&leased.slot, next, &secret);
            let done = self
                .store
                .complete(
                    &caller.id,
                    lease_id.as_str(),
                    leased.version,
                    &sealed,
                    expires_at,
                )
                .await?;
            if done {
                Ok((leased.slot, next))
            } else {
                Err(Error::LeaseNotHeld)
            }
        }
        .await;
        self.metrics.credential(
            "complete_refresh",
            match &outcome {
                Ok(_) => "ok",
                Err(Error::LeaseNotHeld) => "stale",
                Err(_) => "error",
            },
        );
        let (slot, version) = outcome?;
        Event::CredentialRefreshed {
            slot: &slot,
            version,
        }
        .write();
        Ok(version)
    }

    pub async fn abort_refresh(&self, caller: &Caller, lease_id: String) -> Result<()> {
        self.keyring()?;
        let lease_id = LeaseId::parse(lease_id)?;
        let released = self.store.release(&caller.id, lease_id.as_str()).await?;
        self.metrics
            .credential("abort_refresh", if released { "ok" } else { "stale" });
        released.then_some(()).ok_or(Error::LeaseNotHeld)
    }

    pub async fn delete(&self, caller: &Caller, bearer_id: String, name: String) -> Result<bool> {
        self.keyring()?;
        let slot = Self::slot(caller, bearer_id, name)?;
        let deleted = self.store.delete(&slot).await?;
        self.metrics
            .credential("delete", if deleted { "ok" } else { "not_found" });
        if deleted {
            Event::CredentialDeleted { slot: &slot }.write();
        }
        Ok(deleted)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        bearer_id: String,
        page_size: u32,
        page_token: String,
    ) -> Result<Page> {
        self.keyring()?;
        let bearer_id = input::bearer_id(bearer_id)?;
        let limit = input::page_size(page_size)?;
        let after = match page_token.is_empty() {
            true => String::new(),
            false => input::name("page_token", page_token)?,
        };
        // One more than the page, to know whether another follows.
        let mut credentials = self
            .store
            .list(&caller.id, &bearer_id, &after, limit + 1)
            .await?;
        self.metrics.credential("list", "ok");
        let next_page_token = if credentials.len() > limit as usize {
            credentials.truncate(limit as usize);
            credentials.last().map(|last| last.name.clone())
        } else {
            None
        };
        Ok(Page {
            credentials,
            next_page_token,
        })
    }
}
