//! Wire messages to domain input (checking every field's limits) and domain
//! results back to wire messages.

use std::time::Duration;

use crate::{
    authority::{
        Check, Claimed, DelegateSpec, Denial, MintSpec, Page, RotateTarget, Target, Validated,
    },
    grant::{CredentialRef, Grant, Micros, RevokeReason},
    input::{self, InvalidInput},
    pb,
    store::Revision,
    token::Token,
};

pub fn mint_spec(req: pb::MintRequest) -> input::Result<MintSpec> {
    Ok(MintSpec {
        subject: input::required_id("subject", req.subject)?,
        audience: input::audience("audience", req.audience)?,
        run_id: input::optional_id("run_id", req.run_id)?.unwrap_or_default(),
        scopes: input::scopes("scopes", req.scopes)?,
        labels: input::labels("labels", req.labels)?,
        ttl: req.ttl.map(ttl).transpose()?,
        max_uses: req.max_uses,
        payload: input::payload("payload", req.payload)?,
        revoke_run_on_replay: req.revoke_run_on_replay,
        payload_credential: req
            .payload_credential
            .map(|named| {
                Ok::<_, InvalidInput>(CredentialRef {
                    bearer_id: input::required_id("payload_credential.bearer_id", named.bearer_id)?,
                    name: input::required_id("payload_credential.name", named.name)?,
                })
            })
            .transpose()?,
    })
}

pub fn rotate_request(
    req: pb::RotateRequest,
) -> input::Result<(RotateTarget, Duration, Option<Duration>)> {
    use pb::rotate_request::Target as T;
    let target = match req.target {
        Some(T::Token(token)) => {
            input::token("token", &token)?;
            RotateTarget::Token(
                Token::parse(&token)
                    .map_err(|_| InvalidInput::new("token", "is not a Tessera token"))?,
            )
        }
        Some(T::GrantId(id)) => RotateTarget::GrantId(input::required_id("grant_id", id)?),
        None => return Err(InvalidInput::new("target", "set one of token or grant_id")),
    };
    let overlap = match req.overlap {
        None => Duration::ZERO,
        Some(overlap) => match (u64::try_from(overlap.seconds), u32::try_from(overlap.nanos)) {
            (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => Duration::new(seconds, nanos),
            _ => return Err(InvalidInput::new("overlap", "must not be negative")),
        },
    };
    Ok((target, overlap, req.ttl.map(ttl).transpose()?))
}

pub fn delegate_spec(req: pb::DelegateRequest) -> input::Result<DelegateSpec> {
    input::token("parent_token", &req.parent_token)?;
    Ok(DelegateSpec {
        parent_token: req.parent_token,
        scopes: input::scopes("scopes", req.scopes)?,
        audience: input::audience("audience", req.audience)?,
        ttl: req.ttl.map(ttl).transpose()?,
        max_uses: req.max_uses,
        labels: input::labels("labels", req.labels)?,
        payload: input::payload("payload", req.payload)?,
    })
}

/// A protobuf Duration of at least a millisecond (the store keeps
/// microseconds; shorter would be born expired). The upper bound is the
/// authority's policy.
fn ttl(ttl: prost_types::Duration) -> input::Result<Duration> {
    match (u64::try_from(ttl.seconds), u32::try_from(ttl.nanos)) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => {
            let ttl = Duration::new(seconds, nanos);
            if ttl >= Duration::from_millis(1) {
                Ok(ttl)
            } else {
                Err(InvalidInput::new("ttl", "must be at least 1ms"))
            }
        }
        _ => Err(InvalidInput::new("ttl", "must be a positive duration")),
    }
}

pub fn validate_check(req: pb::ValidateRequest) -> input::Result<Check> {
    let bounded = match pb::Consistency::try_from(req.consistency) {
        Ok(pb::Consistency::Full) => false,
        Ok(pb::Consistency::Bounded) => true,
        Err(_) => {
            return Err(InvalidInput::new("consistency", "must be FULL or BOUNDED"));
        }
    };
    let at_least = match req.at_least_as_fresh.as_str() {
        "" => None,
        revision => Some(
            revision
                .parse()
                .map_err(|why| InvalidInput::new("at_least_as_fresh", why))?,
        ),
    };
    Ok(Check {
        at_least,
        ..Check::new(req.token, req.required_scopes, req.subject, bounded)?
    })
}

/// A revision on the wire: empty when there is none.
pub fn revision(revision: Option<Revision>) -> String {
    revision
        .map(|revision| revision.to_string())
        .unwrap_or_default()
}

/// Claim always asks the database: its compare-and-set is the point.
pub fn claim_check(req: pb::ClaimRequest) -> input::Result<Check> {
    let claim_key = input::claim_key("claim_key", req.claim_key)?;
    Ok(Check {
        claim_key,
        ..Check::new(req.token, req.required_scopes, req.subject, false)?
    })
}

pub fn revoke_target(req: pb::RevokeRequest) -> input::Result<(Target, RevokeReason)> {
    use pb::revoke_request::Target as T;
    let reason = match pb::RevokeReason::try_from(req.reason) {
        Ok(pb::RevokeReason::Unspecified) | Err(_) => {
            return Err(InvalidInput::new(
                "reason",
                "must be one of MANUAL, RUN_ENDED, SUBJECT_DISABLED, COMPROMISED, ROTATED",
            ));
        }
        Ok(reason) => RevokeReason::from_code(i64::from(reason as i32))
            .ok_or_else(|| InvalidInput::new("reason", "is not a known reason"))?,
    };
    let target = match req.target {
        Some(T::Token(token)) => {
            input::token("token", &token)?;
            Target::Token(
                Token::parse(&token)
                    .map_err(|_| InvalidInput::new("token", "is not a Tessera token"))?,
            )
        }
        Some(T::GrantId(id)) => Target::GrantId(input::required_id("grant_id", id)?),
        Some(T::RunId(id)) => Target::RunId(input::required_id("run_id", id)?),
        Some(T::Subject(id)) => Target::Subject(input::required_id("subject", id)?),
        None => {
            return Err(InvalidInput::new(
                "target",
                "set one of token, grant_id, run_id or subject",
            ));
        }
    };
    Ok((target, reason))
}

pub(crate) fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

impl From<Grant> for pb::Grant {
    fn from(g: Grant) -> Self {
        pb::Grant {
            grant_id: g.grant_id,
            token_hint: g.token_hint,
            subject: g.subject,
            audience: g.audience,
            run_id: g.run_id,
            scopes: g.scopes,
            labels: g.labels.into_iter().collect(),
            max_uses: g.max_uses,
            use_count: g.use_count,
            issued_by: g.issued_by,
            issued_at: Some(timestamp(g.issued_at)),
            expires_at: Some(timestamp(g.expires_at)),
            revoked_at: g.revoked_at.map(timestamp),
            revoke_reason: g.revoke_reason.map_or(0, |r| i32::from(r.code())),
            last_used_at: g.last_used_at.map(timestamp),
            revoke_run_on_replay: g.revoke_run_on_replay,
            parent_grant_id: g.parent_grant_id.unwrap_or_default(),
            depth: g.depth,
            rotated_from: g.rotated_from.unwrap_or_default(),
            rotated_to: g.rotated_to.unwrap_or_default(),
            payload_credential: g.payload_credential.map(|named| pb::CredentialRef {
                bearer_id: named.bearer_id,
                name: named.name,
            }),
        }
    }
}

impl From<Denial> for pb::Denial {
    fn from(denial: Denial) -> Self {
        match denial {
            Denial::Malformed => pb::Denial::TokenMalformed,
            Denial::Unknown => pb::Denial::TokenUnknown,
            Denial::Expired => pb::Denial::TokenExpired,
            Denial::ScopeMissing => pb::Denial::ScopeMissing,
        }
    }
}

impl From<Validated> for pb::ValidateResponse {
    fn from(outcome: Validated) -> Self {
        match outcome {
            Validated::Valid(grant) => pb::ValidateResponse {
                valid: true,
                denial: pb::Denial::Unspecified as i32,
                grant: Some(grant.into()),
            },
            Validated::Denied(denial) => pb::ValidateResponse {
                valid: false,
                denial: pb::Denial::from(denial) as i32,
                grant: None,
            },
        }
    }
}

impl From<Claimed> for pb::ClaimResponse {
    fn from(outcome: Claimed) -> Self {
        match outcome {
            Claimed::Claimed {
                grant,
                payload,
                credential,
            } => {
                let (credential, credential_version) = match credential {
                    Some((secret, version)) => (secret.into_parts().into_iter().collect(), version),
                    None => (Default::default(), 0),
                };
                pb::ClaimResponse {
                    claimed: true,
                    denial: pb::Denial::Unspecified as i32,
                    grant: Some(grant.into()),
                    payload,
                    credential,
                    credential_version,
                }
            }
            Claimed::Denied(denial) => pb::ClaimResponse {
                claimed: false,
                denial: pb::Denial::from(denial) as i32,
                ..Default::default()
            },
        }
    }
}

impl From<Page> for pb::ListGrantsResponse {
    fn from(page: Page) -> Self {
        pb::ListGrantsResponse {
            grants: page.grants.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            active_count: page.active_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_edges() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(ttl(d(60, 0)), Ok(Duration::from_secs(60)));
        assert_eq!(ttl(d(0, 1_000_000)), Ok(Duration::from_millis(1)));
        for bad in [
            d(0, 0),
            d(0, 999_999),
            d(-1, 0),
            d(0, -1),
            d(i64::MIN, 0),
            d(1, 1_000_000_000),
        ] {
            assert_eq!(ttl(bad).unwrap_err().field, "ttl");
        }
        // Huge but well-formed: left to the max-TTL policy.
        assert!(ttl(d(i64::MAX, 999_999_999)).is_ok());
    }

    #[test]
    fn timestamps_split_micros() {
        assert_eq!(
            timestamp(1_700_000_000_123_456),
            prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_000
            }
        );
        assert_eq!(
            timestamp(-1),
            prost_types::Timestamp {
                seconds: -1,
                nanos: 999_999_000
            }
        );
    }

    #[test]
    fn revoke_reasons_match_the_wire() {
        for reason in RevokeReason::ALL {
            let wire = pb::RevokeReason::try_from(i32::from(reason.code())).unwrap();
            assert_eq!(
                wire.as_str_name(),
                format!("REVOKE_REASON_{}", reason.name())
            );
            assert_eq!(RevokeReason::from_code(reason.code().into()), Some(reason));
        }
        assert_eq!(RevokeReason::from_code(0), None, "live");
    }
}
