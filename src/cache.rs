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

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    store::{Grant, Lookup, Micros, micros},
    token::TokenHash,
};

/// What the store's listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// This grant changed: forget it.
    Grant(TokenHash),
    /// Invalidations may have been missed from now on: forget everything
    /// and answer nothing until `Resumed`.
    Lost,
    /// Invalidations are being received again.
    Resumed,
}

pub struct GrantCache {
    state: Mutex<State>,
    max_age: Duration,
    capacity: usize,
    live: AtomicBool,
}

#[derive(Default)]
struct State {
    slots: HashMap<TokenHash, Slot>,
    next_ticket: u64,
}

enum Slot {
    /// A fetch is under way; only the fetch holding this ticket may fill
    /// the slot, and any invalidation in between empties it, so a fetch
    /// that raced a change (and may hold the row as it was) is not kept.
    Pending(u64),
    Ready(Box<Entry>),
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

impl GrantCache {
    pub fn new(max_age: Duration, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_age,
            capacity,
            live: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only a map behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The grant as of at most `max_age` ago, judged against the database's
    /// clock now; or, on a miss, a ticket to hand to [`Self::fill`] after
    /// reading the database (`None` when nothing may be cached now).
    pub fn get(&self, hash: &TokenHash) -> Result<Lookup, Option<Ticket>> {
        if self.capacity == 0 || !self.live.load(Ordering::Acquire) {
            return Err(None);
        }
        let mut state = self.state();
        if let Some(Slot::Ready(entry)) = state.slots.get(hash) {
            let age = entry.fetched.elapsed();
            if age <= self.max_age {
                let now = entry.db_now + micros(age);
                return Ok(Lookup {
                    grant: entry.grant.clone(),
                    expired: entry.grant.expires_at <= now,
                    now,
                });
            }
        }
        if state.slots.len() >= self.capacity && !state.slots.contains_key(hash) {
            // Bounded memory: drop an arbitrary slot; it is only a cache.
            if let Some(victim) = state.slots.keys().next().copied() {
                state.slots.remove(&victim);
            }
        }
        state.next_ticket += 1;
        let ticket = state.next_ticket;
        state.slots.insert(*hash, Slot::Pending(ticket));
        Err(Some(Ticket(ticket)))
    }

    /// Keeps what the fetch holding `ticket` read (`None`: nothing found),
    /// unless the grant was invalidated since.
    pub fn fill(&self, hash: TokenHash, lookup: Option<&Lookup>, ticket: Ticket) {
        let mut state = self.state();
        if !matches!(state.slots.get(&hash), Some(Slot::Pending(t)) if *t == ticket.0) {
            return;
        }
        match lookup {
            Some(lookup) => {
                let entry = Entry {
                    grant: lookup.grant.clone(),
                    db_now: lookup.now,
                    fetched: Instant::now(),
                };
                state.slots.insert(hash, Slot::Ready(Box::new(entry)));
            }
            None => {
                state.slots.remove(&hash);
            }
        }
    }

    /// Records a `last_used_at` write, so that cached hits do not write again.
    pub fn touched(&self, hash: &TokenHash, at: Micros) {
        if let Some(Slot::Ready(entry)) = self.state().slots.get_mut(hash) {
            entry.grant.last_used_at = Some(at);
        }
    }

    pub fn invalidate(&self, hash: &TokenHash) {
        self.state().slots.remove(hash);
    }

    /// Forgets every grant `matches` selects (a revoke by run or subject),
    /// and every fetch under way, whose grant is not known yet.
    pub fn invalidate_matching(&self, matches: impl Fn(&Grant) -> bool) {
        self.state().slots.retain(|_, slot| match slot {
            Slot::Ready(entry) => !matches(&entry.grant),
            Slot::Pending(_) => false,
        });
    }

    pub fn apply(&self, event: Invalidation) {
        match event {
            Invalidation::Grant(hash) => self.invalidate(&hash),
            Invalidation::Lost => {
                self.live.store(false, Ordering::Release);
                self.state().slots.clear();
            }
            Invalidation::Resumed => {
                // Fetches that started while deaf must not be kept.
                self.state().slots.clear();
                self.live.store(true, Ordering::Release);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.state().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Token;

    fn lookup(expires_at: Micros, now: Micros) -> Lookup {
        Lookup {
            grant: Grant {
                grant_id: "grt_x".into(),
                token_hint: "tsr_abcd".into(),
                subject: "s".into(),
                audience: vec![],
                run_id: "run-1".into(),
                scopes: vec![],
                labels: Default::default(),
                max_uses: 0,
                use_count: 0,
                issued_by: "c".into(),
                issued_at: 0,
                expires_at,
                revoked_at: None,
                revoke_reason: 0,
                last_used_at: None,
                revoke_run_on_replay: false,
            },
            expired: false,
            now,
        }
    }

    fn live_cache(max_age: Duration, capacity: usize) -> GrantCache {
        let cache = GrantCache::new(max_age, capacity);
        cache.apply(Invalidation::Resumed);
        cache
    }

    /// A miss, then a fill with `lookup`.
    fn load(cache: &GrantCache, hash: TokenHash, lookup: &Lookup) {
        let ticket = cache
            .get(&hash)
            .err()
            .flatten()
            .expect("a miss with a ticket");
        cache.fill(hash, Some(lookup), ticket);
    }

    #[test]
    fn answers_only_while_live_and_fresh() {
        let hash = Token::generate().hash();
        let cache = GrantCache::new(Duration::from_secs(60), 10);
        assert!(
            matches!(cache.get(&hash), Err(None)),
            "not live yet: no ticket"
        );
        cache.apply(Invalidation::Resumed);
        load(&cache, hash, &lookup(i64::MAX, 0));
        assert!(cache.get(&hash).is_ok());
        cache.apply(Invalidation::Lost);
        assert!(cache.get(&hash).is_err());
        cache.apply(Invalidation::Resumed);
        assert!(cache.get(&hash).is_err(), "a loss forgets everything");

        let short = live_cache(Duration::from_millis(10), 10);
        load(&short, hash, &lookup(i64::MAX, 0));
        std::thread::sleep(Duration::from_millis(20));
        assert!(short.get(&hash).is_err(), "older than max_age");
    }

    #[test]
    fn a_fetch_that_raced_an_invalidation_is_not_kept() {
        let hash = Token::generate().hash();
        let other = Token::generate().hash();
        let cache = live_cache(Duration::from_secs(60), 10);
        let ticket = cache.get(&hash).err().flatten().unwrap();
        let other_ticket = cache.get(&other).err().flatten().unwrap();
        cache.apply(Invalidation::Grant(hash));
        cache.fill(hash, Some(&lookup(i64::MAX, 0)), ticket);
        assert!(cache.get(&hash).is_err(), "invalidated while fetching");
        cache.fill(other, Some(&lookup(i64::MAX, 0)), other_ticket);
        assert!(cache.get(&other).is_ok(), "other grants are unaffected");
    }

    #[test]
    fn expiry_follows_the_database_clock() {
        let hash = Token::generate().hash();
        let cache = live_cache(Duration::from_secs(60), 10);
        // Read at database time 1_000_000; expires 30 ms later.
        load(&cache, hash, &lookup(1_030_000, 1_000_000));
        assert!(!cache.get(&hash).unwrap().expired);
        std::thread::sleep(Duration::from_millis(40));
        let later = cache.get(&hash).unwrap();
        assert!(later.expired);
        assert!(later.now >= 1_040_000);
    }

    #[test]
    fn invalidation_and_capacity() {
        let cache = live_cache(Duration::from_secs(60), 2);
        let hashes: Vec<_> = (0..3).map(|_| Token::generate().hash()).collect();
        for hash in &hashes {
            load(&cache, *hash, &lookup(i64::MAX, 0));
        }
        assert_eq!(cache.len(), 2, "bounded");
        cache.invalidate_matching(|g| g.run_id == "run-1");
        assert!(cache.is_empty());
        load(&cache, hashes[0], &lookup(i64::MAX, 0));
        cache.invalidate(&hashes[0]);
        assert!(cache.get(&hashes[0]).is_err());
        assert!(
            live_cache(Duration::from_secs(1), 0)
                .get(&hashes[0])
                .is_err()
        );
    }
}
