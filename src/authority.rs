//! The domain operations: mint, validate, claim and revoke.
//!
//! The gRPC layer authenticates the caller and shapes the input; the store
//! persists rows; [`crate::rules`] decides whether a grant passes. Here they
//! meet: the TTL policy and the issuer rule, finding a grant (in the cache
//! or the database), consuming a use, and the audit trail with its replay
//! tripwire.
//!
//! A token that is not one of ours is MALFORMED without a database access.
//! Every other refusal takes the same path whatever its hidden reason: one
//! lookup (the same statement for a token never minted as for a dead or
//! foreign grant), the same pure rules, one audit line, and the same reply.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

pub use crate::rules::Denial;
use crate::{
    audit::{self, Audit},
    cache::GrantCache,
    clients::Caller,
    input::{self, InvalidInput},
    rules::{self, Hidden, Presented, Refusal},
    seal::{self, Unsealable},
    store::{Grant, Keyed, ListQuery, Lookup, NewGrant, Prior, RevokeTarget, Store, StoreError},
    token::{GrantId, Token, TokenHash},
    usage::Usage,
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

pub struct Authority<S> {
    store: S,
    policy: Policy,
    audit: Audit,
    /// For BOUNDED Validate; `None` when disabled.
    cache: Option<Arc<GrantCache>>,
    /// Validate's uses, until [`Self::record_usage`] writes them.
    usage: Usage,
}

impl<S: Store> Authority<S> {
    pub fn new(store: S, policy: Policy, cache: Option<Arc<GrantCache>>, audit: Audit) -> Self {
        Self {
            store,
            policy,
            audit,
            cache,
            usage: Usage::default(),
        }
    }

    /// Writes the uses Validate noted since the last call, in one
    /// statement; a batch that fails is kept for the next call. Returns
    /// how many grants the batch held.
    pub async fn record_usage(&self) -> Result<usize> {
        let batch = self.usage.take();
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.touch(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(err) => {
                self.usage.restore(batch);
                Err(err.into())
            }
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

    /// Finds the token's grant and applies the rules to it. Reads only:
    /// one statement, or none for a malformed token or a cached answer. A
    /// keyed claim learns in the same statement whether this caller already
    /// made it.
    async fn examine(&self, caller: &Caller, check: &Check) -> Result<Examined> {
        let Ok(token) = Token::parse(&check.token) else {
            return Ok(Examined::Refused(Refused {
                refusal: Refusal::plain(Denial::Malformed),
                token: None,
                grant: None,
            }));
        };
        let hash = token.hash();
        let key = check
            .claim_key
            .as_ref()
            .map(|key| <[u8; 32]>::from(Sha256::digest(key.as_bytes())));
        let found = match &key {
            Some(key) => self.store.find_keyed(&hash, &caller.id, key).await?,
            None => self.find(&hash, check.bounded).await?.map(|l| (l, None)),
        };
        let Some((lookup, prior)) = found else {
            return Ok(Examined::Refused(Refused {
                refusal: Refusal::hidden(Hidden::NeverMinted),
                token: Some(token),
                grant: None,
            }));
        };
        let presented = Presented {
            caller: &caller.id,
            subject: check.subject.as_deref(),
            required_scopes: &check.required_scopes,
            expired: lookup.expired,
            retried: prior.is_some(),
        };
        Ok(match rules::judge(&lookup.grant, &presented) {
            Ok(()) => Examined::Passed(Found {
                token,
                hash,
                key,
                lookup,
                prior,
            }),
            Err(refusal) => Examined::Refused(Refused {
                refusal,
                token: Some(token),
                grant: Some(lookup.grant),
            }),
        })
    }

    /// The grant behind a token hash: from the cache when `bounded` allows
    /// and it has the answer (a grant, or that there is none), else from
    /// the database (filling the cache).
    async fn find(&self, hash: &TokenHash, bounded: bool) -> Result<Option<Lookup>> {
        let (true, Some(cache)) = (bounded, &self.cache) else {
            return Ok(self.store.find(hash).await?);
        };
        let ticket = match cache.get(hash) {
            Ok(answer) => return Ok(answer),
            Err(ticket) => ticket,
        };
        let found = self.store.find(hash).await;
        if let Some(ticket) = ticket {
            match &found {
                Ok(found) => cache.fill(*hash, found.as_ref(), ticket),
                Err(_) => cache.abandon(hash, ticket),
            }
        }
        Ok(found?)
    }

    pub async fn validate(&self, caller: &Caller, check: Check) -> Result<Validated> {
        let found = match self.examine(caller, &check).await? {
            Examined::Passed(found) => found,
            Examined::Refused(refused) => {
                return Ok(Validated::Denied(self.refuse("validate", caller, refused)));
            }
        };
        let Found { hash, lookup, .. } = found;
        let mut grant = lookup.grant;
        let stale = grant
            .last_used_at
            .is_none_or(|at| lookup.now - at >= crate::store::micros(crate::store::TOUCH_INTERVAL));
        if stale {
            // Bookkeeping, not a rule: written within a second, off the reply.
            self.usage.note(&grant.grant_id, lookup.now);
            grant.last_used_at = Some(lookup.now);
            if let Some(cache) = &self.cache {
                cache.touched(&hash, lookup.now);
            }
        }
        debug!(client = %caller.id, grant_id = %grant.grant_id, "validated");
        Ok(Validated::Valid(grant))
    }

    pub async fn claim(&self, caller: &Caller, check: Check) -> Result<Claimed> {
        let found = match self.examine(caller, &check).await? {
            Examined::Passed(found) => found,
            Examined::Refused(refused) => {
                return Ok(Claimed::Denied(self.refuse("claim", caller, refused)));
            }
        };
        let Found {
            token,
            hash,
            key,
            lookup,
            prior,
        } = found;
        // `retried`: the key already made this claim, whose outcome comes back.
        let taken = match (prior, key) {
            (
                Some(Prior {
                    use_count,
                    claimed_at,
                    sealed_payload,
                }),
                _,
            ) => {
                let mut grant = lookup.grant;
                grant.use_count = use_count;
                grant.last_used_at = Some(claimed_at);
                Ok((grant, sealed_payload, "retried"))
            }
            (None, None) => match self.store.consume(&lookup.grant.grant_id).await? {
                Some((grant, sealed)) => Ok((grant, sealed, "claimed")),
                None => Err(lookup.grant),
            },
            (None, Some(key)) => {
                let grant_id = &lookup.grant.grant_id;
                match self.store.consume_keyed(grant_id, &caller.id, &key).await? {
                    Keyed::Consumed(grant, sealed) => Ok((grant, sealed, "claimed")),
                    // A racing retry with the same key got there first.
                    Keyed::Replayed(grant, sealed) => Ok((grant, sealed, "retried")),
                    Keyed::Refused => Err(lookup.grant),
                }
            }
        };
        let (grant, sealed, outcome) = match taken {
            Ok(taken) => taken,
            Err(grant) => {
                let refused = Refused {
                    refusal: Refusal::hidden(Hidden::LostRace),
                    token: Some(token),
                    grant: Some(grant),
                };
                return Ok(Claimed::Denied(self.refuse("claim", caller, refused)));
            }
        };
        // This replica's BOUNDED answers see the new use count at once;
        // others learn of the last use from the database's notification.
        if let (Some(cache), "claimed") = (&self.cache, outcome) {
            cache.invalidate(&hash);
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
    /// returns what the caller may know. A revoked or used-up token
    /// presented by a caller the grant was made for is a replay: a distinct
    /// event, and for a grant minted with `revoke_run_on_replay` its whole
    /// run is revoked, off the reply path: the answer does not wait for it
    /// (nor show, by its timing, that it happened).
    fn refuse(&self, op: &'static str, caller: &Caller, refused: Refused) -> Denial {
        let Refused {
            refusal,
            token,
            grant,
        } = refused;
        let token_mac = token.as_ref().map(|t| self.audit.token_mac(t));
        let token_mac = token_mac.as_deref().unwrap_or("");
        let grant_id = grant.as_ref().map_or("", |g| g.grant_id.as_str());
        info!(
            target: audit::TARGET,
            event = op,
            outcome = "refused",
            client = %caller.id,
            grant_id,
            token_mac,
            denial = ?refusal.denial,
            why = ?refusal.hidden,
            "token refused"
        );
        let replayed = refusal.hidden.is_some_and(Hidden::is_replay);
        if let (true, Some(grant)) = (replayed, grant) {
            let replays = self.audit.replayed();
            warn!(
                target: audit::TARGET,
                event = "replay",
                client = %caller.id,
                grant_id = %grant.grant_id,
                token_mac,
                run_id = ?grant.run_id,
                replays,
                "a consumed or revoked token was presented again"
            );
            if grant.revoke_run_on_replay && !grant.run_id.is_empty() {
                self.revoke_run_on_replay(grant);
            }
        }
        refusal.denial
    }

    /// The run of a replayed grant is presumed compromised: every live grant
    /// its issuer holds in that run is revoked, by a task of its own.
    fn revoke_run_on_replay(&self, grant: Grant) {
        let (store, cache) = (self.store.clone(), self.cache.clone());
        tokio::spawn(async move {
            let run = RevokeTarget::RunId(grant.run_id);
            let reason = 4; // REVOKE_REASON_COMPROMISED
            let by = grant.issued_by.as_str();
            let why = (by, "replay");
            let revoked = revoke_where(&store, cache.as_deref(), &run, Some(by), reason, why);
            if let Err(err) = revoked.await {
                warn!(error = %err, grant_id = %grant.grant_id, "revoking a replayed run failed");
            }
        });
    }

    pub async fn revoke(&self, caller: &Caller, target: Target, reason: i32) -> Result<u64> {
        let scope = caller.issuer_scope();
        let target = match target {
            Target::Token(token) => RevokeTarget::Token(token.hash()),
            Target::GrantId(id) => RevokeTarget::GrantId(grant_id(id, "grant_id")?),
            Target::RunId(id) => RevokeTarget::RunId(id),
            Target::Subject(id) => RevokeTarget::Subject(id),
        };
        let cache = self.cache.as_deref();
        let why = (caller.id.as_str(), "request");
        let revoked = revoke_where(&self.store, cache, &target, scope, reason, why).await?;
        if let RevokeTarget::GrantId(id) = &target {
            // Unknown and foreign ids are NOT_FOUND; already inactive is 0.
            if revoked == 0 && self.store.get(id, scope).await?.is_none() {
                return Err(Error::NotFound);
            }
        }
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

/// What [`Authority::examine`] found.
// One per call, moved along, never stored: boxing would add an allocation.
#[allow(clippy::large_enum_variant)]
enum Examined {
    Passed(Found),
    Refused(Refused),
}

/// A grant that passed the rules.
struct Found {
    token: Token,
    hash: TokenHash,
    /// The SHA-256 of the claim key, for a keyed claim.
    key: Option<[u8; 32]>,
    lookup: Lookup,
    /// The claim this caller already made with this key.
    prior: Option<Prior>,
}

/// A refusal, with what the audit trail needs: the token (for its MAC) and
/// the grant, moved here rather than copied.
struct Refused {
    refusal: Refusal,
    token: Option<Token>,
    grant: Option<Grant>,
}

/// Revokes, forgets the revoked grants in this replica's cache, and records
/// it in the audit trail (`cause`: a request, or a replay).
async fn revoke_where<S: Store>(
    store: &S,
    cache: Option<&GrantCache>,
    target: &RevokeTarget,
    issued_by: Option<&str>,
    reason: i32,
    (client, cause): (&str, &'static str),
) -> Result<u64> {
    let revoked = store.revoke(target, issued_by, reason).await?;
    if let Some(cache) = cache {
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
