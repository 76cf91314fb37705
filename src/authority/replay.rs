//! Replays: a used-up or revoked token presented again by a client the
//! grant was made for. Each is counted in the grant's row (so the count is
//! the grant's, across replicas and restarts) and raises an
//! `event = "replay"` warning with that count; a grant minted with
//! `revoke_run_on_replay` has its whole run revoked. All of it happens on
//! tasks of their own, after the reply: the refusal does not wait for it,
//! nor show, by its timing, that it happened.

use tracing::warn;

use super::{Authority, operators};
use crate::{
    audit::{Event, RevokeCause, TokenMac},
    store::{Grant, RevokeReason, RevokeTarget, Store},
};

impl<S: Store> Authority<S> {
    /// Counts the replay of `grant` by `client`, then logs it.
    pub(super) fn replayed(&self, client: &str, grant: Grant, token_mac: TokenMac) {
        self.metrics.replayed();
        let store = self.store.clone();
        let (client, grant_id, run_id) = (
            client.to_owned(),
            grant.grant_id.clone(),
            grant.run_id.clone(),
        );
        tokio::spawn(async move {
            let counted = store.count_replay(&grant_id).await;
            let (replays, error) = match &counted {
                Ok(replays) => (*replays, None),
                Err(err) => (None, Some(err)),
            };
            Event::Replay {
                client: &client,
                grant_id: &grant_id,
                run_id: &run_id,
                token_mac: &token_mac,
                replays,
                error,
            }
            .write();
        });
        if grant.revoke_run_on_replay && !grant.run_id.is_empty() {
            self.revoke_run_on_replay(grant);
        }
    }

    /// The run of a replayed grant is presumed compromised: every live grant
    /// its issuer holds in that run is revoked, by a task of its own.
    fn revoke_run_on_replay(&self, grant: Grant) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let run = RevokeTarget::RunId(grant.run_id);
            let reason = RevokeReason::Compromised;
            let by = grant.issued_by.as_str();
            let why = (by, RevokeCause::Replay);
            let revoked = operators::revoke_where(&store, &run, Some(by), reason, why);
            if let Err(err) = revoked.await {
                warn!(error = %err, grant_id = %grant.grant_id, "revoking a replayed run failed");
            }
        });
    }
}
