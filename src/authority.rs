//! The domain rules: who may mint, validate, claim and revoke what.
//!
//! The gRPC layer authenticates the caller and shapes the input; the store
//! persists rows. Everything in between — denials and their precedence, the
//! audience, subject and issuer rules, scope matching, TTL policy — lives
//! here, once.
//!
//! Denial precedence for Validate and Claim: a token that is not one of ours
//! is MALFORMED (no database access). Then every reason a grant must not be
//! disclosed — never minted, revoked, used up, bound to another subject,
//! caller outside its audience — is the same UNKNOWN, with nothing else in
//! the response, so a caller cannot tell "exists but not yours" from "does
//! not exist". Only a grant that would otherwise match can be EXPIRED, and
//! only a live one can be SCOPE_MISSING.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::{
    audit::{self, Audit},
    cache::GrantCache,
    clients::Caller,
    input::{self, InvalidInput},
    seal::{self, Unsealable},
    store::{Grant, Keyed, ListQuery, Lookup, NewGrant, RevokeTarget, Store, StoreError},
    token::{GrantId, Token, TokenHash},
};

/// TTL policy, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
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
    /// Claim's idempotency key, if any.
    pub claim_key: Option<String>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("token", &"<redacted>")
            .field("required_scopes", &self.required_scopes)
            .field("subject", &self.subject)
            .field("bounded", &self.bounded)
            .field("claim_key", &self.claim_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// What a caller is told when a token does not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Malformed,
    Unknown,
    Expired,
    ScopeMissing,
}

/// The real reason behind an UNKNOWN, for the server's log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    NeverMinted,
    Revoked,
    UsedUp,
    OtherSubject,
    NotInAudience,
    /// Usable when read, not when claimed: another caller took the last use,
    /// or it was revoked or expired in between.
    LostRace,
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
    Claimed { grant: Grant, payload: Vec<u8> },
    Denied(Denial),
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claimed::Claimed { grant, payload } => f
                .debug_struct("Claimed")
                .field("grant", grant)
                .field("payload", &format_args!("<{} bytes>", payload.len()))
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unsealable(#[from] Unsealable),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `connector:*` grants `connector:github`; anything else must match exactly.
pub fn scope_granted(granted: &[String], required: &str) -> bool {
    granted.iter().any(|scope| {
        scope == required
            || scope
                .strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with(':') && required.starts_with(prefix))
    })
}

pub struct Authority<S> {
    store: S,
    policy: Policy,
    audit: Audit,
    /// For BOUNDED Validate; `None` when disabled.
    cache: Option<Arc<GrantCache>>,
}

impl<S: Store> Authority<S> {
    pub fn new(store: S, policy: Policy, cache: Option<Arc<GrantCache>>, audit: Audit) -> Self {
        Self {
            store,
            policy,
            audit,
            cache,
        }
    }

    pub async fn mint(&self, caller: &Caller, spec: MintSpec) -> Result<(Token, Grant)> {
        let ttl = match spec.ttl {
            None => self.policy.default_ttl,
            Some(ttl) if ttl > self.policy.max_ttl => {
                return Err(InvalidInput::new(
                    "ttl",
                    format!("must be at most {}s", self.policy.max_ttl.as_secs()),
                )
                .into());
            }
            Some(ttl) => ttl,
        };
        let token = Token::generate();
        let grant_id = GrantId::generate(unix_millis());
        let new = NewGrant {
            token_hash: token.hash(),
            token_hint: token.hint().to_owned(),
            sealed_payload: seal::seal(&token, &grant_id, &spec.payload),
            grant_id,
            subject: spec.subject,
            audience: spec.audience,
            run_id: spec.run_id,
            scopes: spec.scopes,
            labels: spec.labels,
            max_uses: spec.max_uses,
            issued_by: caller.id.clone(),
            ttl,
            revoke_run_on_replay: spec.revoke_run_on_replay,
        };
        let grant = self.store.insert(&new).await?;
        info!(
            target: audit::TARGET,
            event = "mint",
            token_mac = %self.audit.token_mac(&token),
            client = %caller.id,
            grant_id = %grant.grant_id,
            run_id = ?grant.run_id,
            subject = ?grant.subject,
            labels = ?grant.labels,
            max_uses = grant.max_uses,
            ttl_ms = ttl.as_millis(),
            "minted"
        );
        Ok((token, grant))
    }

    /// Finds the grant and applies every rule except the use count's
    /// compare-and-set. Reads only.
    ///
    /// For a keyed claim the grant's state (revoked, used up, expired) is
    /// left to the keyed compare-and-set, which may instead replay the claim
    /// the key already made.
    async fn judge(
        &self,
        caller: &Caller,
        check: &Check,
    ) -> Result<std::result::Result<(Token, Lookup), Refusal>> {
        let keyed = check.claim_key.is_some();
        let Ok(token) = Token::parse(&check.token) else {
            return Ok(Err(Refusal::plain(Denial::Malformed, None)));
        };
        let Some(found) = self.find(&token.hash(), check.bounded).await? else {
            return Ok(Err(Refusal::hidden(Hidden::NeverMinted, None)));
        };
        let grant = &found.grant;
        let hidden = if grant.revoked_at.is_some() && !keyed {
            Some(Hidden::Revoked)
        } else if grant.max_uses > 0 && grant.use_count >= grant.max_uses && !keyed {
            Some(Hidden::UsedUp)
        } else if check.subject.as_ref().is_some_and(|s| *s != grant.subject) {
            Some(Hidden::OtherSubject)
        } else if !grant.audience.is_empty() && !grant.audience.contains(&caller.id) {
            Some(Hidden::NotInAudience)
        } else {
            None
        };
        if let Some(why) = hidden {
            return Ok(Err(Refusal::hidden(why, Some(grant))));
        }
        if found.expired && !keyed {
            return Ok(Err(Refusal::plain(Denial::Expired, Some(grant))));
        }
        if !check
            .required_scopes
            .iter()
            .all(|scope| scope_granted(&grant.scopes, scope))
        {
            return Ok(Err(Refusal::plain(Denial::ScopeMissing, Some(grant))));
        }
        Ok(Ok((token, found)))
    }

    /// The grant behind a token hash: from the cache when `bounded` allows
    /// and it has it, else from the database (filling the cache).
    async fn find(&self, hash: &TokenHash, bounded: bool) -> Result<Option<Lookup>> {
        let (true, Some(cache)) = (bounded, &self.cache) else {
            return Ok(self.store.find(hash).await?);
        };
        let ticket = match cache.get(hash) {
            Ok(hit) => return Ok(Some(hit)),
            Err(ticket) => ticket,
        };
        let found = self.store.find(hash).await?;
        if let Some(ticket) = ticket {
            cache.fill(*hash, found.as_ref(), ticket);
        }
        Ok(found)
    }

    pub async fn validate(&self, caller: &Caller, check: Check) -> Result<Validated> {
        let (token, found) = match self.judge(caller, &check).await? {
            Ok(ok) => ok,
            Err(refusal) => {
                let denial = self.refuse("validate", caller, &check, refusal).await;
                return Ok(Validated::Denied(denial));
            }
        };
        let mut grant = found.grant;
        let stale = grant
            .last_used_at
            .is_none_or(|at| found.now - at >= crate::store::micros(crate::store::TOUCH_INTERVAL));
        if stale {
            // Bookkeeping, not a rule: a failed write must not fail a valid check.
            match self.store.touch(&grant.grant_id, found.now).await {
                Ok(()) => {
                    grant.last_used_at = Some(found.now);
                    if let Some(cache) = &self.cache {
                        cache.touched(&token.hash(), found.now);
                    }
                }
                Err(err) => {
                    warn!(grant_id = %grant.grant_id, error = %err, "last_used_at not recorded")
                }
            }
        }
        debug!(client = %caller.id, grant_id = %grant.grant_id, "validated");
        Ok(Validated::Valid(grant))
    }

    pub async fn claim(&self, caller: &Caller, check: Check) -> Result<Claimed> {
        let (token, found) = match self.judge(caller, &check).await? {
            Ok(ok) => ok,
            Err(refusal) => {
                return Ok(Claimed::Denied(
                    self.refuse("claim", caller, &check, refusal).await,
                ));
            }
        };
        // `retried`: the key already made this claim, whose outcome comes back.
        let (grant, sealed, outcome) = match &check.claim_key {
            None => match self.store.consume(&found.grant.grant_id).await? {
                Some((grant, sealed)) => (grant, sealed, "claimed"),
                None => {
                    let refusal = Refusal::hidden(Hidden::LostRace, Some(&found.grant));
                    return Ok(Claimed::Denied(
                        self.refuse("claim", caller, &check, refusal).await,
                    ));
                }
            },
            Some(key) => {
                let key_hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
                let grant_id = &found.grant.grant_id;
                match self
                    .store
                    .consume_keyed(grant_id, &caller.id, &key_hash)
                    .await?
                {
                    Keyed::Consumed(grant, sealed) => (grant, sealed, "claimed"),
                    Keyed::Replayed(grant, sealed) => (grant, sealed, "retried"),
                    Keyed::Refused => {
                        // The state checks judge skipped, in their usual order.
                        let g = &found.grant;
                        let refusal = if g.revoked_at.is_some() {
                            Refusal::hidden(Hidden::Revoked, Some(g))
                        } else if g.max_uses > 0 && g.use_count >= g.max_uses {
                            Refusal::hidden(Hidden::UsedUp, Some(g))
                        } else if found.expired {
                            Refusal::plain(Denial::Expired, Some(g))
                        } else {
                            Refusal::hidden(Hidden::LostRace, Some(g))
                        };
                        return Ok(Claimed::Denied(
                            self.refuse("claim", caller, &check, refusal).await,
                        ));
                    }
                }
            }
        };
        // This replica's BOUNDED answers see the new use count at once;
        // others learn of the last use from the database's notification.
        if let (Some(cache), "claimed") = (&self.cache, outcome) {
            cache.invalidate(&token.hash());
        }
        // A row whose payload does not open was tampered with in the
        // database: the use is spent and the caller gets INTERNAL, never the
        // bytes.
        let payload = seal::open(&token, &grant.grant_id, &sealed)?;
        info!(
            target: audit::TARGET,
            event = "claim",
            outcome,
            token_mac = %self.audit.token_mac(&token),
            client = %caller.id,
            grant_id = %grant.grant_id,
            run_id = ?grant.run_id,
            subject = ?grant.subject,
            labels = ?grant.labels,
            use_count = grant.use_count,
            max_uses = grant.max_uses,
            "claimed"
        );
        Ok(Claimed::Claimed { grant, payload })
    }

    /// Records a refusal in the audit trail with its real reason, and
    /// returns what the caller may know. A consumed or revoked token
    /// presented again is a replay: a distinct event, counted, and for a
    /// grant minted with `revoke_run_on_replay` its whole run is revoked.
    async fn refuse(
        &self,
        op: &'static str,
        caller: &Caller,
        check: &Check,
        refusal: Refusal,
    ) -> Denial {
        let Refusal {
            denial,
            hidden,
            grant,
        } = refusal;
        let token_mac = Token::parse(&check.token)
            .ok()
            .map(|t| self.audit.token_mac(&t));
        let token_mac = token_mac.as_deref().unwrap_or("");
        let grant_id = grant.as_ref().map_or("", |g| g.grant_id.as_str());
        info!(
            target: audit::TARGET,
            event = op,
            outcome = "refused",
            client = %caller.id,
            grant_id,
            token_mac,
            ?denial,
            why = ?hidden,
            "token refused"
        );
        let replayed = matches!(hidden, Some(Hidden::Revoked | Hidden::UsedUp));
        if let (true, Some(grant)) = (replayed, &grant) {
            let replays = self.audit.replayed();
            warn!(
                target: audit::TARGET,
                event = "replay",
                client = %caller.id,
                grant_id,
                token_mac,
                run_id = ?grant.run_id,
                replays,
                "a consumed or revoked token was presented again"
            );
            if grant.revoke_run_on_replay && !grant.run_id.is_empty() {
                self.revoke_run_on_replay(grant).await;
            }
        }
        denial
    }

    /// The run of a replayed grant is presumed compromised: every live grant
    /// its issuer holds in that run is revoked.
    async fn revoke_run_on_replay(&self, grant: &Grant) {
        let run = RevokeTarget::RunId(grant.run_id.clone());
        let reason = 4; // REVOKE_REASON_COMPROMISED
        let revoked = self
            .revoke_where(
                &run,
                Some(&grant.issued_by),
                reason,
                &grant.issued_by,
                "replay",
            )
            .await;
        if let Err(err) = revoked {
            warn!(error = %err, run_id = ?grant.run_id, "revoking a replayed run failed");
        }
    }

    pub async fn revoke(&self, caller: &Caller, target: Target, reason: i32) -> Result<u64> {
        let scope = caller.issuer_scope();
        let target = match target {
            Target::Token(token) => RevokeTarget::Token(token.hash()),
            Target::GrantId(id) => RevokeTarget::GrantId(grant_id(id, "grant_id")?),
            Target::RunId(id) => RevokeTarget::RunId(id),
            Target::Subject(id) => RevokeTarget::Subject(id),
        };
        let revoked = self
            .revoke_where(&target, scope, reason, &caller.id, "request")
            .await?;
        if let RevokeTarget::GrantId(id) = &target {
            // Unknown and foreign ids are NOT_FOUND; already inactive is 0.
            if revoked == 0 && self.store.get(id, scope).await?.is_none() {
                return Err(Error::NotFound);
            }
        }
        Ok(revoked)
    }

    /// Revokes, forgets the revoked grants in this replica's cache, and
    /// records it in the audit trail (`cause`: a request, or a replay).
    async fn revoke_where(
        &self,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: i32,
        client: &str,
        cause: &'static str,
    ) -> Result<u64> {
        let revoked = self.store.revoke(target, issued_by, reason).await?;
        if let Some(cache) = &self.cache {
            match target {
                RevokeTarget::Token(hash) => cache.invalidate(hash),
                RevokeTarget::GrantId(id) => cache.invalidate_matching(|g| g.grant_id == *id),
                RevokeTarget::RunId(id) => cache.invalidate_matching(|g| g.run_id == *id),
                RevokeTarget::Subject(id) => cache.invalidate_matching(|g| g.subject == *id),
            }
        }
        info!(
            target: audit::TARGET,
            event = "revoke",
            client,
            cause,
            target = ?Described(target),
            reason,
            revoked,
            "revoked"
        );
        Ok(revoked)
    }

    pub async fn get(&self, caller: &Caller, grant_id: String) -> Result<Grant> {
        let id = self::grant_id(grant_id, "grant_id")?;
        self.store
            .get(&id, caller.issuer_scope())
            .await?
            .ok_or(Error::NotFound)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        subject: Option<String>,
        run_id: Option<String>,
        include_inactive: bool,
        page_size: u32,
        page_token: Option<String>,
    ) -> Result<Page> {
        let limit = match page_size {
            0 => input::DEFAULT_PAGE,
            n if n > input::MAX_PAGE => {
                return Err(InvalidInput::new(
                    "page_size",
                    format!("must be at most {}", input::MAX_PAGE),
                )
                .into());
            }
            n => n,
        };
        let after = page_token.map(|t| grant_id(t, "page_token")).transpose()?;
        let mut page = self
            .store
            .list(&ListQuery {
                subject,
                run_id,
                issued_by: caller.issuer_scope().map(str::to_owned),
                include_inactive,
                after,
                limit: limit + 1,
            })
            .await?;
        let next_page_token = if page.grants.len() > limit as usize {
            page.grants.truncate(limit as usize);
            page.grants.last().map(|g| g.grant_id.clone())
        } else {
            None
        };
        Ok(Page {
            grants: page.grants,
            next_page_token,
            active_count: page.active_count,
        })
    }
}

/// A failed check: what the caller is told, and for the log what really
/// happened and to which grant.
struct Refusal {
    denial: Denial,
    hidden: Option<Hidden>,
    grant: Option<Grant>,
}

impl Refusal {
    fn plain(denial: Denial, grant: Option<&Grant>) -> Self {
        Self {
            denial,
            hidden: None,
            grant: grant.cloned(),
        }
    }

    fn hidden(why: Hidden, grant: Option<&Grant>) -> Self {
        Self {
            hidden: Some(why),
            ..Self::plain(Denial::Unknown, grant)
        }
    }
}

fn grant_id(id: String, field: &str) -> std::result::Result<String, InvalidInput> {
    if GrantId::is_well_formed(&id) {
        Ok(id)
    } else {
        Err(InvalidInput::new(field, "is not a grant id"))
    }
}

/// A revoke target for the log: the token never, caller text quoted.
struct Described<'a>(&'a RevokeTarget);

impl std::fmt::Debug for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            RevokeTarget::Token(_) => f.write_str("token"),
            RevokeTarget::GrantId(id) => write!(f, "grant_id={id:?}"),
            RevokeTarget::RunId(id) => write!(f, "run_id={id:?}"),
            RevokeTarget::Subject(id) => write!(f, "subject={id:?}"),
        }
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::scope_granted;

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
        // A bare `*` is a literal scope, not "everything".
        assert!(!scope_granted(&["*".to_owned()], "tool:search"));
        assert!(scope_granted(&["a:b:*".to_owned()], "a:b:c"));
        assert!(!scope_granted(&["a:b:*".to_owned()], "a:c"));
    }
}
