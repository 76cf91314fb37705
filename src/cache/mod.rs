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
    metrics::CacheCounters,
    store::{Grant, Invalidation, Lookup, Micros, micros},
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
        let mut state = self.state();
        if state.pending.get(&hash) != Some(&ticket.0) {
            return;
        }
        state.forget(&hash);
        match lookup {
            Some(lookup) => {
                if let Some(dropped) = make_room(&mut state.ready, self.capacity) {
                    state.ids.remove(&dropped.grant.grant_id);
                }
                let entry = Entry {
                    grant: lookup.grant.clone(),
                    db_now: lookup.now,
                    fetched: Instant::now(),
                };
                state.ids.insert(entry.grant.grant_id.clone(), hash);
                state.ready.insert(hash, entry);
            }
            None => {
                make_room(&mut state.absent, self.absent_capacity);
                state.absent.insert(hash, Instant::now());
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

    /// Forgets one grant by id (a claim, a rotation), and every fetch
    /// under way: their grants are not known yet, and one of them may be
    /// reading this grant as it was before the change.
    pub fn invalidate_grant(&self, grant_id: &str) {
        self.counters.invalidations.inc();
        let mut state = self.state();
        if let Some(hash) = state.ids.get(grant_id).copied() {
            state.forget(&hash);
        }
        state.pending.clear();
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
                revoke_reason: None,
                last_used_at: None,
                revoke_run_on_replay: false,
                ..Grant::default()
            },
            expired: false,
            now,
        }
    }

    fn live_cache(max_age: Duration, capacity: usize) -> GrantCache {
        let cache = GrantCache::new(max_age, capacity, CacheCounters::default());
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
        let cache = GrantCache::new(Duration::from_secs(60), 10, CacheCounters::default());
        assert!(
            matches!(cache.get(&hash), Err(None)),
            "not live yet: no ticket"
        );
        cache.apply(Invalidation::Resumed);
        load(&cache, hash, &lookup(i64::MAX, 0));
        assert!(matches!(cache.get(&hash), Ok(Some(_))));
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
        assert!(
            matches!(cache.get(&other), Ok(Some(_))),
            "other grants are unaffected"
        );
    }

    #[test]
    fn expiry_follows_the_database_clock() {
        let hash = Token::generate().hash();
        let cache = live_cache(Duration::from_secs(60), 10);
        // Read at database time 1_000_000; expires 30 ms later.
        load(&cache, hash, &lookup(1_030_000, 1_000_000));
        assert!(!cache.get(&hash).unwrap().unwrap().expired);
        std::thread::sleep(Duration::from_millis(40));
        let later = cache.get(&hash).unwrap().unwrap();
        assert!(later.expired);
        assert!(later.now >= 1_040_000);
    }

    #[test]
    fn absent_tokens_are_remembered_apart_from_grants() {
        let cache = live_cache(Duration::from_secs(60), 8);
        let live = Token::generate().hash();
        load(&cache, live, &lookup(i64::MAX, 0));
        // A flood of made-up tokens: each is answered from memory the
        // second time, and none pushes the live grant out.
        let made_up: Vec<_> = (0..100).map(|_| Token::generate().hash()).collect();
        for hash in &made_up {
            let ticket = cache.get(hash).err().flatten().expect("a miss");
            cache.fill(*hash, None, ticket);
            assert!(matches!(cache.get(hash), Ok(None)), "absent, from memory");
        }
        assert!(matches!(cache.get(&live), Ok(Some(_))), "the grant stays");
        assert_eq!(cache.len(), 1 + 2, "a quarter of 8 for absent tokens");

        let short = live_cache(Duration::from_millis(10), 8);
        let ticket = short.get(&made_up[0]).err().flatten().unwrap();
        short.fill(made_up[0], None, ticket);
        std::thread::sleep(Duration::from_millis(20));
        assert!(short.get(&made_up[0]).is_err(), "older than max_age");
        let ticket = short.get(&made_up[1]).err().flatten().unwrap();
        short.abandon(&made_up[1], ticket);
        short.fill(made_up[1], None, ticket);
        assert!(
            short.get(&made_up[1]).is_err(),
            "an abandoned fetch fills nothing"
        );
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
