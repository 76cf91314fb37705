//! Replays: a used-up or revoked token presented again by a client the
//! grant was made for. Each is counted in the grant's row (so the count is
//! the grant's, across replicas and restarts) and raises an
//! `event = "replay"` warning with that count; a grant minted with
//! `revoke_run_on_replay` has its whole run revoked. All of it happens on
//! tasks of their own, after the reply: the refusal does not wait for it.
//! Nor does the count follow the reply: it is written at the next whole
//! second of the clock, so the database work a replay causes lands on
//! whatever calls run then, not on the replayer's next one, and a client in
//! the audience cannot time "revoked or used up" apart from "unknown".

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{Semaphore, watch};
use tracing::warn;

use super::{Authority, operators};
use crate::{
    audit::{Event, RevokeCause, TokenMac, Uncounted},
    grant::{Grant, RevokeReason},
    store::{RevokeTarget, Store},
};

/// Replay statements running at once: the rest of the pool stays to calls.
const COUNTING: usize = 2;
/// Replays waiting to be counted, at most. A client presenting spent
/// tokens in a loop gets its refusals at once, but its replays wait behind
/// each other, not before every other client's calls; beyond this many the
/// replay is still logged and in `tessera_replays_total`, not in its row.
/// A second's worth of replays waits for the next whole second, so this
/// holds more than counting gets through in one (a waiting replay is a
/// sleeping task of a few hundred bytes).
pub const REPLAY_BACKLOG: usize = 4096;

/// What bounds the work replays start after their reply.
pub(super) struct Replays {
    counting: Arc<Semaphore>,
    backlog: Arc<Semaphore>,
    /// Runs (issuer, run id) being revoked, and whether a replay came
    /// since that revocation started: then it runs once more when done, so
    /// every replay is followed by a whole revocation of its run, and a run
    /// replayed in a loop has at most one running.
    revoking: Arc<Mutex<HashMap<(String, String), bool>>>,
    /// Set at shutdown: replays waiting for their second are counted now.
    now: watch::Sender<bool>,
}

impl Default for Replays {
    fn default() -> Self {
        Self {
            counting: Arc::new(Semaphore::new(COUNTING)),
            backlog: Arc::new(Semaphore::new(REPLAY_BACKLOG)),
            revoking: Arc::default(),
            now: watch::Sender::new(false),
        }
    }
}

impl<S: Store> Authority<S> {
    /// Counts the replay of `grant` by `client`, then logs it.
    pub(super) fn replayed(&self, client: &str, grant: Grant, token_mac: TokenMac) {
        self.metrics.replayed();
        if grant.revoke_run_on_replay && !grant.run_id.is_empty() {
            self.revoke_run_on_replay(&grant);
        }
        let (client, grant_id, run_id) = (client.to_owned(), grant.grant_id, grant.run_id);
        let Ok(queued) = self.replays.backlog.clone().try_acquire_owned() else {
            Event::Replay {
                client: &client,
                grant_id: &grant_id,
                run_id: &run_id,
                token_mac: &token_mac,
                replays: None,
                error: Some(Uncounted::Backlog),
            }
            .write();
            return;
        };
        let (store, counting) = (self.store.clone(), self.replays.counting.clone());
        let mut now = self.replays.now.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(until_next_second()) => {}
                _ = now.wait_for(|now| *now) => {}
            }
            let Ok(_running) = counting.acquire().await else {
                return;
            };
            drop(queued);
            let counted = store.count_replay(&grant_id).await;
            let (replays, error) = match &counted {
                Ok(replays) => (*replays, None),
                Err(err) => (None, Some(Uncounted::Failed(err))),
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
    }

    /// At shutdown: counts the replays still waiting for their second at
    /// once, and returns when they are written, or after `within`.
    pub async fn finish_replays(&self, within: Duration) {
        let replays = &self.replays;
        replays.now.send_replace(true);
        let waiting = u32::try_from(REPLAY_BACKLOG).unwrap_or(u32::MAX);
        let running = u32::try_from(COUNTING).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, async {
            let _queued = replays.backlog.acquire_many(waiting).await;
            let _counted = replays.counting.acquire_many(running).await;
        })
        .await;
    }

    /// The run of a replayed grant is presumed compromised: every live grant
    /// its issuer holds in that run is revoked, by a task of its own, unless
    /// a revocation of that run is under way already.
    fn revoke_run_on_replay(&self, grant: &Grant) {
        let run = (grant.issued_by.clone(), grant.run_id.clone());
        let revoking = self.replays.revoking.clone();
        match lock(&revoking).entry(run.clone()) {
            Entry::Occupied(mut running) => {
                *running.get_mut() = true;
                return;
            }
            Entry::Vacant(idle) => {
                idle.insert(false);
            }
        }
        let (store, grant_id) = (self.store.clone(), grant.grant_id.clone());
        tokio::spawn(async move {
            let (by, run_id) = &run;
            let target = RevokeTarget::RunId(run_id.clone());
            loop {
                let reason = RevokeReason::Compromised;
                let why = (by.as_str(), RevokeCause::Replay);
                let revoked = operators::revoke_where(&store, &target, Some(by), reason, why);
                if let Err(err) = revoked.await {
                    warn!(error = %err, grant_id = %grant_id, "revoking a replayed run failed");
                }
                let mut runs = lock(&revoking);
                match runs.get_mut(&run) {
                    Some(again) if *again => *again = false,
                    _ => {
                        runs.remove(&run);
                        return;
                    }
                }
            }
        });
    }
}

/// How long until the clock's next whole second.
fn until_next_second() -> Duration {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(1) - Duration::from_nanos(u64::from(since_epoch.subsec_nanos()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; a poisoned one is still sound.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
