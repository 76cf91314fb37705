//! The one place an audit event becomes a log line: its target, level,
//! message and field names are written here and nowhere else, so every
//! event of a kind has the same shape, and a reader of the logs (or of
//! tests/api/logs.rs) can find that shape in one match.
//!
//! Strings, however recorded (`%` or a `&str`), are written as strings:
//! a JSON string, or a quoted and escaped value in text lines (see
//! [`crate::telemetry::text`]), so caller text in a subject, a label or a
//! bearer id can never add a field or a line.

use super::{Event, labels};
use crate::store::RevokeTarget;

/// One event on the audit target: `event = $name` first, then the fields,
/// then the message.
macro_rules! emit {
    ($level:ident, $name:expr, { $($fields:tt)* }, $message:tt) => {
        tracing::$level!(target: super::TARGET, event = $name, $($fields)* $message)
    };
}

impl Event<'_> {
    /// Logs the event on [`super::TARGET`]: at INFO, a replay at WARN.
    pub fn write(&self) {
        match *self {
            Event::Mint {
                client,
                grant,
                token_mac,
                ttl,
            } => emit!(info, "mint", {
                token_mac = %token_mac,
                client = %client,
                grant_id = %grant.grant_id,
                run_id = grant.run_id.as_str(),
                subject = grant.subject.as_str(),
                labels = labels(&grant.labels).as_str(),
                max_uses = grant.max_uses,
                ttl_ms = millis(ttl),
            }, "minted"),
            Event::Claim {
                outcome,
                client,
                grant,
                token_mac,
            } => emit!(info, "claim", {
                outcome = outcome.name(),
                token_mac = %token_mac,
                client = %client,
                grant_id = %grant.grant_id,
                run_id = grant.run_id.as_str(),
                subject = grant.subject.as_str(),
                labels = labels(&grant.labels).as_str(),
                use_count = grant.use_count,
                max_uses = grant.max_uses,
            }, "claimed"),
            Event::Refused {
                operation,
                client,
                grant_id,
                token_mac,
                denial,
                why,
            } => emit!(info, operation.name(), {
                outcome = "refused",
                client = %client,
                grant_id = grant_id.unwrap_or_default(),
                token_mac = token_mac.map_or("", |mac| mac.as_str()),
                denial = denial.name(),
                why = why.map(|why| why.name()),
            }, "token refused"),
            Event::Replay {
                client,
                grant_id,
                run_id,
                token_mac,
                replays,
                error,
            } => emit!(warn, "replay", {
                client,
                grant_id,
                token_mac = token_mac.as_str(),
                run_id,
                replays,
                error = error.as_ref().map(tracing::field::display),
            }, "a consumed or revoked token was presented again"),
            Event::Revoke {
                client,
                cause,
                target,
                reason,
                revoked,
                descendants,
            } => {
                let (target_kind, target_id) = described(target);
                emit!(info, "revoke", {
                    client,
                    cause = cause.name(),
                    target_kind,
                    target_id,
                    reason = reason.name(),
                    revoked,
                    descendants,
                }, "revoked")
            }
            Event::Rotate {
                client,
                successor_id,
                rotated_from,
                token_mac,
                overlap,
                descendants,
            } => emit!(info, "rotate", {
                client = %client,
                grant_id = %successor_id,
                rotated_from = %rotated_from,
                token_mac = %token_mac,
                overlap_ms = millis(overlap),
                descendants,
            }, "rotated"),
            Event::Delegate {
                client,
                grant,
                parent_grant_id,
                token_mac,
            } => emit!(info, "delegate", {
                client = %client,
                grant_id = %grant.grant_id,
                parent_grant_id = %parent_grant_id,
                depth = grant.depth,
                token_mac = %token_mac,
                max_uses = grant.max_uses,
            }, "delegated"),
            Event::Authenticate {
                interface,
                method,
                reason,
            } => emit!(info, "authenticate", {
                outcome = "refused",
                interface,
                method,
                reason = reason.name(),
            }, "authentication failed"),
            Event::Authorize {
                interface,
                client,
                method,
                role,
            } => emit!(info, "authorize", {
                outcome = "refused",
                interface,
                client = %client,
                method,
                role = role.name(),
            }, "permission denied"),
            Event::CredentialPut { slot, version } => emit!(info, "credential_put", {
                client = %slot.client_id,
                bearer_id = %slot.bearer_id,
                name = %slot.name,
                version,
            }, "credential stored"),
            Event::CredentialLease {
                slot,
                version,
                fence,
            } => emit!(info, "credential_lease", {
                client = %slot.client_id,
                bearer_id = %slot.bearer_id,
                name = %slot.name,
                version,
                fence,
            }, "refresh lease granted"),
            Event::CredentialRefreshed { slot, version } => {
                emit!(info, "credential_refreshed", {
                    client = %slot.client_id,
                    bearer_id = %slot.bearer_id,
                    name = %slot.name,
                    version,
                }, "credential refreshed")
            }
            Event::CredentialDeleted { slot } => emit!(info, "credential_deleted", {
                client = %slot.client_id,
                bearer_id = %slot.bearer_id,
                name = %slot.name,
            }, "credential deleted"),
        }
    }
}

/// A duration in whole milliseconds.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A revoke target for the log: its kind (`token`, `grant_id`, `run_id`
/// or `subject`) and the id it names, never for a token.
fn described(target: &RevokeTarget) -> (&'static str, Option<&str>) {
    match target {
        RevokeTarget::Token(_) => ("token", None),
        RevokeTarget::GrantId(id) => ("grant_id", Some(id)),
        RevokeTarget::RunId(id) => ("run_id", Some(id)),
        RevokeTarget::Subject(id) => ("subject", Some(id)),
    }
}
