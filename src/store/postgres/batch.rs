//! Calls to PostgreSQL, batched: how a batch forms and runs. What each
//! batch runs is in [`super::batched`] (Validate's lookups, Claim's uses,
//! Mint's inserts) and [`super::keyed`] (keyed claims), its SQL in
//! [`super::statements`].
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
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::{PgPool, Postgres, pool::PoolConnection};
use tokio::sync::{
    Semaphore,
    mpsc::{self, error::TryRecvError},
    oneshot,
};
use tokio::time::timeout;

use crate::grant::Grant;

/// Most calls in one statement.
const MAX_BATCH: usize = 256;

/// What a batch tells each of its calls.
pub(super) enum Answer<R> {
    Done(R),
    /// The call's answer is this error (for a batch of several: no
    /// connection in time, or the pool is closed).
    Failed(sqlx::Error),
    /// Anything else went wrong: the caller runs its call alone.
    RunAlone,
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
        let kept = Arc::new(WarmConnections::new(pool));
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
            return Answer::RunAlone;
        }
        answer.await.unwrap_or(Answer::RunAlone)
    }
}

/// The connections a batcher keeps between its batches while calls keep
/// coming. sqlx tests every connection handed back to its pool with a
/// round trip (a Sync and its ReadyForQuery): under load that was one more
/// exchange per statement, about a tenth of this server's CPU and a wake-up
/// of PostgreSQL's. A batch leaves its connection to the next; once no
/// call has come for [`KEEP_WHILE_CALLED`], every kept connection goes
/// back to the pool, and batches still running hand theirs back too.
struct WarmConnections {
    pool: PgPool,
    state: Mutex<WarmState>,
}

#[derive(Default)]
struct WarmState {
    conns: Vec<Conn>,
    /// No call came for a while: keep nothing.
    idle: bool,
}

impl WarmConnections {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, WarmState> {
        // Nothing panics while holding it; a poisoned one is still sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The same answer for every call of a failed batch.
pub(super) fn failed<R>(err: &sqlx::Error, n: usize) -> Vec<Answer<R>> {
    (0..n)
        .map(|_| match err {
            sqlx::Error::PoolTimedOut => Answer::Failed(sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolClosed => Answer::Failed(sqlx::Error::PoolClosed),
            _ => Answer::RunAlone,
        })
        .collect()
}

/// A use taken: the grant after it, and its sealed payload.
pub(super) type Taken = (Grant, Vec<u8>);

/// The error of a write whose batch may or may not have committed.
pub(super) fn lost() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other("a batch write failed"))
}
