//! Validate's lookups on PostgreSQL, batched.
//!
//! Every statement costs PostgreSQL a parse-free but still whole round of
//! bind, execute and reply, and costs this server a pooled connection and a
//! round trip. Under load many Validates wait at once, so they are looked
//! up together: one `WHERE token_hash = ANY($1)` for all of them. A batch
//! is whatever arrived while the previous ones were in flight: a lone call
//! finds a free slot and goes at once, alone, waiting for nothing.
//!
//! A batch that fails is not retried as a batch. When no connection could
//! be had in time, every call in it gets that answer (UNAVAILABLE, after one
//! acquire timeout, as alone). Otherwise each call is told so and runs its
//! own lookup, with its own error handling and retries.

use std::{collections::HashMap, sync::Arc};

use sqlx::{PgPool, Row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{Lookup, sql};
use crate::token::TokenHash;

/// Most lookups in one statement.
const MAX_BATCH: usize = 256;

/// What a batch tells each of its calls.
pub(super) enum Answer {
    Found(Option<Lookup>),
    /// No connection in time, or the pool is closed: the call's answer too.
    Unavailable(sqlx::Error),
    /// Anything else went wrong: look it up alone.
    Alone,
}

type Reply = oneshot::Sender<Answer>;

/// Hands lookups to the dispatcher; clones share it.
#[derive(Clone)]
pub(super) struct Lookups {
    queue: mpsc::UnboundedSender<(TokenHash, Reply)>,
}

impl Lookups {
    /// Starts the dispatcher, which runs up to `slots` batches at once
    /// (as many pooled connections) and stops when the last clone drops.
    pub(super) fn start(pool: PgPool, slots: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(pool, waiting, Arc::new(Semaphore::new(slots))));
        Self { queue }
    }

    /// The grant behind `hash`, looked up with whatever else is waiting.
    pub(super) async fn find(&self, hash: TokenHash) -> Answer {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((hash, reply)).is_err() {
            return Answer::Alone;
        }
        answer.await.unwrap_or(Answer::Alone)
    }
}

async fn dispatch(
    pool: PgPool,
    mut waiting: mpsc::UnboundedReceiver<(TokenHash, Reply)>,
    slots: Arc<Semaphore>,
) {
    while let Some(first) = waiting.recv().await {
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
        tokio::spawn(run(pool.clone(), batch, slot));
    }
}

async fn run(pool: PgPool, batch: Vec<(TokenHash, Reply)>, _slot: OwnedSemaphorePermit) {
    let hashes: Vec<&[u8]> = batch.iter().map(|(hash, _)| &hash.0[..]).collect();
    // A lone call runs the plain lookup: the cheapest plan there is.
    let statement = match hashes.len() {
        1 => sqlx::query(sql::find!("tessera_now_us()")).bind(hashes[0]),
        _ => sqlx::query(sql::find_many!("tessera_now_us()")).bind(hashes.clone()),
    };
    let rows = statement.fetch_all(&pool).await;
    let found = rows.map(|rows| {
        rows.iter()
            .map(|row| {
                let hash = match hashes.len() {
                    1 => hashes[0].to_vec(),
                    _ => row.try_get("token_hash").ok()?,
                };
                Some((hash, lookup(row)?))
            })
            .collect::<Option<HashMap<Vec<u8>, Lookup>>>()
    });
    for (hash, reply) in batch {
        let answer = match &found {
            Ok(Some(found)) => Answer::Found(found.get(&hash.0[..]).cloned()),
            Err(sqlx::Error::PoolTimedOut) => Answer::Unavailable(sqlx::Error::PoolTimedOut),
            Err(sqlx::Error::PoolClosed) => Answer::Unavailable(sqlx::Error::PoolClosed),
            Ok(None) | Err(_) => Answer::Alone,
        };
        // A caller that went away does not need its answer.
        let _ = reply.send(answer);
    }
}

fn lookup(row: &sqlx::postgres::PgRow) -> Option<Lookup> {
    super::postgres::lookup_from_row(row).ok()
}
