//! Operator calls: Revoke, GetGrant and ListGrants, under the issuer rule
//! (a client sees and revokes only the grants it issued; `admin` sees all).

use super::{Authority, Error, Page, Result, Target};
use crate::{
    audit::{Event, RevokeCause},
    clients::Caller,
    grant::{Grant, RevokeReason},
    input::{self, InvalidInput},
    store::{ListQuery, Revision, RevokeTarget, Revoked, Store},
    token::GrantId,
};

impl<S: Store> Authority<S> {
    pub async fn revoke(
        &self,
        caller: &Caller,
        target: Target,
        reason: RevokeReason,
    ) -> Result<(u64, Option<Revision>)> {
        let scope = caller.issuer_scope();
        let target = match target {
            Target::Token(token) => RevokeTarget::Token(token.hash()),
            Target::GrantId(id) => RevokeTarget::GrantId(grant_id(id, "grant_id")?),
            Target::RunId(id) => RevokeTarget::RunId(id),
            Target::Subject(id) => RevokeTarget::Subject(id),
        };
        let why = (caller.id.as_str(), RevokeCause::Request);
        let revoked = revoke_where(&self.store, &target, scope, reason, why).await?;
        if let RevokeTarget::GrantId(id) = &target {
            // Unknown and foreign ids are NOT_FOUND; already inactive is 0.
            if revoked == 0 && self.store.get(id, scope).await?.is_none() {
                return Err(Error::NotFound);
            }
        }
        Ok((revoked, self.revision().await))
    }

    pub async fn get(&self, caller: &Caller, grant_id: String) -> Result<Grant> {
        let id = self::grant_id(grant_id, "grant_id")?;
        self.store
            .get_recent(&id, caller.issuer_scope())
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
            .list_recent(&ListQuery {
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

/// Revokes, and records it in the audit trail (`cause`: a request, or a
/// replay).
pub(super) async fn revoke_where<S: Store>(
    store: &S,
    target: &RevokeTarget,
    issued_by: Option<&str>,
    reason: RevokeReason,
    (client, cause): (&str, RevokeCause),
) -> Result<u64> {
    let Revoked {
        count: revoked,
        descendants,
    } = store.revoke(target, issued_by, reason).await?;
    Event::Revoke {
        client,
        cause,
        target,
        reason,
        revoked,
        descendants: descendants.len(),
    }
    .write();
    Ok(revoked)
}

fn grant_id(id: String, field: &str) -> std::result::Result<String, InvalidInput> {
    if GrantId::is_well_formed(&id) {
        Ok(id)
    } else {
        Err(InvalidInput::new(field, "is not a grant id"))
    }
}
