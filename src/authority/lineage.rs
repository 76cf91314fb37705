//! Rotate and Delegate: grants made from other grants.
//!
//! A rotation replaces a grant (a team token, say) with a successor and a
//! new token, the old token honoured for an overlap so that nothing in
//! flight breaks. A delegation hands a sub-agent a token that can do no
//! more than its parent: every limit is checked here against the parent as
//! found, and the store re-checks that the parent is live, takes the
//! child's uses from it and caps the child's life at the parent's expiry
//! or scheduled revocation, so nothing it grants outlives or outranks the
//! parent, and a family never takes more uses than its root allows.

use std::time::Duration;

use super::{Authority, Examined, Result};
use crate::{
    audit::{Event, Operation},
    authority::{Check, DelegateSpec, Error, RotateTarget},
    clients::Caller,
    input::{InvalidInput, MAX_LABELS},
    rules, seal,
    store::{Delegation, Grant, Micros, Rotation, Store, micros},
    token::{GrantId, Token},
};

impl<S: Store> Authority<S> {
    /// Returns the successor's token and grant, and the predecessor as it
    /// now is.
    pub async fn rotate(
        &self,
        caller: &Caller,
        target: RotateTarget,
        overlap: Duration,
        ttl: Option<Duration>,
    ) -> Result<(Token, Grant, Grant)> {
        self.within_max_ttl("overlap", overlap)?;
        if let Some(ttl) = ttl {
            self.within_max_ttl("ttl", ttl)?;
        }
        let scope = caller.issuer_scope();
        let (old_token, grant) = match target {
            RotateTarget::Token(token) => {
                let found = self.store.find(&token.hash()).await?.map(|l| l.grant);
                (Some(token), found)
            }
            RotateTarget::GrantId(id) => (None, self.store.get(&id, scope).await?),
        };
        // Another client's grant is not found, as everywhere.
        let grant = grant
            .filter(|g| scope.is_none_or(|me| g.issued_by == me))
            .ok_or(Error::NotFound)?;
        // A rotation hands its caller a token; for a grant whose claim
        // reveals a stored secret that would be the secret itself, which
        // only the credential's owner may hand out (`admin` is not a way
        // around the `credentials` role).
        if grant.payload_credential.is_some() && grant.issued_by != caller.id {
            return Err(Error::Forbidden(
                "the grant names a stored credential: only the client that minted it may rotate it"
                    .into(),
            ));
        }
        let sealed = self
            .store
            .payload(&grant.grant_id)
            .await?
            .unwrap_or_default();
        let token = Token::generate();
        let successor_id = GrantId::generate(super::unix_millis());
        let sealed_payload = match &old_token {
            Some(old) => {
                let payload = seal::open(old, &grant.grant_id, &sealed)?;
                seal::seal(&token, &successor_id, &payload)
            }
            None if sealed.is_empty() => Vec::new(),
            None => {
                return Err(Error::Precondition(
                    "the grant has a payload, sealed under its token: rotate it by token".into(),
                ));
            }
        };
        let rotation = Rotation {
            grant_id: grant.grant_id.clone(),
            issued_by: scope.map(str::to_owned),
            successor_id,
            token_hash: token.hash(),
            token_hint: token.hint().to_owned(),
            sealed_payload,
            ttl: ttl.map_or(grant.expires_at - grant.issued_at, micros),
            overlap: micros(overlap),
        };
        let Some(rotated) = self.store.rotate(&rotation).await? else {
            return Err(Error::Precondition(
                "the grant is no longer live, or was rotated already".into(),
            ));
        };
        Event::Rotate {
            client: &caller.id,
            successor_id: &rotated.successor.grant_id,
            rotated_from: &grant.grant_id,
            token_mac: &self.audit.token_mac(&token),
            overlap,
            descendants: rotated.descendants.len(),
        }
        .write();
        Ok((token, rotated.successor, rotated.predecessor))
    }

    /// A token for a sub-agent, within its parent's limits.
    pub async fn delegate(&self, caller: &Caller, spec: DelegateSpec) -> Result<(Token, Grant)> {
        let check = Check {
            token: spec.parent_token.clone(),
            required_scopes: Vec::new(),
            subject: None,
            bounded: false,
            claim_key: None,
        };
        let found = match self.examine(caller, &check).await? {
            Examined::Passed(found) => found,
            Examined::Refused(refused) => {
                self.refuse(Operation::Delegate, caller, refused);
                return Err(Error::ParentUnknown);
            }
        };
        let parent = &found.lookup.grant;
        let max_depth = self.policy.max_delegation_depth;
        if parent.depth >= max_depth {
            return Err(Error::Precondition(format!(
                "the parent is {} delegations deep, the most allowed (--max-delegation-depth)",
                parent.depth
            )));
        }
        let narrowed = narrow(parent, found.lookup.now, &spec, self.policy.max_ttl)?;
        let token = Token::generate();
        let grant_id = GrantId::generate(super::unix_millis());
        let child = Delegation {
            parent_grant_id: parent.grant_id.clone(),
            token_hash: token.hash(),
            token_hint: token.hint().to_owned(),
            sealed_payload: seal::seal(&token, &grant_id, &spec.payload),
            grant_id,
            audience: narrowed.audience,
            scopes: narrowed.scopes,
            labels: narrowed.labels,
            max_uses: narrowed.max_uses,
            issued_by: caller.id.clone(),
            ttl: narrowed.ttl,
        };
        // The parent may have ended since it was judged: then, as for any
        // token that is not live, the same answer as an unknown one.
        let grant = self
            .store
            .delegate(&child)
            .await?
            .ok_or(Error::ParentUnknown)?;
        Event::Delegate {
            client: &caller.id,
            grant: &grant,
            parent_grant_id: &parent.grant_id,
            token_mac: &self.audit.token_mac(&token),
        }
        .write();
        Ok((token, grant))
    }

    fn within_max_ttl(&self, field: &str, duration: Duration) -> Result<()> {
        if duration > self.policy.max_ttl {
            let max = self.policy.max_ttl.as_secs();
            return Err(InvalidInput::new(field, format!("must be at most {max}s")).into());
        }
        Ok(())
    }
}

/// What a child may have: what it asked for, each part checked against
/// its parent, or the parent's own where it asked for nothing.
struct Narrowed {
    scopes: Vec<String>,
    audience: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
    max_uses: u32,
    ttl: Micros,
}

fn narrow(parent: &Grant, now: Micros, spec: &DelegateSpec, max_ttl: Duration) -> Result<Narrowed> {
    let scopes = if spec.scopes.is_empty() {
        parent.scopes.clone()
    } else {
        if let Some(wider) = spec
            .scopes
            .iter()
            .find(|scope| !rules::scope_granted(&parent.scopes, scope))
        {
            return Err(InvalidInput::new(
                "scopes",
                format!("{wider:?} is not granted by the parent token"),
            )
            .into());
        }
        spec.scopes.clone()
    };
    let audience = if spec.audience.is_empty() {
        parent.audience.clone()
    } else {
        let outside = spec
            .audience
            .iter()
            .find(|id| !parent.audience.is_empty() && !parent.audience.contains(id));
        if let Some(outside) = outside {
            return Err(InvalidInput::new(
                "audience",
                format!("{outside:?} is not in the parent token's audience"),
            )
            .into());
        }
        spec.audience.clone()
    };
    // A rotated parent is revoked at the end of its overlap: its life ends
    // there, not at its expiry.
    let ends_at = parent
        .revoked_at
        .map_or(parent.expires_at, |at| at.min(parent.expires_at));
    let remaining_life = ends_at - now;
    let ttl = match spec.ttl {
        None => remaining_life,
        Some(ttl) if ttl > max_ttl || micros(ttl) > remaining_life => {
            let left = Duration::from_micros(u64::try_from(remaining_life).unwrap_or(0));
            return Err(InvalidInput::new(
                "ttl",
                format!(
                    "must not outlive the parent token, which expires in {}s",
                    left.as_secs()
                ),
            )
            .into());
        }
        Some(ttl) => micros(ttl),
    };
    let max_uses = match parent.max_uses {
        0 => spec.max_uses,
        limit => {
            let left = limit.saturating_sub(parent.use_count);
            match spec.max_uses {
                0 => left,
                asked if asked <= left => asked,
                _ => {
                    return Err(InvalidInput::new(
                        "max_uses",
                        format!("must be at most the parent token's {left} remaining uses"),
                    )
                    .into());
                }
            }
        }
    };
    // A child's labels add keys; the parent's are what it is (a tenant, a
    // project) and a sub-agent cannot relabel itself out of them.
    if let Some((key, _)) = spec
        .labels
        .iter()
        .find(|(key, value)| parent.labels.get(*key).is_some_and(|own| own != *value))
    {
        return Err(InvalidInput::new(
            "labels",
            format!("{key:?} is set by the parent token and cannot be changed"),
        )
        .into());
    }
    let mut labels = parent.labels.clone();
    labels.extend(spec.labels.clone());
    if labels.len() > MAX_LABELS {
        return Err(InvalidInput::new(
            "labels",
            format!("with the parent's, must have at most {MAX_LABELS} entries"),
        )
        .into());
    }
    Ok(Narrowed {
        scopes,
        audience,
        labels,
        max_uses,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Grant {
        Grant {
            scopes: vec!["connector:*".into(), "tool:search".into()],
            audience: vec!["proxy".into(), "agent".into()],
            max_uses: 5,
            use_count: 2,
            expires_at: 1_000_000_000,
            ..Grant::default()
        }
    }

    fn spec() -> DelegateSpec {
        DelegateSpec {
            parent_token: String::new(),
            scopes: Vec::new(),
            audience: Vec::new(),
            ttl: None,
            max_uses: 0,
            labels: Default::default(),
            payload: Vec::new(),
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_child_inherits_what_it_does_not_narrow() {
        let child = narrow(&parent(), 0, &spec(), DAY).unwrap();
        assert_eq!(child.scopes, parent().scopes);
        assert_eq!(child.audience, parent().audience);
        assert_eq!((child.max_uses, child.ttl), (3, 1_000_000_000));
    }

    #[test]
    fn a_child_never_exceeds_its_parent() {
        let ok = DelegateSpec {
            scopes: vec!["connector:github".into()],
            audience: vec!["proxy".into()],
            max_uses: 3,
            ttl: Some(Duration::from_secs(10)),
            ..spec()
        };
        let child = narrow(&parent(), 0, &ok, DAY).unwrap();
        assert_eq!(child.scopes, ["connector:github"]);
        let too_much = [
            (
                "scopes",
                DelegateSpec {
                    scopes: vec!["tool:admin".into()],
                    ..spec()
                },
            ),
            (
                "scopes",
                DelegateSpec {
                    scopes: vec!["tool:*".into()],
                    ..spec()
                },
            ),
            (
                "audience",
                DelegateSpec {
                    audience: vec!["reader".into()],
                    ..spec()
                },
            ),
            (
                "max_uses",
                DelegateSpec {
                    max_uses: 4,
                    ..spec()
                },
            ),
            (
                "ttl",
                DelegateSpec {
                    ttl: Some(Duration::from_secs(1001)),
                    ..spec()
                },
            ),
        ];
        for (field, asked) in too_much {
            let err = narrow(&parent(), 0, &asked, DAY).err().unwrap().to_string();
            assert!(err.starts_with(field), "{err}");
        }
        // Under a parent for anyone, any audience; under an unlimited one,
        // unlimited uses.
        let open = Grant {
            audience: vec![],
            max_uses: 0,
            ..parent()
        };
        let anyone = DelegateSpec {
            audience: vec!["reader".into()],
            ..spec()
        };
        let child = narrow(&open, 0, &anyone, DAY).unwrap();
        assert_eq!(
            (child.audience, child.max_uses),
            (vec!["reader".to_owned()], 0)
        );
    }

    #[test]
    fn a_child_of_a_rotated_parent_lives_until_its_overlap_ends() {
        let rotated = Grant {
            revoked_at: Some(2_000_000),
            ..parent()
        };
        let child = narrow(&rotated, 0, &spec(), DAY).unwrap();
        assert_eq!(child.ttl, 2_000_000);
        let longer = DelegateSpec {
            ttl: Some(Duration::from_secs(3)),
            ..spec()
        };
        let err = narrow(&rotated, 0, &longer, DAY).err().unwrap().to_string();
        assert!(err.starts_with("ttl"), "{err}");
    }

    #[test]
    fn a_child_adds_labels_and_never_changes_its_parents() {
        let labelled = Grant {
            labels: [("tenant".to_owned(), "acme".to_owned())].into(),
            ..parent()
        };
        let ask = |key: &str, value: &str| DelegateSpec {
            labels: [(key.to_owned(), value.to_owned())].into(),
            ..spec()
        };
        let err = narrow(&labelled, 0, &ask("tenant", "evil-corp"), DAY)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("labels") && err.contains("tenant"), "{err}");
        for (key, value) in [("tenant", "acme"), ("agent", "sub-1")] {
            let child = narrow(&labelled, 0, &ask(key, value), DAY).unwrap();
            assert_eq!(child.labels["tenant"], "acme");
        }
    }
}
