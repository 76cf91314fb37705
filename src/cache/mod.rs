//! This replica's memory of recently seen grants, for BOUNDED Validate.
//!
//! PostgreSQL caps how many strongly consistent Validates a cluster can
//! answer; a BOUNDED Validate may instead be answered from here. Freshness
//! has two guards. Every change that ends a grant early (revoke, the claim
//! that takes the last use) reaches every replica as an invalidation
//! (PostgreSQL NOTIFY from a trigger, so even a revoke made by hand in SQL
//! counts), and this replica's own changes apply at once. And no entry is
//! used after `max_age`, so a lost notification costs at most that much
//! staleness. While invalidations cannot be received (the listener is
//! reconnecting) the cache answers nothing. Expiry needs no invalidation:
//! it is judged against the database's clock as of the fetch plus the time
//! elapsed since.
//!
//! [`Cached`] puts it in front of a store; the domain only ever sees a store.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

mod layer;

pub use layer::Cached;

use crate::{
    grant::{Grant, Micros, micros},
    metrics::CacheCounters,
    store::{Invalidation, Lookup},
    token::TokenHash,
};

pub struct GrantCache {
    state: Mutex<State>,
    max_age: Duration,
    capacity: usize,
    /// How many "no such grant" answers are kept: a quarter of `capacity`,
    /// in a map of their own, so that a flood of made-up tokens evicts
    /// only other made-up tokens, never a live grant.
    absent_capacity: usize,
    live: AtomicBool,
    counters: CacheCounters,
}

#[derive(Default)]
struct State {
    /// Grants as last read…
    ready: HashMap<TokenHash, Entry>,
    /// …and their token hashes by grant id: a claim or a rotation knows
    /// the grant, not the token.
    ids: HashMap<String, TokenHash>,
    /// Tokens the database had no grant for, and when that was read.
    absent: HashMap<TokenHash, Instant>,
    /// Fetches under way: only the fetch holding the ticket may fill the
    /// slot, and any invalidation in between removes it, so a fetch that
    /// raced a change (and may hold the row as it was) is not kept. As many
    /// as calls in flight, so not counted against the capacity.
    pending: HashMap<TokenHash, u64>,
    next_ticket: u64,
}

struct Entry {
    grant: Grant,
    /// The database's clock when the row was read…
    db_now: Micros,
    /// …and this process's clock at the same moment.
    fetched: Instant,
}

/// Proof that a fetch started after the last invalidation of its grant.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// Bounded memory: makes room by dropping an arbitrary entry; it is only a
/// cache. Returns what it dropped.
fn make_room<V>(map: &mut HashMap<TokenHash, V>, capacity: usize) -> Option<V> {
    if map.len() >= capacity
        && let Some(victim) = map.keys().next().copied()
    {
        return map.remove(&victim);
    }
    None
}

impl State {
    fn forget(&mut self, hash: &TokenHash) {
        if let Some(entry) = self.ready.remove(hash) {
            self.ids.remove(&entry.grant.grant_id);
        }
        self.absent.remove(hash);
        self.pending.remove(hash);
    }

    fn clear(&mut self) {
        self.ready.clear();
        self.ids.clear();
        self.absent.clear();
        self.pending.clear();
    }
}

impl GrantCache {
    pub fn new(max_age: Duration, capacity: usize, counters: CacheCounters) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_age,
            capacity,
            absent_capacity: capacity.div_ceil(4),
            live: AtomicBool::new(false),
            counters,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only maps behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the database said at most `max_age` ago — the grant, judged
    /// against the database's clock now, or `None` for a token it has no
    /// grant for; or, on a miss, a ticket to hand to [`Self::fill`] after
    /// reading the database (`None` when nothing may be cached now).
    pub fn get(&self, hash: &TokenHash) -> Result<Option<Lookup>, Option<Ticket>> {
        let found = self.lookup(hash);
        match found {
            Ok(_) => self.counters.hits.inc(),
            Err(_) => self.counters.misses.inc(),
        };
        found
    }

    fn lookup(&self, hash: &TokenHash) -> Result<Option<Lookup>, Option<Ticket>> {
        if self.capacity == 0 || !self.live.load(Ordering::Acquire) {
            return Err(None);
        }
        let mut state = self.state();
        if let Some(entry) = state.ready.get(hash) {
            let age = entry.fetched.elapsed();
            if age <= self.max_age {
                let now = entry.db_now + micros(age);
                return Ok(Some(Lookup {
                    grant: entry.grant.clone(),
                    expired: entry.grant.expires_at <= now,
                    now,
                }));
            }
        }
        if let Some(read) = state.absent.get(hash)
            && read.elapsed() <= self.max_age
        {
            return Ok(None);
        }
        state.next_ticket += 1;
        let ticket = state.next_ticket;
        state.pending.insert(*hash, ticket);
        Err(Some(Ticket(ticket)))
    }

    /// Keeps what the fetch holding `ticket` read (`None`: no such grant),
    /// unless the grant was invalidated since.
    pub fn fill(&self, hash: TokenHash, lookup: Option<&Lookup>, ticket: Ticket) {
        self.fill_aged(hash, lookup, ticket, Duration::ZERO);
    }

    /// [`Self::fill`] with an answer that may already be `age` old (a
    /// standby's): it is kept for only what is left of `max_age`, so that
    /// an answer from memory is never older than that in all.
    pub fn fill_aged(
        &self,
        hash: TokenHash,
        lookup: Option<&Lookup>,
        ticket: Ticket,
        age: Duration,
    ) {
        let mut state = self.state();
        if state.pending.get(&hash) != Some(&ticket.0) {
            return;
        }
        state.forget(&hash);
        let Some(fetched) = Instant::now().checked_sub(age) else {
            return;
        };
        match lookup {
            Some(lookup) => {
                if let Some(dropped) = make_room(&mut state.ready, self.capacity) {
                    state.ids.remove(&dropped.grant.grant_id);
                }
                let entry = Entry {
                    grant: lookup.grant.clone(),
                    db_now: lookup.now,
                    fetched,
                };
                state.ids.insert(entry.grant.grant_id.clone(), hash);
                state.ready.insert(hash, entry);
            }
            None => {
                make_room(&mut state.absent, self.absent_capacity);
                state.absent.insert(hash, fetched);
            }
        }
    }

    /// Gives up the slot of a fetch that failed.
    pub fn abandon(&self, hash: &TokenHash, ticket: Ticket) {
        let mut state = self.state();
        if state.pending.get(hash) == Some(&ticket.0) {
            state.pending.remove(hash);
        }
    }

    /// Records `last_used_at` writes, so that cached hits do not note
    /// the same uses again.
    pub fn touched(&self, touches: &[(String, Micros)]) {
        let mut state = self.state();
        let State { ready, ids, .. } = &mut *state;
        for (grant_id, at) in touches {
            if let Some(entry) = ids.get(grant_id).and_then(|hash| ready.get_mut(hash)) {
                entry.grant.last_used_at = Some(*at);
            }
        }
    }

    pub fn invalidate(&self, hash: &TokenHash) {
        self.counters.invalidations.inc();
        self.state().forget(hash);
    }

    /// Forgets one grant by id (a claim, a rotation). A grant not held may
    /// still be read by a fetch under way, whose token is not known here:
    /// then every fetch under way is forgotten.
    pub fn invalidate_grant(&self, grant_id: &str) {
        self.counters.invalidations.inc();
        let mut state = self.state();
        match state.ids.get(grant_id).copied() {
            Some(hash) => state.forget(&hash),
            None => state.pending.clear(),
        }
    }

    /// Forgets every grant `matches` selects (a revoke by run or subject),
    /// and every fetch under way, whose grant is not known yet.
    pub fn invalidate_matching(&self, matches: impl Fn(&Grant) -> bool) {
        self.counters.invalidations.inc();
        let mut state = self.state();
        let State { ready, ids, .. } = &mut *state;
        ready.retain(|_, entry| !matches(&entry.grant));
        ids.retain(|_, hash| ready.contains_key(hash));
        state.pending.clear();
    }

    pub fn apply(&self, event: Invalidation) {
        match event {
            Invalidation::Grant(hash) => self.invalidate(&hash),
            Invalidation::Lost => {
                self.live.store(false, Ordering::Release);
                self.state().clear();
            }
            Invalidation::Resumed => {
                // Fetches that started while deaf must not be kept.
                self.state().clear();
                self.live.store(true, Ordering::Release);
            }
        }
    }

    /// Grants and absent tokens held.
    pub fn len(&self) -> usize {
        let state = self.state();
        state.ready.len() + state.absent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
