//! The cache's own rules: what it answers, what it forgets, and when.

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
    // Read at database time 1_000_000; expires a second later (slack for
    // the next line on a busy machine).
    load(&cache, hash, &lookup(2_000_000, 1_000_000));
    assert!(!cache.get(&hash).unwrap().unwrap().expired);
    std::thread::sleep(Duration::from_millis(1_010));
    let later = cache.get(&hash).unwrap().unwrap();
    assert!(later.expired);
    assert!(later.now >= 2_010_000);
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

/// A claim or a rotation names the grant, not its token: a held grant is
/// forgotten by id and other fetches under way are kept; a grant not held
/// may be what a fetch under way is reading, so every such fetch is dropped.
#[test]
fn a_grant_is_forgotten_by_id() {
    let cache = live_cache(Duration::from_secs(60), 10);
    let (held, fetching) = (Token::generate().hash(), Token::generate().hash());
    load(&cache, held, &lookup(i64::MAX, 0));
    let ticket = cache.get(&fetching).err().flatten().expect("a ticket");

    cache.invalidate_grant("grt_x");
    assert!(cache.get(&held).is_err(), "the held grant is forgotten");
    let mut read = lookup(i64::MAX, 0);
    read.grant.grant_id = "grt_y".into();
    cache.fill(fetching, Some(&read), ticket);
    assert!(
        matches!(cache.get(&fetching), Ok(Some(_))),
        "the other fetch is kept"
    );

    let other = Token::generate().hash();
    let ticket = cache.get(&other).err().flatten().expect("a ticket");
    cache.invalidate_grant("grt_not_held");
    cache.fill(other, Some(&read), ticket);
    assert!(
        cache.get(&other).is_err(),
        "a fetch that may have raced is dropped"
    );
}
