//! The domain operations: mint, validate, claim and revoke.
//!
//! The gRPC layer authenticates the caller and shapes the input; the store
//! persists rows; [`crate::rules`] decides whether a grant passes. Here they
//! meet: the TTL policy and the issuer rule, finding a grant, consuming a
//! use, and the audit trail with its replay tripwire. The store may be a
//! [`crate::cache::Cached`] one: BOUNDED checks ask it for a recent answer,
//! and it keeps its memory true by itself.
//!
//! A token that is not one of ours is MALFORMED without a database access.
//! Every other refusal takes the same path whatever its hidden reason: one
//! lookup (the same statement for a token never minted as for a dead or
//! foreign grant), the same pure rules, one audit line, and the same reply.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};

mod lineage;
mod narrow;
mod operators;
mod replay;
mod types;

pub use crate::rules::Denial;
pub use replay::REPLAY_BACKLOG;
pub use types::{
    Check, Claimed, DelegateSpec, Error, MintSpec, Page, Policy, Result, RotateTarget, Target,
    Validated,
};

use crate::{
    audit::{Audit, ClaimOutcome, Event, Operation as Op},
    clients::Caller,
    credentials::{Secret, SecretSource},
    grant::{CredentialRef, Grant},
    input::InvalidInput,
    metrics::Metrics,
    rules::{self, Hidden, Presented, Refusal},
    seal,
    store::{Keyed, Lookup, NewGrant, Prior, Revision, Store},
    token::{GrantId, Token},
    usage::Usage,
};

pub struct Authority<S> {
    store: S,
    policy: Policy,
    audit: Audit,
    /// Validate's uses, until [`Self::record_usage`] writes them.
    usage: Usage,
    /// Bounds on the work replays leave behind them.
    replays: replay::Replays,
    metrics: Arc<Metrics>,
    /// Where a claim reads the credential a grant names; `None`: grants
    /// cannot name one.
    secrets: Option<Arc<dyn SecretSource>>,
}

impl<S: Store> Authority<S> {
    pub fn new(store: S, policy: Policy, audit: Audit, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            policy,
            audit,
            usage: Usage::default(),
            replays: replay::Replays::default(),
            metrics,
            secrets: None,
        }
    }

    /// Lets grants name a stored credential that their claim hands over.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The current secret of `client_id`'s credential `named`: `None` if
    /// it is gone.
    async fn credential(
        &self,
        client_id: &str,
        named: &CredentialRef,
    ) -> Result<Option<(Secret, u64)>> {
        let Some(secrets) = &self.secrets else {
            return Err(crate::credentials::Error::Disabled.into());
        };
        Ok(secrets
            .current(client_id, &named.bearer_id, &named.name)
            .await?)
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

    /// The token, its grant, and the revision a Validate may ask to be at
    /// least as fresh as.
    pub async fn mint(
        &self,
        caller: &Caller,
        spec: MintSpec,
    ) -> Result<(Token, Grant, Option<Revision>)> {
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
        if let Some(named) = &spec.payload_credential
            && self.credential(&caller.id, named).await?.is_none()
        {
            return Err(InvalidInput::new(
                "payload_credential",
                "names no credential this client has stored",
            )
            .into());
        }
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
            payload_credential: spec.payload_credential,
        };
        let grant = self.store.insert(&new).await?;
        Event::Mint {
            client: &caller.id,
            grant: &grant,
            token_mac: &self.audit.token_mac(&token),
            ttl,
        }
        .write();
        Ok((token, grant, self.revision().await))
    }

    /// How far the writes acknowledged so far reach (see
    /// [`crate::store::Revision`]), read after a write. `None` if the store
    /// has none, or it could not be read: the write stands, and its caller
    /// is not told it failed (a Validate without a revision is then
    /// answered as usual).
    async fn revision(&self) -> Option<Revision> {
        match self.store.revision().await {
            Ok(revision) => revision,
            Err(err) => {
                warn!(error = %err, "the revision after a write could not be read");
                None
            }
        }
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
            None if check.bounded => match &check.at_least {
                Some(revision) => self.store.find_at(&hash, revision).await?,
                None => self.store.find_recent(&hash).await?,
            }
            .map(|l| (l, None)),
            None => self.store.find(&hash).await?.map(|l| (l, None)),
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
            resource: caller.resource.as_deref(),
            subject: check.subject.as_deref(),
            required_scopes: &check.required_scopes,
            now: lookup.now,
            retried: prior.is_some(),
        };
        Ok(match rules::judge(&lookup.grant, &presented) {
            Ok(()) => Examined::Passed(Found {
                token,
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

    pub async fn validate(&self, caller: &Caller, check: Check) -> Result<Validated> {
        let found = match self.examine(caller, &check).await? {
            Examined::Passed(found) => found,
            Examined::Refused(refused) => {
                return Ok(Validated::Denied(self.refuse(
                    Op::Validate,
                    caller,
                    refused,
                )));
            }
        };
        let Found { lookup, .. } = found;
        let mut grant = lookup.grant;
        let stale = grant
            .last_used_at
            .is_none_or(|at| lookup.now - at >= crate::grant::micros(crate::store::TOUCH_INTERVAL));
        if stale {
            // Bookkeeping, not a rule: written within a second, off the reply.
            self.usage.note(&grant.grant_id, lookup.now);
            grant.last_used_at = Some(lookup.now);
        }
        debug!(client = %caller.id, grant_id = %grant.grant_id, "validated");
        self.metrics.check("validate", "VALID", "NONE");
        Ok(Validated::Valid(grant))
    }

    pub async fn claim(&self, caller: &Caller, check: Check) -> Result<Claimed> {
        let found = match self.examine(caller, &check).await? {
            Examined::Passed(found) => found,
            Examined::Refused(refused) => {
                return Ok(Claimed::Denied(self.refuse(Op::Claim, caller, refused)));
            }
        };
        let Found {
            token,
            key,
            lookup,
            prior,
        } = found;
        // A grant that hands over a stored credential reads it before the
        // use is taken: if it is gone, the claim fails and consumes nothing.
        let credential = match &lookup.grant.payload_credential {
            None => None,
            Some(named) => match self.credential(&lookup.grant.issued_by, named).await? {
                Some(current) => Some(current),
                None => {
                    return Err(Error::Precondition(
                        "payload_credential: the credential this grant names was deleted".into(),
                    ));
                }
            },
        };
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
                Ok((grant, sealed_payload, ClaimOutcome::Retried))
            }
            (None, None) => match self.store.consume(&lookup.grant.grant_id).await? {
                Some((grant, sealed)) => Ok((grant, sealed, ClaimOutcome::Claimed)),
                None => Err(lookup.grant),
            },
            (None, Some(key)) => {
                let grant_id = &lookup.grant.grant_id;
                match self.store.consume_keyed(grant_id, &caller.id, &key).await? {
                    Keyed::Consumed(grant, sealed) => Ok((grant, sealed, ClaimOutcome::Claimed)),
                    // A racing retry with the same key got there first.
                    Keyed::Replayed(grant, sealed) => Ok((grant, sealed, ClaimOutcome::Retried)),
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
                return Ok(Claimed::Denied(self.refuse(Op::Claim, caller, refused)));
            }
        };
        // A row whose payload does not open was tampered with in the
        // database: the use is spent and the caller gets INTERNAL, never the
        // bytes.
        let payload = seal::open(&token, &grant.grant_id, &sealed)?;
        Event::Claim {
            outcome,
            client: &caller.id,
            grant: &grant,
            token_mac: &self.audit.token_mac(&token),
        }
        .write();
        let counted = match outcome {
            ClaimOutcome::Claimed => "CLAIMED",
            ClaimOutcome::Retried => "RETRIED",
        };
        self.metrics.check("claim", counted, "NONE");
        Ok(Claimed::Claimed {
            grant,
            payload,
            credential,
        })
    }

    /// Records a refusal in the audit trail with its real reason, and
    /// returns what the caller may know. A revoked or used-up token
    /// presented by a caller the grant was made for is a replay: counted,
    /// and a distinct event, off the reply path (see [`replay`]).
    fn refuse(&self, op: Op, caller: &Caller, refused: Refused) -> Denial {
        let Refused {
            refusal,
            token,
            grant,
        } = refused;
        let token_mac = token.as_ref().map(|t| self.audit.token_mac(t));
        Event::Refused {
            operation: op,
            client: &caller.id,
            grant_id: grant.as_ref().map(|g| g.grant_id.as_str()),
            token_mac: token_mac.as_ref(),
            denial: refusal.denial,
            why: refusal.hidden,
        }
        .write();
        let hidden = refusal.hidden.map_or("NONE", Hidden::name);
        self.metrics.check(op.name(), refusal.denial.name(), hidden);
        let replayed = refusal.hidden.is_some_and(Hidden::is_replay);
        // A grant was found, so the token parsed and has a MAC.
        if let (true, Some(grant), Some(token_mac)) = (replayed, grant, token_mac) {
            self.replayed(&caller.id, grant, token_mac);
        }
        refusal.denial
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

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
