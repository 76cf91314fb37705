//! The storage contract, one suite run against every implementation.

use std::{collections::BTreeMap, time::Duration};

use tessera::{
    grant::RevokeReason,
    store::{Invalidation, Keyed, ListQuery, NewGrant, RevokeTarget, Store},
    token::{GrantId, Token},
};

use crate::support::{AnyStore, PATIENCE, with_store};

crate::both_backends!(
    run: super::with_store;
    migrations_are_idempotent,
    insert_then_find_round_trips,
    consume_is_a_compare_and_set,
    revoke_hits_live_grants_of_the_issuer,
    list_orders_filters_and_counts,
    sweep_deletes_only_past_retention,
    touch_writes_at_most_once_per_interval,
    listen_announces_grants_ended_early,
    a_claim_key_consumes_once_and_replays_after,
    find_keyed_reports_the_claim_a_key_made,
    replays_are_counted_per_grant,
);

const HOUR: Duration = Duration::from_secs(3600);

fn new_grant(issuer: &str, run: &str, max_uses: u32, ttl: Duration) -> (Token, NewGrant) {
    let token = Token::generate();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let grant = NewGrant {
        grant_id: GrantId::generate(millis),
        token_hash: token.hash(),
        token_hint: token.hint().to_owned(),
        subject: "alice".into(),
        audience: vec!["proxy".into()],
        run_id: run.into(),
        scopes: vec!["tool:*".into()],
        labels: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        max_uses,
        issued_by: issuer.into(),
        ttl,
        revoke_run_on_replay: false,
        sealed_payload: vec![1, 2, 3],
        payload_credential: None,
    };
    (token, grant)
}

async fn migrations_are_idempotent(store: AnyStore) {
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

async fn insert_then_find_round_trips(store: AnyStore) {
    let (token, new) = new_grant("minter", "run", 3, HOUR);
    let stored = store.insert(&new).await.unwrap();
    assert_eq!(stored.grant_id, new.grant_id);
    assert_eq!((stored.max_uses, stored.use_count), (3, 0));
    assert_eq!(stored.expires_at - stored.issued_at, 3_600_000_000);
    assert_eq!(stored.labels, new.labels);
    let found = store.find(&token.hash()).await.unwrap().unwrap();
    assert_eq!(found.grant, stored);
    assert!(!found.expired);
    assert!(found.now >= stored.issued_at);
    assert!(
        store
            .find(&Token::generate().hash())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.get(&new.grant_id, None).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(
        store.get(&new.grant_id, Some("minter")).await.unwrap(),
        Some(stored)
    );
    assert_eq!(store.get(&new.grant_id, Some("other")).await.unwrap(), None);
    // The token hash is unique.
    let mut twin = new_grant("minter", "run", 1, HOUR).1;
    twin.token_hash = token.hash();
    assert!(store.insert(&twin).await.is_err());
}

async fn consume_is_a_compare_and_set(store: AnyStore) {
    let (_, two) = new_grant("m", "r", 2, HOUR);
    store.insert(&two).await.unwrap();
    let (first, sealed) = store.consume(&two.grant_id).await.unwrap().unwrap();
    assert_eq!((first.use_count, sealed), (1, vec![1, 2, 3]));
    assert_eq!(
        store
            .consume(&two.grant_id)
            .await
            .unwrap()
            .unwrap()
            .0
            .use_count,
        2
    );
    assert!(store.consume(&two.grant_id).await.unwrap().is_none());

    let (_, revoked) = new_grant("m", "r", 0, HOUR);
    store.insert(&revoked).await.unwrap();
    store
        .revoke(
            &RevokeTarget::GrantId(revoked.grant_id.clone()),
            None,
            RevokeReason::Manual,
        )
        .await
        .unwrap();
    assert!(store.consume(&revoked.grant_id).await.unwrap().is_none());

    let (_, expiring) = new_grant("m", "r", 0, Duration::from_millis(50));
    store.insert(&expiring).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(store.consume(&expiring.grant_id).await.unwrap().is_none());
    assert!(
        store
            .consume("grt_0000000000000000000000")
            .await
            .unwrap()
            .is_none()
    );
}

async fn revoke_hits_live_grants_of_the_issuer(store: AnyStore) {
    let (t1, a) = new_grant("m", "run-1", 0, HOUR);
    let (_, b) = new_grant("m", "run-1", 0, HOUR);
    let (_, c) = new_grant("other", "run-1", 0, HOUR);
    for g in [&a, &b, &c] {
        store.insert(g).await.unwrap();
    }
    let run = RevokeTarget::RunId("run-1".into());
    assert_eq!(
        store
            .revoke(
                &RevokeTarget::Token(t1.hash()),
                Some("other"),
                RevokeReason::Manual
            )
            .await
            .unwrap()
            .count,
        0
    );
    assert_eq!(
        store
            .revoke(&run, Some("m"), RevokeReason::RunEnded)
            .await
            .unwrap()
            .count,
        2
    );
    assert_eq!(
        store
            .revoke(&run, Some("m"), RevokeReason::RunEnded)
            .await
            .unwrap()
            .count,
        0
    );
    let revoked = store.get(&a.grant_id, None).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.revoke_reason, Some(RevokeReason::RunEnded));
    assert_eq!(
        store
            .revoke(
                &RevokeTarget::Subject("alice".into()),
                None,
                RevokeReason::SubjectDisabled
            )
            .await
            .unwrap()
            .count,
        1
    );
    assert_eq!(
        store
            .get(&c.grant_id, None)
            .await
            .unwrap()
            .unwrap()
            .revoke_reason,
        Some(RevokeReason::SubjectDisabled)
    );
}

async fn list_orders_filters_and_counts(store: AnyStore) {
    let mut ids = Vec::new();
    for i in 0..4 {
        let (_, g) = new_grant(if i == 3 { "other" } else { "m" }, "run", 1, HOUR);
        store.insert(&g).await.unwrap();
        ids.push(g.grant_id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    store.consume(&ids[0]).await.unwrap().unwrap();
    let query = |include_inactive, after: Option<&str>, limit| ListQuery {
        run_id: Some("run".into()),
        issued_by: Some("m".into()),
        include_inactive,
        after: after.map(str::to_owned),
        limit,
        ..ListQuery::default()
    };
    let live = store.list(&query(false, None, 10)).await.unwrap();
    assert_eq!(live.active_count, 2);
    let got: Vec<_> = live.grants.iter().map(|g| &g.grant_id).collect();
    assert_eq!(got, [&ids[1], &ids[2]]);
    let all = store.list(&query(true, None, 2)).await.unwrap();
    assert_eq!(
        all.grants.iter().map(|g| &g.grant_id).collect::<Vec<_>>(),
        [&ids[0], &ids[1]]
    );
    let rest = store.list(&query(true, Some(&ids[1]), 2)).await.unwrap();
    assert_eq!(
        rest.grants.iter().map(|g| &g.grant_id).collect::<Vec<_>>(),
        [&ids[2]]
    );
    let everyone = store
        .list(&ListQuery {
            limit: 10,
            include_inactive: true,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((everyone.grants.len(), everyone.active_count), (4, 3));
}

async fn sweep_deletes_only_past_retention(store: AnyStore) {
    let (_, expired) = new_grant("m", "r", 0, Duration::from_millis(10));
    let (_, used) = new_grant("m", "r", 1, HOUR);
    let (_, revoked) = new_grant("m", "r", 0, HOUR);
    let (_, live) = new_grant("m", "r", 2, HOUR);
    for g in [&expired, &used, &revoked, &live] {
        store.insert(g).await.unwrap();
    }
    store.consume(&used.grant_id).await.unwrap().unwrap();
    store.consume(&live.grant_id).await.unwrap().unwrap();
    store
        .revoke(
            &RevokeTarget::GrantId(revoked.grant_id.clone()),
            None,
            RevokeReason::Manual,
        )
        .await
        .unwrap();
    assert_eq!(
        store.sweep(HOUR, 100).await.unwrap(),
        0,
        "nothing is past an hour's retention"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Batches: one row per statement until none is left.
    let mut deleted = 0;
    loop {
        let n = store.sweep(Duration::from_millis(20), 1).await.unwrap();
        assert!(n <= 1);
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, 3);
    assert!(store.get(&live.grant_id, None).await.unwrap().is_some());
}

async fn touch_writes_at_most_once_per_interval(store: AnyStore) {
    let (token, g) = new_grant("m", "r", 0, HOUR);
    let (_, other) = new_grant("m", "r", 0, HOUR);
    store.insert(&g).await.unwrap();
    store.insert(&other).await.unwrap();
    let minute = 60_000_000;
    let t0 = store.find(&token.hash()).await.unwrap().unwrap().now;
    let touch = |batch: &[(&String, i64)]| {
        let batch: Vec<(String, i64)> = batch.iter().map(|(id, at)| ((*id).clone(), *at)).collect();
        let store = store.clone();
        async move { store.touch(&batch).await.unwrap() }
    };
    let last_used = |id: &String| {
        let (store, id) = (store.clone(), id.clone());
        async move { store.get(&id, None).await.unwrap().unwrap().last_used_at }
    };
    // One statement for a batch of grants.
    touch(&[(&g.grant_id, t0), (&other.grant_id, t0 + 5)]).await;
    assert_eq!(last_used(&g.grant_id).await, Some(t0));
    assert_eq!(last_used(&other.grant_id).await, Some(t0 + 5));
    touch(&[(&g.grant_id, t0 + minute - 1)]).await;
    assert_eq!(
        last_used(&g.grant_id).await,
        Some(t0),
        "within the interval: no write"
    );
    touch(&[(&g.grant_id, t0 + minute + 1)]).await;
    assert_eq!(last_used(&g.grant_id).await, Some(t0 + minute + 1));
    touch(&[]).await;
}

async fn listen_announces_grants_ended_early(store: AnyStore) {
    // SQLite opts out of announcing: one process owns the file, and its
    // authority invalidates its own cache directly.
    let announces = matches!(store, AnyStore::Pg(_));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .listen(move |event| {
                    let _ = tx.send(event);
                })
                .await
        })
    };
    assert_eq!(next(&mut rx).await, Some(Invalidation::Resumed));

    let (revoked_token, revoked) = new_grant("m", "r", 0, HOUR);
    let (used_token, used) = new_grant("m", "r", 2, HOUR);
    for g in [&revoked, &used] {
        store.insert(g).await.unwrap();
    }
    store.consume(&used.grant_id).await.unwrap().unwrap(); // not the last use: no news
    store
        .revoke(
            &RevokeTarget::GrantId(revoked.grant_id.clone()),
            None,
            RevokeReason::Manual,
        )
        .await
        .unwrap();
    store.consume(&used.grant_id).await.unwrap().unwrap(); // the last use
    if announces {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            // Other tests share the channel; keep only this test's grants.
            match next(&mut rx).await.expect("announced") {
                Invalidation::Grant(h) if h == revoked_token.hash() || h == used_token.hash() => {
                    seen.push(h)
                }
                _ => {}
            }
        }
        assert_eq!(
            seen,
            [revoked_token.hash(), used_token.hash()],
            "in commit order, once each"
        );
    }
    listener.abort();
}

/// The next event, or None once [`PATIENCE`] has run out.
async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Invalidation>) -> Option<Invalidation> {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .ok()
        .flatten()
}

async fn a_claim_key_consumes_once_and_replays_after(store: AnyStore) {
    let (_, g) = new_grant("m", "r", 2, HOUR);
    store.insert(&g).await.unwrap();
    let key = [7u8; 32];
    let Keyed::Consumed(first, sealed) = store
        .consume_keyed(&g.grant_id, "proxy", &key)
        .await
        .unwrap()
    else {
        panic!("the first keyed claim consumes");
    };
    assert_eq!((first.use_count, sealed.as_slice()), (1, &[1u8, 2, 3][..]));
    // A plain claim takes the second, last use.
    assert_eq!(
        store
            .consume(&g.grant_id)
            .await
            .unwrap()
            .unwrap()
            .0
            .use_count,
        2
    );
    // The same key again: the original claim, nothing consumed, though used up.
    let Keyed::Replayed(again, sealed) = store
        .consume_keyed(&g.grant_id, "proxy", &key)
        .await
        .unwrap()
    else {
        panic!("a repeated key replays");
    };
    assert_eq!(
        (again.use_count, again.last_used_at),
        (1, first.last_used_at)
    );
    assert_eq!(sealed, vec![1, 2, 3]);
    // Another client, or another key: a new claim, refused (no use left),
    // and the refused key is not kept.
    assert!(matches!(
        store
            .consume_keyed(&g.grant_id, "other", &key)
            .await
            .unwrap(),
        Keyed::Refused
    ));
    assert!(matches!(
        store
            .consume_keyed(&g.grant_id, "proxy", &[8; 32])
            .await
            .unwrap(),
        Keyed::Refused
    ));
    store
        .revoke(
            &RevokeTarget::GrantId(g.grant_id.clone()),
            None,
            RevokeReason::Manual,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .consume_keyed(&g.grant_id, "proxy", &key)
            .await
            .unwrap(),
        Keyed::Replayed(..)
    ));
    // Keys live as long as their grant.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.sweep(Duration::from_millis(1), 100).await.unwrap(), 1);
    assert!(matches!(
        store.consume_keyed(&g.grant_id, "proxy", &key).await,
        Err(_) | Ok(Keyed::Refused)
    ));
}

/// One lookup tells a keyed claim whether it is a retry: the grant, and the
/// claim this client made with this key, if any, whatever the grant's state.
async fn find_keyed_reports_the_claim_a_key_made(store: AnyStore) {
    let (token, g) = new_grant("m", "r", 2, HOUR);
    store.insert(&g).await.unwrap();
    let hash = token.hash();
    let key = [7u8; 32];
    let (lookup, prior) = store
        .find_keyed(&hash, "proxy", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lookup.grant.grant_id, g.grant_id);
    assert!(prior.is_none(), "no claim yet");
    let Keyed::Consumed(claimed, _) = store
        .consume_keyed(&g.grant_id, "proxy", &key)
        .await
        .unwrap()
    else {
        panic!("the keyed claim consumes");
    };
    store
        .revoke(
            &RevokeTarget::GrantId(g.grant_id.clone()),
            None,
            RevokeReason::Manual,
        )
        .await
        .unwrap();
    let (lookup, prior) = store
        .find_keyed(&hash, "proxy", &key)
        .await
        .unwrap()
        .unwrap();
    let prior = prior.expect("the claim this key made");
    assert_eq!(
        (prior.use_count, Some(prior.claimed_at)),
        (1, claimed.last_used_at)
    );
    assert_eq!(prior.sealed_payload, vec![1, 2, 3]);
    assert!(lookup.grant.revoked_at.is_some(), "the grant as it is now");
    for (client, key) in [("other", key), ("proxy", [8u8; 32])] {
        let (_, prior) = store
            .find_keyed(&hash, client, &key)
            .await
            .unwrap()
            .unwrap();
        assert!(
            prior.is_none(),
            "{client}: another client or key made no claim"
        );
    }
    let never = Token::generate().hash();
    assert!(
        store
            .find_keyed(&never, "proxy", &key)
            .await
            .unwrap()
            .is_none()
    );
}

/// Each grant counts its own replays, in its row: concurrent counts are
/// exact and distinct, and counting changes nothing else about the grant.
async fn replays_are_counted_per_grant(store: AnyStore) {
    let (_, one) = new_grant("m", "r", 1, HOUR);
    let (_, other) = new_grant("m", "r", 1, HOUR);
    let one_stored = store.insert(&one).await.unwrap();
    store.insert(&other).await.unwrap();
    assert_eq!(store.count_replay(&one.grant_id).await.unwrap(), Some(1));
    assert_eq!(store.count_replay(&one.grant_id).await.unwrap(), Some(2));
    assert_eq!(store.count_replay(&other.grant_id).await.unwrap(), Some(1));
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, id) = (store.clone(), one.grant_id.clone());
        racing.spawn(async move { store.count_replay(&id).await.unwrap().unwrap() });
    }
    let mut counts = racing.join_all().await;
    counts.sort_unstable();
    assert_eq!(counts, (3..=10).collect::<Vec<_>>());
    let unknown = store.count_replay("grt_0000000000000000000000").await;
    assert_eq!(unknown.unwrap(), None);
    assert_eq!(
        store.get(&one.grant_id, None).await.unwrap(),
        Some(one_stored)
    );
}
