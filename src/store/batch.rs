//! Calls to PostgreSQL, batched: Validate's lookups, Claim's uses and
//! Mint's inserts (keyed claims: `postgres/keyed.rs`, on the same batcher).
//!
//! Every statement costs PostgreSQL a whole round of bind, execute and
//! reply, every write a commit and its fsync, and this server a pooled
//! connection and a round trip. Under load many calls wait at once, so they
//! share one statement: one lookup for many token hashes, one insert (one
//! commit) for many grants. A batch is whatever arrived while the previous
//! ones were in flight: a lone call finds a free slot and goes at once,
//! alone, waiting for nothing.
//!
//! A batch that fails is not retried as a batch. When no connection could
//! be had in time, every call in it gets that answer (UNAVAILABLE, after one
//! acquire timeout, as alone). Otherwise a lookup runs alone, with its own
//! error handling and retries; an insert is never run again (its batch may
//! have committed before the connection broke): its Mint is UNAVAILABLE,
//! as a lone insert's would be.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::{PgPool, Postgres, Row, pool::PoolConnection, postgres::PgRow, types::Json};
use tokio::sync::{
    Semaphore,
    mpsc::{self, error::TryRecvError},
    oneshot,
};
use tokio::time::timeout;
use tracing::warn;

use super::{Grant, Lookup, NewGrant, micros, sql};
use crate::token::TokenHash;

/// Most calls in one statement.
const MAX_BATCH: usize = 256;

/// What a batch tells each of its calls.
pub(super) enum Answer<R> {
    Done(R),
    /// The call's answer is this error (for a batch of several: no
    /// connection in time, or the pool is closed).
    Failed(sqlx::Error),
    /// Anything else went wrong: run alone.
    Alone,
}

type Queue<T, R> = mpsc::UnboundedSender<(T, oneshot::Sender<Answer<R>>)>;

/// How long the dispatcher keeps its connections when no call comes: a
/// gap this long ends the load that kept them.
const KEEP_WHILE_CALLED: Duration = Duration::from_millis(10);

/// A pooled connection, as a batch holds it.
pub(super) type Conn = PoolConnection<Postgres>;

/// Hands calls to a dispatcher; clones share it.
pub(super) struct Batcher<T, R> {
    queue: Queue<T, R>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the dispatcher, which runs up to `slots` batches at once (as
    /// many connections of `pool`) and stops when the batcher is dropped.
    /// `run` answers a batch, one answer per call, in order, and gives its
    /// connection back unless the statement failed.
    pub(super) fn start<F, Fut>(slots: usize, pool: PgPool, run: F) -> Self
    where
        F: Fn(Conn, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (Vec<Answer<R>>, Option<Conn>)> + Send + 'static,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<(T, oneshot::Sender<Answer<R>>)>();
        let slots = Arc::new(Semaphore::new(slots));
        let run = Arc::new(run);
        let kept = Arc::new(Kept::new(pool));
        tokio::spawn(async move {
            loop {
                let first = match waiting.try_recv() {
                    Ok(first) => first,
                    Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => {
                        let first = match timeout(KEEP_WHILE_CALLED, waiting.recv()).await {
                            Ok(first) => first,
                            Err(_) => {
                                kept.idle(true);
                                let first = waiting.recv().await;
                                kept.idle(false);
                                first
                            }
                        };
                        match first {
                            Some(first) => first,
                            None => return,
                        }
                    }
                };
                // While every slot is busy, more calls queue up behind this one.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (run, kept) = (run.clone(), kept.clone());
                tokio::spawn(async move {
                    let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
                    let answers = match kept.take().await {
                        Ok(conn) => {
                            let (answers, conn) = run(conn, items).await;
                            if let Some(conn) = conn {
                                kept.keep(conn);
                            }
                            answers
                        }
                        Err(err) => failed(&err, items.len()),
                    };
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        // A caller that went away does not need its answer.
                        let _ = reply.send(answer);
                    }
                    drop(slot);
                });
            }
        });
        Self { queue }
    }

    /// Runs `item` with whatever else is waiting.
    pub(super) async fn submit(&self, item: T) -> Answer<R> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((item, reply)).is_err() {
            return Answer::Alone;
        }
        answer.await.unwrap_or(Answer::Alone)
    }
}

/// The connections a batcher keeps between its batches while calls keep
/// coming. sqlx tests every connection handed back to its pool with a
/// round trip (a Sync and its ReadyForQuery): under load that was one more
/// exchange per statement, about a tenth of this server's CPU and a wake-up
/// of PostgreSQL's. A batch leaves its connection to the next; once no
/// call has come for [`KEEP_WHILE_CALLED`], every kept connection goes
/// back to the pool, and batches still running hand theirs back too.
struct Kept {
    pool: PgPool,
    state: Mutex<KeptState>,
}

#[derive(Default)]
struct KeptState {
    conns: Vec<Conn>,
    /// No call came for a while: keep nothing.
    idle: bool,
}

impl Kept {
    fn new(pool: PgPool) -> Self {
        Self {
            pool,
            state: Mutex::default(),
        }
    }

    async fn take(&self) -> Result<Conn, sqlx::Error> {
        let kept = self.lock().conns.pop();
        match kept {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    fn keep(&self, conn: Conn) {
        let mut state = self.lock();
        if !state.idle {
            state.conns.push(conn);
            return;
        }
        drop(state);
        drop(conn);
    }

    /// Calls stopped coming (`true`), or came again.
    fn idle(&self, idle: bool) {
        let mut state = self.lock();
        state.idle = idle;
        let released = std::mem::take(&mut state.conns);
        drop(state);
        drop(released);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeptState> {
        // Nothing panics while holding it; a poisoned one is still sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The same answer for every call of a failed batch.
fn failed<R>(err: &sqlx::Error, n: usize) -> Vec<Answer<R>> {
    (0..n)
        .map(|_| match err {
            sqlx::Error::PoolTimedOut => Answer::Failed(sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolClosed => Answer::Failed(sqlx::Error::PoolClosed),
            _ => Answer::Alone,
        })
        .collect()
}

/// Looks up many token hashes in one statement. A lone call runs the plain
/// lookup: the cheapest plan there is.
pub(super) async fn find(
    mut conn: Conn,
    hashes: Vec<TokenHash>,
) -> (Vec<Answer<Option<Lookup>>>, Option<Conn>) {
    let keys: Vec<&[u8]> = hashes.iter().map(|hash| &hash.0[..]).collect();
    let statement = match keys.len() {
        1 => sqlx::query(sql::find!("tessera_now_us()")).bind(keys[0]),
        _ => sqlx::query(sql::find_many!("tessera_now_us()")).bind(keys.clone()),
    };
    let rows = match statement.fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(err) => return (failed(&err, hashes.len()), None),
    };
    let found = rows
        .iter()
        .map(|row| {
            let hash = match keys.len() {
                1 => keys[0].to_vec(),
                _ => row.try_get("token_hash").ok()?,
            };
            Some((hash, super::postgres::lookup_from_row(row).ok()?))
        })
        .collect::<Option<HashMap<Vec<u8>, Lookup>>>();
    let Some(found) = found else {
        return (failed(&sqlx::Error::RowNotFound, hashes.len()), Some(conn));
    };
    let answers = keys
        .iter()
        .map(|key| Answer::Done(found.get(*key).cloned()))
        .collect();
    (answers, Some(conn))
}

/// A use taken: the grant after it, and its sealed payload.
pub(super) type Taken = Option<(Grant, Vec<u8>)>;

/// Takes one use of each grant in one statement, one commit. Only grants
/// the statement updated are answered here; every other call runs alone,
/// after it, and gets its answer from the plain compare-and-set: a grant
/// with no use left, a row another transaction held (skipped rather than
/// waited for), and the second claim of a grant named twice (one `UPDATE`
/// touches a row once). A statement the database refused (a timeout)
/// rolled back, so its calls run alone too; a broken connection may have
/// committed, so its calls are UNAVAILABLE and nothing is run again.
pub(super) async fn consume(
    mut conn: Conn,
    ids: Vec<String>,
) -> (Vec<Answer<Taken>>, Option<Conn>) {
    let mut distinct: Vec<&str> = Vec::with_capacity(ids.len());
    for id in &ids {
        if !distinct.contains(&id.as_str()) {
            distinct.push(id);
        }
    }
    let rows = sqlx::query(sql::consume_many!("tessera_now_us()"))
        .bind(distinct)
        .fetch_all(&mut *conn)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(err)) => {
            warn!(error = %err, claims = ids.len(), "a batch of claims was refused; each runs alone");
            return (ids.iter().map(|_| Answer::Alone).collect(), None);
        }
        Err(err) => {
            warn!(error = %err, claims = ids.len(), "a batch of claims failed");
            return (ids.iter().map(|_| Answer::Failed(lost())).collect(), None);
        }
    };
    let mut taken: HashMap<String, (Grant, Vec<u8>)> = HashMap::new();
    for row in &rows {
        let grant = super::postgres::grant_from_row(row);
        let sealed = row.try_get::<Vec<u8>, _>("sealed_payload");
        if let (Ok(grant), Ok(sealed)) = (grant, sealed) {
            taken.insert(grant.grant_id.clone(), (grant, sealed));
        }
    }
    let answers = ids
        .iter()
        .map(|id| match taken.remove(id.as_str()) {
            Some(use_taken) => Answer::Done(Some(use_taken)),
            None => Answer::Alone,
        })
        .collect();
    (answers, Some(conn))
}

/// The error of a write whose batch may or may not have committed.
pub(super) fn lost() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other("a batch write failed"))
}

/// One grant of a batch insert, as `jsonb_to_recordset` reads it.
#[derive(serde::Serialize)]
struct Record<'a> {
    grant_id: &'a str,
    token_hash: String,
    token_hint: &'a str,
    subject: &'a str,
    audience: &'a [String],
    run_id: &'a str,
    scopes: &'a [String],
    labels: &'a std::collections::BTreeMap<String, String>,
    sealed_payload: String,
    max_uses: i64,
    issued_by: &'a str,
    revoke_run_on_replay: bool,
    credential_bearer_id: Option<&'a str>,
    credential_name: Option<&'a str>,
    ttl: i64,
}

/// Inserts many grants in one statement, one commit. A lone call runs the
/// plain insert (in its slot, so that calls arriving meanwhile batch up).
pub(super) async fn insert(
    mut conn: Conn,
    grants: Vec<NewGrant>,
) -> (Vec<Answer<Grant>>, Option<Conn>) {
    if grants.len() == 1 {
        return match super::postgres::insert_one(&mut *conn, &grants[0]).await {
            Ok(grant) => (vec![Answer::Done(grant)], Some(conn)),
            Err(err) => (vec![Answer::Failed(err)], None),
        };
    }
    let rows: Vec<Record<'_>> = grants
        .iter()
        .map(|g| Record {
            grant_id: &g.grant_id,
            token_hash: hex::encode(g.token_hash.0),
            token_hint: &g.token_hint,
            subject: &g.subject,
            audience: &g.audience,
            run_id: &g.run_id,
            scopes: &g.scopes,
            labels: &g.labels,
            sealed_payload: hex::encode(&g.sealed_payload),
            max_uses: i64::from(g.max_uses),
            issued_by: &g.issued_by,
            revoke_run_on_replay: g.revoke_run_on_replay,
            credential_bearer_id: g.payload_credential.as_ref().map(|c| c.bearer_id.as_str()),
            credential_name: g.payload_credential.as_ref().map(|c| c.name.as_str()),
            ttl: micros(g.ttl),
        })
        .collect();
    let inserted = sqlx::query(sql::insert_many!("tessera_now_us()"))
        .bind(Json(&rows))
        .fetch_all(&mut *conn)
        .await;
    let inserted: Vec<PgRow> = match inserted {
        Ok(rows) => rows,
        Err(err) => {
            warn!(error = %err, mints = grants.len(), "a batch of mints failed");
            return ((0..grants.len()).map(|_| unwritten()).collect(), None);
        }
    };
    let mut by_id: HashMap<String, Grant> = inserted
        .iter()
        .filter_map(|row| super::postgres::grant_from_row(row).ok())
        .map(|grant| (grant.grant_id.clone(), grant))
        .collect();
    let answers = grants
        .iter()
        .map(|g| match by_id.remove(&g.grant_id) {
            Some(grant) => Answer::Done(grant),
            None => unwritten(),
        })
        .collect();
    (answers, Some(conn))
}

/// A mint whose batch failed, or whose row did not come back.
fn unwritten() -> Answer<Grant> {
    Answer::Failed(lost())
}
