//! Read replicas (`--database-read-url`): standbys answer the reads that
//! may lag a little (BOUNDED Validate, operators' Get and List), so that
//! checks scale with standbys; FULL Validate, claims and every write stay
//! on the primary.
//!
//! A standby is used only while it is provably within `--cache-max-age`
//! of the primary, the bound BOUNDED answers already keep. Its lag is
//! measured by positions, not by timestamps (`pg_last_xact_replay_timestamp`
//! stands still while the primary is idle, and says nothing about what the
//! standby has not received): every [`check_every`] the primary's WAL
//! position is read, then the standby is asked whether it has replayed
//! past it. If it has, it held every commit acknowledged before the first
//! read began, so its answers are at most as stale as that moment is old.
//! A standby that stops answering, falls behind or is promoted stops
//! being confirmed and, within the bound, stops being asked.
//!
//! Revisions (see [`crate::store::Revision`]) are read from the primary
//! after a write; a read that asks for one is answered by a standby that
//! has replayed past it, checked on the connection that then reads, or
//! else by the primary.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tracing::{debug, info, warn};

use super::{PgStore, hosts, primary::describe};
use crate::store::{Dialect, Sql};
use crate::{
    config::DatabaseConfig,
    store::{Grant, ListPage, ListQuery, Lookup, Result as StoreResult, Revision, Store},
    token::TokenHash,
};

/// The reads [`Store`] lets a standby answer: from one when one may,
/// else from the primary.
impl PgStore {
    pub(super) async fn find_on_standby(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<(Option<Lookup>, Duration)> {
        if let Some(replicas) = &self.replicas
            && let Some(found) = replicas
                .read(|db| async move { Sql::find(&db, hash).await })
                .await
        {
            return Ok(found);
        }
        Ok((self.find(hash).await?, Duration::ZERO))
    }

    pub(super) async fn find_past(
        &self,
        hash: &TokenHash,
        revision: &Revision,
    ) -> StoreResult<Option<Lookup>> {
        if let Some(replicas) = &self.replicas
            && let Some(found) = replicas.find_at(hash, revision).await
        {
            return Ok(found);
        }
        self.find(hash).await
    }

    /// Only with read replicas: without, every read is on the primary and
    /// so at least as fresh as any write.
    pub(super) async fn revision_now(&self) -> StoreResult<Option<Revision>> {
        match &self.replicas {
            Some(replicas) => Ok(Some(replicas.revisions.after_write(&self.sql.pool).await?)),
            None => Ok(None),
        }
    }

    pub(super) async fn get_on_standby(
        &self,
        grant_id: &str,
        issued_by: Option<&str>,
    ) -> StoreResult<Option<Grant>> {
        if let Some(replicas) = &self.replicas
            && let Some((found, _)) = replicas
                .read(|db| async move { Sql::get(&db, grant_id, issued_by).await })
                .await
        {
            return Ok(found);
        }
        self.get(grant_id, issued_by).await
    }

    pub(super) async fn list_on_standby(&self, query: &ListQuery) -> StoreResult<ListPage> {
        if let Some(replicas) = &self.replicas
            && let Some((page, _)) = replicas
                .read(|db| async move { Sql::list(&db, query).await })
                .await
        {
            return Ok(page);
        }
        self.list(query).await
    }
}

/// The longest a standby may take to answer (its lag check, a read, a
/// connection) before the primary answers instead: a standby behind a
/// partition must not hold a call up.
const STANDBY_TIMEOUT: Duration = Duration::from_secs(1);

/// The primary's WAL position: every commit acknowledged so far ends at or
/// before it (a commit is acknowledged once flushed, so once written).
pub(super) const PRIMARY_AT: &str = "SELECT pg_current_wal_lsn()::text";

/// Whether this member has replayed past a position. NULL on a member not
/// in recovery: a primary is never used as a standby (the primary's own
/// pool reads from it), nor is a member that lost its primary and
/// promoted itself.
const REPLAYED_PAST: &str = "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn";

/// The members named by a `--database-read-url`, one URL each. Its
/// `target_session_attrs` may be anything that reads (libpq's
/// `prefer-standby`, `standby`, `read-only`, `any`): every member is used
/// only while it is a standby within the bound, and the primary answers
/// otherwise, which is what `prefer-standby` asks.
pub(super) fn parse(url: &str) -> Result<Vec<String>, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    for param in query.split('&').filter(|param| !param.is_empty()) {
        match param.split_once('=') {
            Some(("target_session_attrs", "prefer-standby" | "standby" | "read-only" | "any")) => {}
            Some(("target_session_attrs", _)) => {
                return Err("--database-read-url: target_session_attrs must be \
                            prefer-standby, standby, read-only or any"
                    .into());
            }
            _ => kept.push(param),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    hosts::parse(&url)
        .map(|members| members.urls)
        .map_err(|err| err.replacen("--database-url", "--database-read-url", 1))
}

/// How often each standby's lag is checked: often enough that a healthy
/// standby is always well within `max_lag`.
fn check_every(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

pub(super) struct Replicas {
    standbys: Vec<Standby>,
    /// `--cache-max-age`: the most a standby's answer may lag.
    max_lag: Duration,
    /// What [`Standby::confirmed`] counts from.
    epoch: Instant,
    /// Spreads reads over the standbys in turn.
    next: AtomicUsize,
    revisions: super::revisions::Revisions,
}

struct Standby {
    pool: PgPool,
    /// For logs: `host:port`.
    name: String,
    /// When (µs after `epoch`, 0 for never) the primary was last read at
    /// a position this standby then proved to have replayed: its answers
    /// hold every commit acknowledged before that moment.
    confirmed: AtomicU64,
}

impl Replicas {
    /// The standbys of `--database-read-url`, if given, their lag checked
    /// against `primary` from now on.
    pub fn start(db: &DatabaseConfig, primary: &PgPool) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(url) = &db.read_url else {
            return Ok(None);
        };
        let replicas = Arc::new(Self::connect(db, url)?);
        replicas.watch(primary);
        Ok(Some(replicas))
    }

    /// One pool per member, connected on first use.
    fn connect(db: &DatabaseConfig, read_url: &str) -> anyhow::Result<Self> {
        let standbys = parse(read_url)
            .map_err(anyhow::Error::msg)?
            .iter()
            .map(|url| {
                let options = hosts::configure(url.parse::<PgConnectOptions>()?, db);
                let name = describe(&options);
                let pool = PgPoolOptions::new()
                    .max_connections(db.max_connections)
                    .acquire_timeout(STANDBY_TIMEOUT.min(db.acquire_timeout))
                    .connect_lazy_with(options);
                Ok(Standby {
                    pool,
                    name,
                    confirmed: AtomicU64::new(0),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            standbys,
            max_lag: db.read_max_lag,
            epoch: Instant::now(),
            next: AtomicUsize::new(0),
            revisions: Default::default(),
        })
    }

    /// Checks each standby's lag behind `primary` for as long as the pools
    /// are open (outside a runtime: never, and no standby is used).
    fn watch(self: &Arc<Self>, primary: &PgPool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for at in 0..self.standbys.len() {
            runtime.spawn(self.clone().watch_one(at, primary.clone()));
        }
    }

    async fn watch_one(self: Arc<Self>, at: usize, primary: PgPool) {
        let standby = &self.standbys[at];
        let mut was_fresh = false;
        loop {
            if primary.is_closed() || standby.pool.is_closed() {
                return;
            }
            let asked = self.elapsed();
            let replayed = tokio::time::timeout(STANDBY_TIMEOUT, async {
                let at: String = sqlx::query_scalar(PRIMARY_AT).fetch_one(&primary).await?;
                sqlx::query_scalar::<_, Option<bool>>(REPLAYED_PAST)
                    .bind(at)
                    .fetch_one(&standby.pool)
                    .await
            })
            .await;
            let fresh = matches!(replayed, Ok(Ok(Some(true))));
            if fresh {
                standby.confirmed.fetch_max(asked, Ordering::Relaxed);
            }
            match (was_fresh, fresh) {
                (false, true) => info!(member = %standby.name, "reading from a standby"),
                (true, false) => warn!(
                    member = %standby.name,
                    "a standby is not (or no longer provably) within --cache-max-age of the primary; \
                     it is not read until it is"
                ),
                _ => {}
            }
            was_fresh = fresh;
            tokio::time::sleep(check_every(self.max_lag)).await;
        }
    }

    /// Microseconds since `epoch`, at least 1 (0 means never).
    fn elapsed(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The standbys in turn, starting from the next one's.
    fn in_turn(&self) -> impl Iterator<Item = &Standby> {
        let from = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.standbys.len();
        (0..count).map(move |step| &self.standbys[(from + step) % count])
    }

    /// Runs `read` on a standby within the bound, and says how stale its
    /// answer may be; `None` if no standby is within it, or the one asked
    /// failed or took too long (it is then not asked again until the next
    /// check confirms it): the caller asks the primary.
    async fn read<T, E, F>(&self, read: impl FnOnce(PgPool) -> F) -> Option<(T, Duration)>
    where
        F: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let now = self.elapsed();
        let standby = self.in_turn().find(|standby| {
            let confirmed = standby.confirmed.load(Ordering::Relaxed);
            confirmed != 0 && Duration::from_micros(now - confirmed.min(now)) <= self.max_lag
        })?;
        let confirmed = standby.confirmed.load(Ordering::Relaxed);
        match tokio::time::timeout(STANDBY_TIMEOUT, read(standby.pool.clone())).await {
            Ok(Ok(answer)) => {
                let stale = self.elapsed().saturating_sub(confirmed);
                Some((answer, Duration::from_micros(stale)))
            }
            failed => {
                standby.confirmed.store(0, Ordering::Relaxed);
                match failed {
                    Ok(Err(err)) => {
                        debug!(member = %standby.name, error = %err, "a standby's read failed; the primary answers")
                    }
                    _ => {
                        debug!(member = %standby.name, "a standby's read timed out; the primary answers")
                    }
                }
                None
            }
        }
    }

    /// The grant as a standby that has replayed past `revision` has it,
    /// checked on the connection that then reads; `None` if the standby
    /// asked has not (or failed): the caller asks the primary. Only a
    /// standby confirmed at some point is asked, so that one known to be
    /// down costs nothing.
    async fn find_at(&self, hash: &TokenHash, revision: &Revision) -> Option<Option<Lookup>> {
        let standby = self
            .in_turn()
            .find(|standby| standby.confirmed.load(Ordering::Relaxed) != 0)?;
        let read = async {
            let mut conn = standby.pool.acquire().await?;
            let past: Option<bool> = sqlx::query_scalar(REPLAYED_PAST)
                .bind(revision.to_string())
                .fetch_one(&mut *conn)
                .await?;
            if past != Some(true) {
                return Ok(None);
            }
            let row = sqlx::query(sqlx::Postgres::statements().find)
                .bind(&hash.0[..])
                .fetch_optional(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>(Some(
                row.as_ref()
                    .map(Sql::<sqlx::Postgres>::lookup_from_row)
                    .transpose()?,
            ))
        };
        match tokio::time::timeout(STANDBY_TIMEOUT, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(err)) => {
                debug!(member = %standby.name, error = %err, "a standby's read failed; the primary answers");
                None
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_url_names_its_members_and_any_reading_attrs() {
        assert_eq!(
            parse("postgres://u:pw@h2:5433,h3:5434/db?target_session_attrs=prefer-standby&sslmode=disable")
                .unwrap(),
            vec![
                "postgres://u:pw@h2:5433/db?sslmode=disable".to_owned(),
                "postgres://u:pw@h3:5434/db?sslmode=disable".to_owned(),
            ]
        );
        for attrs in ["standby", "read-only", "any"] {
            let url = format!("postgres://h2,h3/db?target_session_attrs={attrs}");
            assert_eq!(parse(&url).unwrap().len(), 2, "{attrs}");
        }
        assert_eq!(parse("postgres://h2/db").unwrap(), vec!["postgres://h2/db"]);
    }

    #[test]
    fn a_bad_read_url_is_refused_by_its_flag() {
        for url in [
            "postgres://u:secret@h2,h3/db?target_session_attrs=read-write",
            "postgres://u:secret@h2,,h3/db",
            "h2,h3/db",
        ] {
            let err = parse(url).unwrap_err();
            assert!(err.starts_with("--database-read-url: "), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn lag_is_checked_well_within_the_bound() {
        assert_eq!(
            check_every(Duration::from_secs(2)),
            Duration::from_millis(250)
        );
        assert_eq!(
            check_every(Duration::from_millis(200)),
            Duration::from_millis(50)
        );
        assert_eq!(check_every(Duration::ZERO), Duration::from_millis(10));
    }
}
