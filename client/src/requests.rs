//! Typed requests (builders over the wire messages) and typed answers.

use std::{collections::HashMap, time::Duration};

use crate::{
    Denial, Grant,
    error::Error,
    pb::{self, Consistency, RevokeReason},
    secret::{SecretBytes, Token},
};

pub(crate) fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

/// A Mint: a new token for `subject`.
#[derive(Debug, Clone)]
pub struct Mint(pub(crate) pb::MintRequest);

impl Mint {
    pub fn new(subject: impl Into<String>) -> Self {
        Self(pb::MintRequest {
            subject: subject.into(),
            ..Default::default()
        })
    }

    /// What the token allows (`family:*` grants a whole family).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.0.scopes = strings(scopes);
        self
    }

    /// The client ids that may validate or claim it; none = any client
    /// with the role.
    pub fn audience<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audience: I) -> Self {
        self.0.audience = strings(audience);
        self
    }

    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.0.run_id = run_id.into();
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.labels.insert(key.into(), value.into());
        self
    }

    /// Lifetime; unset = the server's default.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.0.ttl = Some(duration(ttl));
        self
    }

    /// 0 = unlimited, 1 = single use, N = N claims.
    pub fn max_uses(mut self, max_uses: u32) -> Self {
        self.0.max_uses = max_uses;
        self
    }

    /// Revealed only by a successful claim.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.0.payload = payload.into();
        self
    }

    /// Revoke the whole run if the token is presented after it was used up
    /// or revoked.
    pub fn revoke_run_on_replay(mut self, on: bool) -> Self {
        self.0.revoke_run_on_replay = on;
        self
    }

    /// A claim hands over the current secret of this stored credential.
    pub fn payload_credential(
        mut self,
        bearer_id: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        self.0.payload_credential = Some(pb::CredentialRef {
            bearer_id: bearer_id.into(),
            name: name.into(),
        });
        self
    }
}

/// A new token and its grant (Mint, Delegate).
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: Token,
    pub grant: Grant,
    /// Mint's: hand it to [`Validate::at_least_as_fresh`] for a BOUNDED
    /// answer that knows this grant. `None` when every answer already
    /// does (a server without read replicas, or on SQLite).
    pub revision: Option<Revision>,
}

/// How far the database had got when a Mint or Revoke was acknowledged:
/// opaque, to be handed back to [`Validate::at_least_as_fresh`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revision(String);

impl Revision {
    /// From the wire, where empty means none.
    pub(crate) fn from_wire(text: String) -> Option<Self> {
        (!text.is_empty()).then_some(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Revoke's outcome ([`crate::Client::revoke_with_revision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Live grants revoked (the last attempt's count if retried).
    pub revoked: u64,
    /// As [`Minted::revision`]: a BOUNDED Validate given it sees the revocation.
    pub revision: Option<Revision>,
}

/// A Validate: checks a token, consuming nothing.
#[derive(Debug, Clone)]
pub struct Validate(pub(crate) pb::ValidateRequest);

impl Validate {
    pub fn new(token: impl Into<Token>) -> Self {
        Self(pb::ValidateRequest {
            token: token.into().into_plaintext(),
            ..Default::default()
        })
    }

    /// Every one must be granted.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.0.required_scopes = strings(scopes);
        self
    }

    /// The verified principal the caller acts for.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.0.subject = subject.into();
        self
    }

    /// FULL (the default) asks the database; BOUNDED may answer from the
    /// server's memory, at most `--cache-max-age` old.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.0.consistency = consistency.into();
        self
    }

    /// A BOUNDED answer that reflects at least the Mint or Revoke that
    /// returned `revision` (read-your-writes through read replicas): not
    /// from the server's memory, and from a standby only once it has that
    /// write. Sets BOUNDED (FULL always reflects every write).
    pub fn at_least_as_fresh(mut self, revision: &Revision) -> Self {
        self.0.consistency = Consistency::Bounded.into();
        self.0.at_least_as_fresh = revision.0.clone();
        self
    }
}

/// A Validate's outcome.
// Returned once per call: matching on it plainly matters more than its size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Validation {
    Valid(Grant),
    Denied(Denial),
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid(_))
    }

    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Self::Valid(grant) => Some(grant),
            Self::Denied(_) => None,
        }
    }

    pub(crate) fn from_pb(answer: pb::ValidateResponse) -> Result<Self, Error> {
        if answer.valid {
            let grant = answer
                .grant
                .ok_or(Error::Protocol("valid without a grant"))?;
            Ok(Self::Valid(grant))
        } else {
            Ok(Self::Denied(answer.denial()))
        }
    }
}

/// A Claim: consumes one use of a token.
#[derive(Debug, Clone)]
pub struct Claim(pub(crate) pb::ClaimRequest);

impl Claim {
    pub fn new(token: impl Into<Token>) -> Self {
        Self(pb::ClaimRequest {
            token: token.into().into_plaintext(),
            ..Default::default()
        })
    }

    /// Every one must be granted.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.0.required_scopes = strings(scopes);
        self
    }

    /// The verified principal the caller acts for.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.0.subject = subject.into();
        self
    }

    /// The idempotency key (≤ 128 bytes). By default `claim()` makes a
    /// fresh random one per call; set one to make a claim retry-safe
    /// across calls too (say, across a restart of your own process): a
    /// claim repeated with the same key and token gets the original
    /// outcome and consumes nothing more.
    pub fn claim_key(mut self, key: impl Into<String>) -> Self {
        self.0.claim_key = key.into();
        self
    }
}

/// A Claim's outcome.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    Claimed(Claimed),
    Denied(Denial),
}

impl ClaimOutcome {
    pub fn is_claimed(&self) -> bool {
        matches!(self, Self::Claimed(_))
    }

    pub(crate) fn from_pb(answer: pb::ClaimResponse) -> Result<Self, Error> {
        if !answer.claimed {
            return Ok(Self::Denied(answer.denial()));
        }
        let grant = answer
            .grant
            .ok_or(Error::Protocol("claimed without a grant"))?;
        let credential = (!answer.credential.is_empty()).then(|| Credential {
            secret: answer
                .credential
                .into_iter()
                .map(|(name, value)| (name, SecretBytes::new(value)))
                .collect(),
            version: answer.credential_version,
        });
        Ok(Self::Claimed(Claimed {
            grant,
            payload: SecretBytes::new(answer.payload),
            credential,
        }))
    }
}

/// A successful claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The grant after this use.
    pub grant: Grant,
    /// The payload minted with the token (empty if none).
    pub payload: SecretBytes,
    /// The current secret of the credential the grant names, if it names one.
    pub credential: Option<Credential>,
}

/// A stored credential's secret, as a claim hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub secret: HashMap<String, SecretBytes>,
    pub version: u64,
}

/// What a Revoke revokes, and why.
#[derive(Debug, Clone)]
pub struct Revoke(pub(crate) pb::RevokeRequest);

impl Revoke {
    fn target(target: pb::revoke_request::Target) -> Self {
        Self(pb::RevokeRequest {
            target: Some(target),
            reason: RevokeReason::Manual.into(),
        })
    }

    /// The grant of this token.
    pub fn token(token: impl Into<Token>) -> Self {
        Self::target(pb::revoke_request::Target::Token(
            token.into().into_plaintext(),
        ))
    }

    /// One grant, by its id.
    pub fn grant(grant_id: impl Into<String>) -> Self {
        Self::target(pb::revoke_request::Target::GrantId(grant_id.into()))
    }

    /// Every live grant of a run.
    pub fn run(run_id: impl Into<String>) -> Self {
        Self::target(pb::revoke_request::Target::RunId(run_id.into()))
    }

    /// Every live grant of a subject.
    pub fn subject(subject: impl Into<String>) -> Self {
        Self::target(pb::revoke_request::Target::Subject(subject.into()))
    }

    /// Why, for the audit trail (default `MANUAL`).
    pub fn reason(mut self, reason: RevokeReason) -> Self {
        self.0.reason = reason.into();
        self
    }
}

/// A ListGrants query.
#[derive(Debug, Clone, Default)]
pub struct ListGrants(pub(crate) pb::ListGrantsRequest);

impl ListGrants {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.0.subject = subject.into();
        self
    }

    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.0.run_id = run_id.into();
        self
    }

    /// Also list revoked, expired and used-up grants.
    pub fn include_inactive(mut self, on: bool) -> Self {
        self.0.include_inactive = on;
        self
    }

    /// Default 100, at most 1000.
    pub fn page_size(mut self, size: u32) -> Self {
        self.0.page_size = size;
        self
    }

    /// A previous page's `next_page_token`.
    pub fn page_token(mut self, token: impl Into<String>) -> Self {
        self.0.page_token = token.into();
        self
    }
}

/// One page of grants.
#[derive(Debug, Clone)]
pub struct GrantPage {
    /// Oldest first.
    pub grants: Vec<Grant>,
    /// Pass to [`ListGrants::page_token`] for the next page; `None` on the last.
    pub next_page_token: Option<String>,
    /// Live grants matching the subject and run filters.
    pub active_count: u64,
}

/// A Rotate: replaces a grant with a successor and a new token.
#[derive(Debug, Clone)]
pub struct Rotate(pub(crate) pb::RotateRequest);

impl Rotate {
    fn target(target: pb::rotate_request::Target) -> Self {
        Self(pb::RotateRequest {
            target: Some(target),
            ..Default::default()
        })
    }

    /// By token: its payload is carried over.
    pub fn token(token: impl Into<Token>) -> Self {
        Self::target(pb::rotate_request::Target::Token(
            token.into().into_plaintext(),
        ))
    }

    /// By grant id (not for a grant with a payload).
    pub fn grant(grant_id: impl Into<String>) -> Self {
        Self::target(pb::rotate_request::Target::GrantId(grant_id.into()))
    }

    /// How long the old token stays valid (default: not at all).
    pub fn overlap(mut self, overlap: Duration) -> Self {
        self.0.overlap = Some(duration(overlap));
        self
    }

    /// The successor's lifetime (default: the original's length).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.0.ttl = Some(duration(ttl));
        self
    }
}

/// A rotation's result.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub token: Token,
    pub grant: Grant,
    /// The grant replaced, as it is now.
    pub previous: Grant,
}

/// A Delegate: a token for a sub-agent that can do no more than its parent.
#[derive(Debug, Clone)]
pub struct Delegate(pub(crate) pb::DelegateRequest);

impl Delegate {
    pub fn new(parent: impl Into<Token>) -> Self {
        Self(pb::DelegateRequest {
            parent_token: parent.into().into_plaintext(),
            ..Default::default()
        })
    }

    /// Each granted by the parent's scopes; none = the parent's.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.0.scopes = strings(scopes);
        self
    }

    /// Within the parent's audience; none = the parent's.
    pub fn audience<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audience: I) -> Self {
        self.0.audience = strings(audience);
        self
    }

    /// At most the parent's remaining lifetime (default: all of it).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.0.ttl = Some(duration(ttl));
        self
    }

    /// At most the parent's remaining uses; 0 = that many.
    pub fn max_uses(mut self, max_uses: u32) -> Self {
        self.0.max_uses = max_uses;
        self
    }

    /// Added to the parent's labels.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.labels.insert(key.into(), value.into());
        self
    }

    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.0.payload = payload.into();
        self
    }
}
