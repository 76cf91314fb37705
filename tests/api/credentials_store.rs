//! The credentials storage contract, run against both stores.

use std::time::Duration;

use tessera::store::{
    CredentialStore,
    credentials::{Resealable, SealChecks, Sealed, Slot},
};

use crate::support::{AnyStore, with_store};

crate::both_backends!(
    run: super::with_store;
    create_is_insert_if_absent_and_replace_a_compare_and_set,
    one_lease_at_a_time_until_it_expires,
    completion_needs_the_live_lease_on_its_version,
    a_replace_releases_the_lease,
    lists_and_deletes_within_one_client_and_bearer,
    stale_seals_page_through_other_keys,
    seal_key_checks_are_written_once,
);

fn slot(client: &str, bearer: &str, name: &str) -> Slot {
    Slot {
        client_id: client.into(),
        bearer_id: bearer.into(),
        name: name.into(),
    }
}

fn sealed(key_id: &str, bytes: &[u8]) -> Sealed {
    Sealed {
        key_id: key_id.into(),
        bytes: bytes.to_vec(),
    }
}

const LEASE_A: &str = "lse_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LEASE_B: &str = "lse_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn create_is_insert_if_absent_and_replace_a_compare_and_set(store: AnyStore) {
    let s = slot("c", "b", "n");
    assert_eq!(store.version(&s).await.unwrap(), None);
    assert!(store.read(&s).await.unwrap().is_none());
    assert!(
        store
            .create(&s, &sealed("k1", b"one"), Some(42))
            .await
            .unwrap()
    );
    assert!(!store.create(&s, &sealed("k1", b"two"), None).await.unwrap());
    assert!(
        !store
            .replace(&s, 2, &sealed("k1", b"two"), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .replace(&s, 1, &sealed("k2", b"two"), None)
            .await
            .unwrap()
    );
    let stored = store.read(&s).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.sealed, sealed("k2", b"two"));
    assert_eq!(stored.expires_at, None);
    assert!(
        stored.now > 1_600_000_000_000_000,
        "the database's clock, in µs"
    );
    assert_eq!(store.version(&s).await.unwrap(), Some(2));
    // Another client's or bearer's slot is another row.
    assert!(store.read(&slot("d", "b", "n")).await.unwrap().is_none());
    assert!(
        store
            .create(&slot("d", "b", "n"), &sealed("k1", b"x"), None)
            .await
            .unwrap()
    );
}

async fn one_lease_at_a_time_until_it_expires(store: AnyStore) {
    let s = slot("c", "b", "n");
    // 3 s: slack for the calls that must come while the first lease holds.
    let ttl = Duration::from_secs(3);
    assert_eq!(
        store.take_lease(&s, LEASE_A, ttl).await.unwrap(),
        None,
        "no credential"
    );
    assert_eq!(store.lease_state(&s).await.unwrap(), None);
    store.create(&s, &sealed("k1", b"one"), None).await.unwrap();
    let first = store.take_lease(&s, LEASE_A, ttl).await.unwrap().unwrap();
    assert_eq!((first.version, first.fence), (1, 1));
    assert_eq!(store.take_lease(&s, LEASE_B, ttl).await.unwrap(), None);
    let state = store.lease_state(&s).await.unwrap().unwrap();
    assert_eq!(state.lease_expires_at, Some(first.expires_at));
    assert!(first.expires_at > state.now);
    let leased = store.leased("c", LEASE_A).await.unwrap().unwrap();
    assert_eq!((leased.slot, leased.version), (s.clone(), 1));
    assert_eq!(store.leased("other", LEASE_A).await.unwrap(), None);
    // The lease ran from before its answer came.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let second = store.take_lease(&s, LEASE_B, ttl).await.unwrap().unwrap();
    assert_eq!(second.fence, 2);
    assert_eq!(store.leased("c", LEASE_A).await.unwrap(), None);
    assert!(!store.release("other", LEASE_B).await.unwrap());
    assert!(store.release("c", LEASE_B).await.unwrap());
    assert!(!store.release("c", LEASE_B).await.unwrap());
    let state = store.lease_state(&s).await.unwrap().unwrap();
    assert_eq!(state.lease_expires_at, None);
    assert_eq!(
        store
            .take_lease(&s, LEASE_A, ttl)
            .await
            .unwrap()
            .unwrap()
            .fence,
        3
    );
}

async fn completion_needs_the_live_lease_on_its_version(store: AnyStore) {
    let s = slot("c", "b", "n");
    store.create(&s, &sealed("k1", b"one"), None).await.unwrap();
    store
        .take_lease(&s, LEASE_A, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let new = sealed("k1", b"two");
    assert!(
        !store
            .complete("other", LEASE_A, 1, &new, Some(7))
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete("c", LEASE_A, 2, &new, Some(7))
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete("c", LEASE_B, 1, &new, Some(7))
            .await
            .unwrap()
    );
    assert_eq!(store.version(&s).await.unwrap(), Some(1));
    assert!(
        store
            .complete("c", LEASE_A, 1, &new, Some(7))
            .await
            .unwrap()
    );
    let stored = store.read(&s).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.expires_at), (2, Some(7)));
    assert_eq!(stored.sealed, new);
    assert!(
        !store.complete("c", LEASE_A, 2, &new, None).await.unwrap(),
        "spent"
    );
    // An expired lease completes nothing.
    store
        .take_lease(&s, LEASE_B, Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!store.complete("c", LEASE_B, 2, &new, None).await.unwrap());
    assert!(!store.release("c", LEASE_B).await.unwrap());
    assert_eq!(store.version(&s).await.unwrap(), Some(2));
}

async fn a_replace_releases_the_lease(store: AnyStore) {
    let s = slot("c", "b", "n");
    store.create(&s, &sealed("k1", b"one"), None).await.unwrap();
    store
        .take_lease(&s, LEASE_A, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .replace(&s, 1, &sealed("k1", b"two"), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete("c", LEASE_A, 1, &sealed("k1", b"x"), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete("c", LEASE_A, 2, &sealed("k1", b"x"), None)
            .await
            .unwrap()
    );
    let next = store
        .take_lease(&s, LEASE_B, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.version, next.fence), (2, 2), "the fence keeps rising");
}

async fn lists_and_deletes_within_one_client_and_bearer(store: AnyStore) {
    for (client, bearer, name) in [
        ("c", "b", "y"),
        ("c", "b", "x"),
        ("c", "b", "z"),
        ("c", "o", "a"),
        ("d", "b", "a"),
    ] {
        store
            .create(&slot(client, bearer, name), &sealed("k1", b"s"), None)
            .await
            .unwrap();
    }
    let names = |page: Vec<tessera::store::credentials::Listed>| -> Vec<String> {
        page.into_iter().map(|l| l.name).collect()
    };
    assert_eq!(
        names(store.list("c", "b", "", 10).await.unwrap()),
        ["x", "y", "z"]
    );
    assert_eq!(
        names(store.list("c", "b", "", 2).await.unwrap()),
        ["x", "y"]
    );
    assert_eq!(names(store.list("c", "b", "y", 2).await.unwrap()), ["z"]);
    assert!(store.delete(&slot("c", "b", "y")).await.unwrap());
    assert!(!store.delete(&slot("c", "b", "y")).await.unwrap());
    assert_eq!(
        names(store.list("c", "b", "", 10).await.unwrap()),
        ["x", "z"]
    );
    assert_eq!(names(store.list("d", "b", "", 10).await.unwrap()), ["a"]);
}

async fn stale_seals_page_through_other_keys(store: AnyStore) {
    for (client, key) in [("a", "k1"), ("b", "k2"), ("c", "k1"), ("d", "k0")] {
        store
            .create(&slot(client, "b", "n"), &sealed(key, b"s"), None)
            .await
            .unwrap();
    }
    let start = slot("", "", "");
    let page = store.stale_seals("k2", &start, 2).await.unwrap();
    let clients: Vec<_> = page.iter().map(|r| r.slot.client_id.as_str()).collect();
    assert_eq!(clients, ["a", "c"]);
    let rest = store.stale_seals("k2", &page[1].slot, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].sealed.key_id, "k0");
    let row: &Resealable = &page[0];
    assert!(store.reseal(row, &sealed("k2", b"t")).await.unwrap());
    assert!(
        !store.reseal(row, &sealed("k2", b"u")).await.unwrap(),
        "changed since read"
    );
    let stored = store.read(&row.slot).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.sealed), (1, sealed("k2", b"t")));
    assert_eq!(store.stale_seals("k2", &start, 10).await.unwrap().len(), 2);
}

async fn seal_key_checks_are_written_once(store: AnyStore) {
    assert_eq!(store.key_check("k1").await.unwrap(), None);
    assert!(store.add_key_check("k1", b"first").await.unwrap());
    assert!(
        !store.add_key_check("k1", b"second").await.unwrap(),
        "a check is never replaced"
    );
    assert_eq!(
        store.key_check("k1").await.unwrap(),
        Some(b"first".to_vec())
    );
    for (client, key) in [("a", "k1"), ("b", "k2"), ("c", "k1")] {
        store
            .create(&slot(client, "b", "n"), &sealed(key, b"s"), None)
            .await
            .unwrap();
    }
    assert_eq!(store.count_stale_seals("k2").await.unwrap(), 2);
    assert_eq!(store.count_stale_seals("k1").await.unwrap(), 1);
    let under = store.sealed_under("k1", 10).await.unwrap();
    let clients: Vec<_> = under.iter().map(|r| r.slot.client_id.as_str()).collect();
    assert_eq!(clients, ["a", "c"], "least recently written first");
    assert_eq!(under[0].sealed, sealed("k1", b"s"));
    assert_eq!(under[0].version, 1);
    assert_eq!(store.sealed_under("k1", 1).await.unwrap().len(), 1);
}
