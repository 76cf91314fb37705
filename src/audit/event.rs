//! The events of the audit trail, as types: what each one carries is fixed
//! here, and how it is written is fixed once, in [`super::write`].
//!
//! Events borrow what they name and hold nothing secret: a token appears
//! only as its [`TokenMac`], never a client key, a payload or a
//! credential's secret. They implement no `Debug` all the same, so that a
//! field added later cannot reach a log by way of `{:?}`.

use std::time::Duration;

use super::TokenMac;
use crate::{
    clients::Role,
    grant::{Grant, RevokeReason},
    rules::{Denial, Hidden},
    store::{RevokeTarget, StoreError, credentials::Slot},
};

/// One entry of the audit trail; [`Event::write`] logs it.
pub enum Event<'a> {
    /// A grant minted.
    Mint {
        client: &'a str,
        grant: &'a Grant,
        token_mac: &'a TokenMac,
        /// As asked (or defaulted), before the database's clock applied it.
        ttl: Duration,
    },
    /// A use taken, or a keyed claim's earlier use handed back.
    Claim {
        outcome: ClaimOutcome,
        client: &'a str,
        /// The grant after the use.
        grant: &'a Grant,
        token_mac: &'a TokenMac,
    },
    /// A token that did not pass, with the real reason behind the answer.
    Refused {
        operation: Operation,
        client: &'a str,
        /// `None` when no grant was found (or the token was malformed).
        grant_id: Option<&'a str>,
        /// `None` for a malformed token.
        token_mac: Option<&'a TokenMac>,
        denial: Denial,
        why: Option<Hidden>,
    },
    /// A used-up or revoked token presented again by a client it was made for.
    Replay {
        client: &'a str,
        grant_id: &'a str,
        run_id: &'a str,
        token_mac: &'a TokenMac,
        /// The grant's replays so far; `None` if it is gone or was not counted.
        replays: Option<u64>,
        /// Why it was not counted.
        error: Option<Uncounted<'a>>,
    },
    /// Grants revoked, and with them their descendants.
    Revoke {
        /// The client that asked, or the issuer of a replayed grant.
        client: &'a str,
        cause: RevokeCause,
        /// Written as its kind and id; a token is written as its kind only.
        target: &'a RevokeTarget,
        reason: RevokeReason,
        revoked: u64,
        descendants: usize,
    },
    /// A grant replaced by a successor.
    Rotate {
        client: &'a str,
        successor_id: &'a str,
        rotated_from: &'a str,
        /// The successor's token.
        token_mac: &'a TokenMac,
        overlap: Duration,
        descendants: usize,
    },
    /// A grant delegated from a live parent.
    Delegate {
        client: &'a str,
        grant: &'a Grant,
        parent_grant_id: &'a str,
        token_mac: &'a TokenMac,
    },
    /// A call refused: its credentials name no client.
    Authenticate {
        interface: &'static str,
        method: &'static str,
        reason: AuthFailure,
    },
    /// A call refused: its client lacks the role the method needs.
    Authorize {
        interface: &'static str,
        client: &'a str,
        method: &'static str,
        role: Role,
    },
    /// A credential stored (created or replaced).
    CredentialPut {
        slot: &'a Slot,
        version: u64,
    },
    /// A refresh lease granted on a credential.
    CredentialLease {
        slot: &'a Slot,
        version: u64,
        fence: u64,
    },
    /// A credential replaced under a refresh lease.
    CredentialRefreshed {
        slot: &'a Slot,
        version: u64,
    },
    CredentialDeleted {
        slot: &'a Slot,
    },
}

/// How a claim that succeeded got its use.
/// Why a replay is not in its grant's count.
#[derive(Debug, Clone, Copy)]
pub enum Uncounted<'a> {
    /// The statement failed.
    Failed(&'a StoreError),
    /// So many replays wait to be counted that this one was not queued:
    /// a client replaying tokens in a loop does not take the pool.
    Backlog,
}

impl std::fmt::Display for Uncounted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(err) => err.fmt(f),
            Self::Backlog => f.write_str("too many replays waiting to be counted"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This call took a use.
    Claimed,
    /// The claim key already made this claim, whose outcome came back.
    Retried,
}

impl ClaimOutcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Retried => "retried",
        }
    }
}

/// The operation a refused token was presented to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Validate,
    Claim,
    Delegate,
}

impl Operation {
    /// Its name as the event (and the metrics) spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::Claim => "claim",
            Self::Delegate => "delegate",
        }
    }
}

/// What set off a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeCause {
    /// A Revoke call.
    Request,
    /// A replay of a grant minted with `revoke_run_on_replay`.
    Replay,
}

impl RevokeCause {
    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Replay => "replay",
        }
    }
}

/// Why a call's credentials named no client. Never the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Credentials that could not be read, as their reader (the gRPC gate
    /// or the HTTP face) describes them: the server's text, never the
    /// caller's.
    Unreadable(&'static str),
    /// No key, or one no client has.
    UnknownKey,
    /// A key of one client presented with another's id.
    ClientMismatch,
}

impl AuthFailure {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreadable(why) => why,
            Self::UnknownKey => "missing or unknown client key",
            Self::ClientMismatch => "client id does not match the key",
        }
    }
}
