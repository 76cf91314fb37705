//! Who may use a grant: the rules, as one pure function.
//!
//! [`judge`] decides whether a presented token's grant passes a Validate or
//! a Claim, and if not, what the caller is told and what really happened.
//! It reads nothing and writes nothing, so the same rules hold on every
//! path (database, cache, keyed claim, HTTP) and can be tested alone.
//!
//! Precedence, first match wins:
//! 1. caller outside the grant's audience ([`in_audience`]), or a subject
//!    other than the grant's: UNKNOWN, exactly as for a token never minted;
//! 2. revoked, or no use left: UNKNOWN too (and, since 1 passed, a replay);
//! 3. expired: EXPIRED;
//! 4. a required scope not granted: SCOPE_MISSING.
//!
//! So only a caller the grant was made for ever learns more than UNKNOWN,
//! and a dead grant tells nobody which scopes it had.

use crate::grant::{Grant, Micros};

/// What a caller is told when a token does not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Malformed,
    Unknown,
    Expired,
    ScopeMissing,
}

impl Denial {
    /// Its name in the audit trail: the wire's `DENIAL_*` name without the
    /// prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "TOKEN_MALFORMED",
            Self::Unknown => "TOKEN_UNKNOWN",
            Self::Expired => "TOKEN_EXPIRED",
            Self::ScopeMissing => "SCOPE_MISSING",
        }
    }
}

/// The real reason behind an UNKNOWN, for the audit trail only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    NeverMinted,
    NotInAudience,
    OtherSubject,
    Revoked,
    UsedUp,
    /// Usable when read, not when claimed: another caller took the last use,
    /// or it was revoked or expired in between.
    LostRace,
}

impl Hidden {
    /// Its name in the audit trail (the `why` of a refusal).
    pub fn name(self) -> &'static str {
        match self {
            Self::NeverMinted => "NEVER_MINTED",
            Self::NotInAudience => "NOT_IN_AUDIENCE",
            Self::OtherSubject => "OTHER_SUBJECT",
            Self::Revoked => "REVOKED",
            Self::UsedUp => "USED_UP",
            Self::LostRace => "LOST_RACE",
        }
    }

    /// A dead grant presented by a caller it was made for: the token was
    /// spent or revoked, and someone holds it still. Presentations by
    /// outsiders are not replays: they could not have used it anyway, and
    /// must not be able to trip a run's revocation.
    pub fn is_replay(self) -> bool {
        matches!(self, Hidden::Revoked | Hidden::UsedUp)
    }
}

/// A refusal: what the caller is told, and for the log why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub denial: Denial,
    pub hidden: Option<Hidden>,
}

impl Refusal {
    pub fn plain(denial: Denial) -> Self {
        Self {
            denial,
            hidden: None,
        }
    }

    pub fn hidden(why: Hidden) -> Self {
        Self {
            denial: Denial::Unknown,
            hidden: Some(why),
        }
    }
}

/// Everything the rules read besides the grant.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The authenticated client.
    pub caller: &'a str,
    /// The resource URI the caller serves (canonical form), if it is a
    /// resource server that declared one.
    pub resource: Option<&'a str>,
    /// The principal the caller acts for; `None` = no subject binding.
    pub subject: Option<&'a str>,
    pub required_scopes: &'a [String],
    /// The database's clock, which expiry and revocation are judged by (a
    /// rotated grant's revocation takes effect at the end of its overlap,
    /// which may lie ahead).
    pub now: Micros,
    /// This caller already claimed this grant with this claim key: the
    /// retry gets that claim back, whatever the grant's state is now.
    pub retried: bool,
}

/// The verdict on `grant` for `presented`.
pub fn judge(grant: &Grant, presented: &Presented<'_>) -> Result<(), Refusal> {
    if !in_audience(&grant.audience, presented.caller, presented.resource) {
        return Err(Refusal::hidden(Hidden::NotInAudience));
    }
    if presented.subject.is_some_and(|s| s != grant.subject) {
        return Err(Refusal::hidden(Hidden::OtherSubject));
    }
    if !presented.retried {
        if grant.revoked_at.is_some_and(|at| at <= presented.now) {
            return Err(Refusal::hidden(Hidden::Revoked));
        }
        if grant.max_uses > 0 && grant.use_count >= grant.max_uses {
            return Err(Refusal::hidden(Hidden::UsedUp));
        }
        if grant.expires_at <= presented.now {
            return Err(Refusal::plain(Denial::Expired));
        }
    }
    if !presented
        .required_scopes
        .iter()
        .all(|scope| scope_granted(&grant.scopes, scope))
    {
        return Err(Refusal::plain(Denial::ScopeMissing));
    }
    Ok(())
}

/// Whether a grant with `audience` is for `caller`, which serves `resource`
/// if it declared one: an entry names it by client id or by resource URI
/// (both sides in canonical form, so a plain comparison suffices).
///
/// An empty audience means "any client", except a client that declares a
/// resource: a resource server must accept only tokens issued for it (RFC
/// 8707, and the MCP authorization spec's audience check), and a token for
/// anyone was not. Without this, each MCP server's verifier would have to
/// refuse such tokens itself, and one that forgot would accept tokens
/// minted for any other purpose.
pub fn in_audience(audience: &[String], caller: &str, resource: Option<&str>) -> bool {
    if audience.is_empty() {
        return resource.is_none();
    }
    audience
        .iter()
        .any(|entry| entry == caller || Some(entry.as_str()) == resource)
}

/// `connector:*` grants `connector:github`; anything else must match exactly.
pub fn scope_granted(granted: &[String], required: &str) -> bool {
    granted.iter().any(|scope| {
        scope == required
            || scope
                .strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with(':') && required.starts_with(prefix))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn grant() -> Grant {
        Grant {
            grant_id: "grt_x".into(),
            token_hint: "tsr_abcd".into(),
            subject: "alice".into(),
            audience: vec!["proxy".into()],
            run_id: "run".into(),
            scopes: vec!["tool:search".into(), "connector:*".into()],
            labels: Default::default(),
            max_uses: 1,
            use_count: 0,
            issued_by: "platform".into(),
            issued_at: 0,
            expires_at: 100,
            revoked_at: None,
            revoke_reason: None,
            last_used_at: None,
            revoke_run_on_replay: false,
            ..Grant::default()
        }
    }

    #[test]
    fn a_rotated_grant_serves_until_its_overlap_ends() {
        let rotated = Grant {
            revoked_at: Some(20),
            ..grant()
        };
        let scopes = [];
        assert_eq!(judge(&rotated, &by("proxy", &scopes)), Ok(()));
        let later = Presented {
            now: 20,
            ..by("proxy", &scopes)
        };
        assert_eq!(
            judge(&rotated, &later),
            Err(Refusal::hidden(Hidden::Revoked))
        );
    }

    fn by<'a>(caller: &'a str, scopes: &'a [String]) -> Presented<'a> {
        Presented {
            caller,
            resource: None,
            subject: None,
            required_scopes: scopes,
            now: 10,
            retried: false,
        }
    }

    #[test]
    fn precedence() {
        let admin = ["tool:admin".to_owned()];
        let live = grant();
        assert_eq!(judge(&live, &by("proxy", &[])), Ok(()));
        let outsider = judge(&live, &by("reader", &admin));
        assert_eq!(outsider, Err(Refusal::hidden(Hidden::NotInAudience)));
        let other = Presented {
            subject: Some("mallory"),
            ..by("proxy", &admin)
        };
        assert_eq!(
            judge(&live, &other),
            Err(Refusal::hidden(Hidden::OtherSubject))
        );
        assert_eq!(
            judge(&live, &by("proxy", &admin)),
            Err(Refusal::plain(Denial::ScopeMissing))
        );

        // A dead grant hides its scopes and its expiry.
        let used = Grant {
            use_count: 1,
            ..grant()
        };
        let expired = Presented {
            now: 100,
            ..by("proxy", &admin)
        };
        assert_eq!(judge(&used, &expired), Err(Refusal::hidden(Hidden::UsedUp)));
        let revoked = Grant {
            revoked_at: Some(5),
            ..grant()
        };
        assert_eq!(
            judge(&revoked, &expired),
            Err(Refusal::hidden(Hidden::Revoked))
        );
        assert_eq!(judge(&live, &expired), Err(Refusal::plain(Denial::Expired)));

        // A retry of a keyed claim skips the state, never the audience,
        // subject or scopes.
        let retry = Presented {
            retried: true,
            ..by("proxy", &[])
        };
        assert_eq!(judge(&used, &retry), Ok(()));
        let retry_outsider = Presented {
            retried: true,
            ..by("reader", &[])
        };
        assert!(judge(&used, &retry_outsider).is_err());
        let retry_admin = Presented {
            retried: true,
            ..by("proxy", &admin)
        };
        assert_eq!(
            judge(&used, &retry_admin),
            Err(Refusal::plain(Denial::ScopeMissing))
        );
        assert!(Hidden::UsedUp.is_replay() && Hidden::Revoked.is_replay());
        assert!(!Hidden::NotInAudience.is_replay() && !Hidden::OtherSubject.is_replay());
    }

    #[test]
    fn resource_servers_see_tokens_for_their_id_or_their_uri() {
        const MCP: &str = "https://mcp.example.com/mcp";
        let server = Presented {
            resource: Some(MCP),
            ..by("mcp-server", &[])
        };
        let for_uri = Grant {
            audience: vec![MCP.into()],
            ..grant()
        };
        let for_id = Grant {
            audience: vec!["mcp-server".into()],
            ..grant()
        };
        assert_eq!(judge(&for_uri, &server), Ok(()));
        assert_eq!(judge(&for_id, &server), Ok(()));
        // Another server's URI, or the same client id without the declared
        // resource, is outside.
        let elsewhere = Grant {
            audience: vec!["https://other.example.com/mcp".into()],
            ..grant()
        };
        let outside = Err(Refusal::hidden(Hidden::NotInAudience));
        assert_eq!(judge(&elsewhere, &server), outside);
        assert_eq!(judge(&for_uri, &by("mcp-server", &[])), outside);
        // A token for anyone is not a token for a resource server.
        let for_anyone = Grant {
            audience: vec![],
            ..grant()
        };
        assert_eq!(judge(&for_anyone, &server), outside);
        assert_eq!(judge(&for_anyone, &by("mcp-server", &[])), Ok(()));
    }

    #[test]
    fn scope_matching() {
        let granted = vec!["connector:*".to_owned(), "tool:search".to_owned()];
        assert!(scope_granted(&granted, "connector:github"));
        assert!(scope_granted(&granted, "connector:github:read"));
        assert!(scope_granted(&granted, "tool:search"));
        assert!(!scope_granted(&granted, "tool:search:write"));
        assert!(!scope_granted(&granted, "tool:searchx"));
        assert!(!scope_granted(&granted, "connectorx:github"));
        assert!(!scope_granted(&granted, "connector"));
        assert!(!scope_granted(&["*".to_owned()], "tool:search"));
        assert!(scope_granted(&["a:b:*".to_owned()], "a:b:c"));
        assert!(!scope_granted(&["a:b:*".to_owned()], "a:c"));
    }

    proptest! {
        /// Whoever is outside the audience or names another subject learns
        /// only UNKNOWN, and never trips a replay, whatever the grant's
        /// state, expiry, scopes or retry.
        #[test]
        fn outsiders_learn_nothing(
            revoked in any::<bool>(),
            use_count in 0u32..3,
            expired in any::<bool>(),
            retried in any::<bool>(),
            outsider in any::<bool>(),
            scope in "[a-z]{1,5}(:[a-z*]{1,3})?",
        ) {
            let g = Grant { revoked_at: revoked.then_some(1), use_count, ..grant() };
            let scopes = [scope];
            let p = Presented {
                caller: if outsider { "reader" } else { "proxy" },
                resource: None,
                subject: (!outsider).then_some("mallory"),
                required_scopes: &scopes,
                now: if expired { 100 } else { 10 },
                retried,
            };
            let refusal = judge(&g, &p).unwrap_err();
            prop_assert_eq!(refusal.denial, Denial::Unknown);
            prop_assert!(!refusal.hidden.unwrap().is_replay());
        }

        /// A grant the caller may see passes exactly when it is live (or
        /// retried), unexpired and grants every required scope.
        #[test]
        fn insiders_pass_exactly_when_usable(
            revoked in any::<bool>(),
            use_count in 0u32..3,
            expired in any::<bool>(),
            retried in any::<bool>(),
            scope in "(tool|connector)(:[a-z]{1,3})?",
        ) {
            let g = Grant { revoked_at: revoked.then_some(1), use_count, ..grant() };
            let scopes = [scope.clone()];
            let now = if expired { 100 } else { 10 };
            let p = Presented { now, retried, ..by("proxy", &scopes) };
            let usable = retried || (!revoked && use_count < 1 && !expired);
            let granted = scope_granted(&g.scopes, &scope);
            prop_assert_eq!(judge(&g, &p).is_ok(), usable && granted);
        }
    }
}
