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

use super::{Authority, Examined, Result, narrow::narrow};
use crate::{
    audit::{Event, Operation},
    authority::{Check, DelegateSpec, Error, RotateTarget},
    clients::Caller,
    grant::{Grant, micros},
    input::InvalidInput,
    seal,
    store::{Delegation, Rotation, Store},
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
            at_least: None,
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
