//! A grant and the words every layer uses about it: why it was revoked,
//! the stored credential it hands over, and time as the database keeps it.
//! Plain data, owned by no layer: the rules ([`crate::rules`]) judge it,
//! the store ([`crate::store`]) keeps it, the adapters and the audit show it.

use std::{collections::BTreeMap, time::Duration};

/// Unix time in microseconds, as the database's clock gave it.
pub type Micros = i64;

/// A duration in microseconds, saturating (a `Duration` of centuries does
/// not wrap into the past).
pub fn micros(duration: Duration) -> Micros {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Why a grant was revoked. Stored as its number, which is also its number
/// on the wire (`tessera.v1.RevokeReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Manual = 1,
    RunEnded = 2,
    SubjectDisabled = 3,
    /// A replay of a grant minted with `revoke_run_on_replay`.
    Compromised = 4,
    Rotated = 5,
}

impl RevokeReason {
    pub const ALL: [Self; 5] = [
        Self::Manual,
        Self::RunEnded,
        Self::SubjectDisabled,
        Self::Compromised,
        Self::Rotated,
    ];

    pub fn code(self) -> i16 {
        self as i16
    }

    /// The reason stored as `code`; `None` for 0 (live) or a number this
    /// version does not know.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| i64::from(r.code()) == code)
    }

    /// Its name, as logs and the wire spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::RunEnded => "RUN_ENDED",
            Self::SubjectDisabled => "SUBJECT_DISABLED",
            Self::Compromised => "COMPROMISED",
            Self::Rotated => "ROTATED",
        }
    }
}

/// A grant as stored, without its token, hash or payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub token_hint: String,
    pub subject: String,
    pub audience: Vec<String>,
    pub run_id: String,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub max_uses: u32,
    pub use_count: u32,
    pub issued_by: String,
    pub issued_at: Micros,
    pub expires_at: Micros,
    pub revoked_at: Option<Micros>,
    /// `None` while live.
    pub revoke_reason: Option<RevokeReason>,
    pub last_used_at: Option<Micros>,
    pub revoke_run_on_replay: bool,
    /// The grant this one was delegated from, and how many delegations
    /// deep it is (0 for a minted grant).
    pub parent_grant_id: Option<String>,
    pub depth: u32,
    /// The grant this one replaced by rotation, and the one that replaced it.
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
    /// The issuer's stored credential a claim hands over.
    pub payload_credential: Option<CredentialRef>,
}

/// One of a client's stored credentials, by bearer and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialRef {
    pub bearer_id: String,
    pub name: String,
}

impl CredentialRef {
    /// From the two nullable columns that hold it.
    pub fn from_columns(bearer_id: Option<String>, name: Option<String>) -> Option<Self> {
        Some(Self {
            bearer_id: bearer_id?,
            name: name?,
        })
    }
}
