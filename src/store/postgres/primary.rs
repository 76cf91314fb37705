//! Following the primary among the members of a replicated cluster
//! (Patroni, CloudNativePG, or any streaming replication), so that a
//! failover needs no restart and no write ever runs on a standby.
//!
//! Two mechanisms, each covering what the other cannot:
//! - every new pooled connection checks that its member accepts writes
//!   ([`check_writable`], the pool's `after_connect`); a standby's is
//!   refused, the pool retries within its acquire timeout, and the
//!   follower is woken. PostgreSQL cannot demote a primary without a
//!   restart, which ends its connections, so a connection that passed the
//!   check stays on a primary for life.
//! - the [`Follower`] task keeps one connection to the member it follows
//!   and asks it every [`PROBE_EVERY`] whether it still accepts writes;
//!   when it does not (or is gone), it tries every member in turn and
//!   points the pools at the first that accepts writes. Calls waiting for
//!   a connection meanwhile get one from the new primary, or UNAVAILABLE
//!   when the acquire timeout passes first.

use std::{sync::Arc, time::Duration};

use sqlx::{
    ConnectOptions, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// How often the follower asks the member it follows whether it still
/// accepts writes. A lost primary is noticed within this (its connection
/// breaks at once); a failover itself takes longer (Patroni's TTL).
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The longest one member may take to answer the follower's probe: a
/// member behind a partition must not hold up trying the others.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Read-only for any reason: a standby in recovery, or a member told to
/// refuse writes (`default_transaction_read_only`), as libpq's
/// `target_session_attrs=read-write` checks.
const READ_ONLY: &str =
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool";

/// Wakes the follower when a new connection found a standby.
#[derive(Clone, Default)]
pub(super) struct Wake(Arc<Notify>);

/// Adds the write check to a pool's options.
pub(super) fn check_writable(options: PgPoolOptions, wake: Wake) -> PgPoolOptions {
    options.after_connect(move |conn, _| {
        let wake = wake.clone();
        Box::pin(async move {
            if read_only(conn).await? {
                wake.0.notify_one();
                return Err(sqlx::Error::Io(std::io::Error::other(
                    "the member does not accept writes (a standby)",
                )));
            }
            Ok(())
        })
    })
}

async fn read_only(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(READ_ONLY).fetch_one(conn).await
}

/// Points `pools` at whichever of `members` accepts writes, for as long
/// as the pools are open.
pub(super) struct Follower {
    pub members: Vec<PgConnectOptions>,
    pub pools: Vec<PgPool>,
    pub wake: Wake,
    /// The member the pools point at, an index into `members`.
    pub current: usize,
    /// Whether the search has failed since a member last accepted writes,
    /// so that an outage is logged once, not every probe.
    pub searching: bool,
    /// Set once a member that accepts writes has been found: migrations
    /// wait for it, so that a first member that is down or a standby does
    /// not fail the start.
    pub found: watch::Sender<bool>,
}

impl Follower {
    pub async fn run(mut self) {
        let mut probe: Option<PgConnection> = None;
        loop {
            if self.pools.iter().any(PgPool::is_closed) {
                return;
            }
            let still_primary = match probe.as_mut() {
                Some(conn) => matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, read_only(conn)).await,
                    Ok(Ok(false))
                ),
                None => false,
            };
            if !still_primary {
                probe = self.find().await;
            }
            tokio::select! {
                _ = self.wake.0.notified() => {}
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }

    /// Tries every member, the one followed first, and follows the first
    /// that accepts writes; `None` if none does (yet): the next probe
    /// tries again.
    async fn find(&mut self) -> Option<PgConnection> {
        let from = self.current;
        for step in 0..self.members.len() {
            let at = (from + step) % self.members.len();
            let member = &self.members[at];
            let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
                let mut conn = member.connect().await?;
                let read_only = read_only(&mut conn).await?;
                Ok::<_, sqlx::Error>((conn, read_only))
            })
            .await;
            if let Ok(Ok((conn, false))) = answer {
                if at != from {
                    for pool in &self.pools {
                        pool.set_connect_options(member.clone());
                    }
                    self.current = at;
                    info!(
                        member = %describe(member),
                        "following the primary to another member"
                    );
                }
                self.found.send_replace(true);
                self.searching = false;
                return Some(conn);
            }
        }
        if !self.searching {
            warn!("no database member accepts writes; trying each again until one does");
            self.searching = true;
        }
        None
    }
}

/// `host:port` of a member, for logs (no user, no password).
pub(super) fn describe(member: &PgConnectOptions) -> String {
    format!("{}:{}", member.get_host(), member.get_port())
}
