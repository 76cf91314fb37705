//! What the authority takes and gives back: requests that passed their
//! field limits, outcomes, and errors.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    credentials::Secret,
    grant::{CredentialRef, Grant},
    input::InvalidInput,
    rules::Denial,
    seal::Unsealable,
    store::{Revision, StoreError},
    token::Token,
};

/// TTL policy, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// How many delegations deep a grant may be.
    pub max_delegation_depth: u32,
}

/// A Mint request whose fields passed their limits. No `Debug`: it holds
/// the plaintext payload.
pub struct MintSpec {
    pub subject: String,
    pub audience: Vec<String>,
    pub run_id: String,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `None` = the default TTL.
    pub ttl: Option<Duration>,
    pub max_uses: u32,
    pub payload: Vec<u8>,
    pub revoke_run_on_replay: bool,
    /// One of the caller's stored credentials, handed over by a claim.
    pub payload_credential: Option<CredentialRef>,
}

/// A Validate or Claim request.
pub struct Check {
    /// As presented; only its length has been checked.
    pub token: String,
    pub required_scopes: Vec<String>,
    /// The principal the caller acts for; `None` = no subject binding.
    pub subject: Option<String>,
    /// May be answered from this replica's cache (BOUNDED Validate).
    pub bounded: bool,
    /// A BOUNDED Validate's answer must reflect at least the writes up to
    /// this revision (from a Mint or Revoke): the cache is skipped.
    pub at_least: Option<Revision>,
    /// Claim's idempotency key, if any.
    pub claim_key: Option<String>,
}

impl Check {
    /// A check without a claim key, its fields within their limits.
    pub fn new(
        token: String,
        required_scopes: Vec<String>,
        subject: String,
        bounded: bool,
    ) -> crate::input::Result<Self> {
        crate::input::token("token", &token)?;
        Ok(Self {
            token,
            required_scopes: crate::input::scopes("required_scopes", required_scopes)?,
            subject: crate::input::optional_id("subject", subject)?,
            bounded,
            at_least: None,
            claim_key: None,
        })
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("token", &"<redacted>")
            .field("required_scopes", &self.required_scopes)
            .field("subject", &self.subject)
            .field("bounded", &self.bounded)
            .field("at_least", &self.at_least)
            .field("claim_key", &self.claim_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

// Returned once per call and moved straight into the response: boxing the
// grant would only add an allocation to the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Validated {
    Valid(Grant),
    Denied(Denial),
}

#[allow(clippy::large_enum_variant)]
pub enum Claimed {
    Claimed {
        grant: Grant,
        payload: Vec<u8>,
        /// The named credential's current secret and version.
        credential: Option<(Secret, u64)>,
    },
    Denied(Denial),
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claimed::Claimed {
                grant,
                payload,
                credential,
            } => f
                .debug_struct("Claimed")
                .field("grant", grant)
                .field("payload", &format_args!("<{} bytes>", payload.len()))
                .field("credential", credential)
                .finish(),
            Claimed::Denied(denial) => f.debug_tuple("Denied").field(denial).finish(),
        }
    }
}

/// What Revoke aims at, as the caller gave it.
#[derive(Debug)]
pub enum Target {
    Token(Token),
    GrantId(String),
    RunId(String),
    Subject(String),
}

/// What Rotate replaces, as the caller named it.
#[derive(Debug)]
pub enum RotateTarget {
    Token(Token),
    GrantId(String),
}

/// A Delegate request whose fields passed their limits; the rules against
/// the parent come after. No `Debug`: it holds the parent token and the
/// plaintext payload.
pub struct DelegateSpec {
    pub parent_token: String,
    /// Empty: the parent's.
    pub scopes: Vec<String>,
    /// Empty: the parent's.
    pub audience: Vec<String>,
    /// `None`: the parent's remaining lifetime.
    pub ttl: Option<Duration>,
    /// 0: the parent's remaining uses (unlimited under an unlimited parent).
    pub max_uses: u32,
    pub labels: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// A page of ListGrants.
#[derive(Debug)]
pub struct Page {
    pub grants: Vec<Grant>,
    pub next_page_token: Option<String>,
    pub active_count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("grant not found")]
    NotFound,
    /// Delegate's parent is not a live token this caller may use: the
    /// same answer whatever the reason, as for an unknown token.
    #[error("parent_token: no live grant this client may delegate from")]
    ParentUnknown,
    /// The request is well formed but the grant's state refuses it.
    #[error("{0}")]
    Precondition(String),
    /// The caller's roles allow the call, but not on this grant.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unsealable(#[from] Unsealable),
    /// Reading the credential a grant names failed (or the service is off).
    #[error(transparent)]
    Credential(#[from] crate::credentials::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
