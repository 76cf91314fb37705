//! The storage contract for the operations that read one grant or follow
//! its lineage (get, payload, rotate, delegate), run against both stores;
//! the rest is in `conformance.rs`.

use std::{collections::BTreeMap, time::Duration};

use tessera::{
    grant::{RevokeReason, micros},
    store::{Delegation, NewGrant, RevokeTarget, Rotation, Store},
    token::{GrantId, Token},
};

use crate::support::{AnyStore, with_store};

crate::both_backends!(
    run: super::with_store;
    get_finds_a_grant_by_id_for_its_issuer,
    payload_is_the_sealed_bytes,
    rotate_hands_the_uses_left_to_one_successor,
    delegate_takes_its_uses_from_a_live_parent,
);

const HOUR: Duration = Duration::from_secs(3600);

fn grant_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    GrantId::generate(millis)
}

fn new_grant(max_uses: u32) -> (Token, NewGrant) {
    let token = Token::generate();
    let grant = NewGrant {
        grant_id: grant_id(),
        token_hash: token.hash(),
        token_hint: token.hint().to_owned(),
        subject: "alice".into(),
        audience: vec!["proxy".into()],
        run_id: "run".into(),
        scopes: vec!["tool:*".into()],
        labels: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        max_uses,
        issued_by: "minter".into(),
        ttl: HOUR,
        revoke_run_on_replay: false,
        sealed_payload: vec![1, 2, 3],
        payload_credential: None,
    };
    (token, grant)
}

async fn get_finds_a_grant_by_id_for_its_issuer(store: AnyStore) {
    let (_, new) = new_grant(1);
    let stored = store.insert(&new).await.unwrap();
    let id = new.grant_id.as_str();
    assert_eq!(store.get(id, None).await.unwrap(), Some(stored.clone()));
    assert_eq!(store.get(id, Some("minter")).await.unwrap(), Some(stored));
    assert_eq!(store.get(id, Some("other")).await.unwrap(), None);
    assert_eq!(store.get(&grant_id(), None).await.unwrap(), None);
}

async fn payload_is_the_sealed_bytes(store: AnyStore) {
    let (_, new) = new_grant(1);
    store.insert(&new).await.unwrap();
    assert_eq!(
        store.payload(&new.grant_id).await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(store.payload(&grant_id()).await.unwrap(), None);
}

fn rotation(of: &str, issued_by: Option<&str>) -> (Token, Rotation) {
    let token = Token::generate();
    let rotation = Rotation {
        grant_id: of.to_owned(),
        issued_by: issued_by.map(str::to_owned),
        successor_id: grant_id(),
        token_hash: token.hash(),
        token_hint: token.hint().to_owned(),
        sealed_payload: vec![9],
        ttl: micros(HOUR),
        overlap: 0,
    };
    (token, rotation)
}

async fn rotate_hands_the_uses_left_to_one_successor(store: AnyStore) {
    let (_, new) = new_grant(3);
    store.insert(&new).await.unwrap();
    store.consume(&new.grant_id).await.unwrap().unwrap();
    let (_, foreign) = rotation(&new.grant_id, Some("other"));
    assert!(
        store.rotate(&foreign).await.unwrap().is_none(),
        "not its grant"
    );
    let (token, r) = rotation(&new.grant_id, Some("minter"));
    let rotated = store.rotate(&r).await.unwrap().unwrap();
    let (successor, predecessor) = (&rotated.successor, &rotated.predecessor);
    assert_eq!(successor.grant_id, r.successor_id);
    assert_eq!(
        successor.rotated_from.as_deref(),
        Some(new.grant_id.as_str())
    );
    assert_eq!((successor.max_uses, successor.use_count), (3, 1));
    assert_eq!(
        (successor.subject.as_str(), successor.run_id.as_str()),
        ("alice", "run")
    );
    assert_eq!(
        predecessor.rotated_to.as_deref(),
        Some(r.successor_id.as_str())
    );
    assert_eq!(predecessor.revoke_reason, Some(RevokeReason::Rotated));
    assert_eq!(
        predecessor.use_count, 3,
        "its uses left went to the successor"
    );
    assert!(rotated.descendants.is_empty());
    assert_eq!(store.payload(&r.successor_id).await.unwrap(), Some(vec![9]));
    let found = store.find(&token.hash()).await.unwrap().unwrap();
    assert_eq!(&found.grant, successor);
    let (_, again) = rotation(&new.grant_id, None);
    assert!(
        store.rotate(&again).await.unwrap().is_none(),
        "rotated once"
    );
}

fn delegation(parent: &str, max_uses: u32, ttl: Duration) -> (Token, Delegation) {
    let token = Token::generate();
    let child = Delegation {
        parent_grant_id: parent.to_owned(),
        grant_id: grant_id(),
        token_hash: token.hash(),
        token_hint: token.hint().to_owned(),
        audience: vec!["proxy".into()],
        scopes: vec!["tool:read".into()],
        labels: BTreeMap::new(),
        sealed_payload: vec![7],
        max_uses,
        issued_by: "minter".into(),
        ttl: micros(ttl),
    };
    (token, child)
}

async fn delegate_takes_its_uses_from_a_live_parent(store: AnyStore) {
    let (_, new) = new_grant(3);
    let parent = store.insert(&new).await.unwrap();
    let (token, d) = delegation(&parent.grant_id, 2, 2 * HOUR);
    let child = store.delegate(&d).await.unwrap().unwrap();
    assert_eq!(
        child.parent_grant_id.as_deref(),
        Some(parent.grant_id.as_str())
    );
    assert_eq!(child.depth, 1);
    assert_eq!(
        (child.subject.as_str(), child.run_id.as_str()),
        ("alice", "run")
    );
    assert_eq!(child.scopes, ["tool:read"]);
    assert_eq!((child.max_uses, child.use_count), (2, 0));
    assert!(
        child.expires_at <= parent.expires_at,
        "lives no longer than its parent"
    );
    let parent_now = store.get(&parent.grant_id, None).await.unwrap().unwrap();
    assert_eq!(
        parent_now.use_count, 2,
        "the child's uses are the parent's no longer"
    );
    let (_, greedy) = delegation(&parent.grant_id, 2, HOUR);
    assert!(
        store.delegate(&greedy).await.unwrap().is_none(),
        "one use left"
    );
    let revoked = store
        .revoke(
            &RevokeTarget::GrantId(parent.grant_id.clone()),
            None,
            RevokeReason::Manual,
        )
        .await
        .unwrap();
    assert_eq!(revoked.count, 2);
    assert_eq!(revoked.descendants, [token.hash()]);
    let (_, late) = delegation(&parent.grant_id, 1, HOUR);
    assert!(
        store.delegate(&late).await.unwrap().is_none(),
        "parent not live"
    );
}

/// A delegation that holds its parent's row lock when a revoke's cascade
/// reaches that parent commits its child while the cascade waits; the
/// child is not in the rows the cascade's statement began with, and must
/// be revoked all the same. (SQLite has one writer: no such interleaving.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_child_committed_while_the_cascade_waits_is_revoked() {
    with_store(crate::support::Backend::Postgres, |store| async move {
        let AnyStore::Pg(pg) = &store else {
            unreachable!()
        };
        let (_, root) = new_grant(10);
        store.insert(&root).await.unwrap();
        let (_, child) = delegation(&root.grant_id, 2, HOUR);
        store.delegate(&child).await.unwrap().unwrap();

        // A delegation from the child, half done: the child locked (as
        // escrow locks it), the grandchild inserted, not yet committed.
        let pool = pg.pool().clone();
        let mut delegating = pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM grants WHERE grant_id = $1 FOR UPDATE")
            .bind(&child.grant_id)
            .execute(&mut *delegating)
            .await
            .unwrap();
        let grandchild = grant_id();
        sqlx::query(
            "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
             scopes, labels, sealed_payload, max_uses, issued_by, revoke_run_on_replay, \
             issued_at, expires_at, parent_grant_id, depth) \
             SELECT $1, $2, token_hint, subject, audience, run_id, scopes, labels, \
             sealed_payload, 1, issued_by, revoke_run_on_replay, issued_at, expires_at, \
             grant_id, depth + 1 FROM grants WHERE grant_id = $3",
        )
        .bind(&grandchild)
        .bind(&Token::generate().hash().0[..])
        .bind(&child.grant_id)
        .execute(&mut *delegating)
        .await
        .unwrap();

        let revoking = {
            let store = store.clone();
            let target = RevokeTarget::GrantId(root.grant_id.clone());
            tokio::spawn(async move {
                store
                    .revoke(&target, None, RevokeReason::Manual)
                    .await
                    .unwrap()
            })
        };
        // The cascade waits on the child's lock.
        crate::support::eventually("the revoke waits on the child's row lock", async || {
            let waiting: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            waiting > 0
        })
        .await;
        delegating.commit().await.unwrap();
        let revoked = revoking.await.unwrap();
        assert_eq!(revoked.count, 3, "root, child and grandchild");
        let alive: Option<bool> =
            sqlx::query_scalar("SELECT revoked_at IS NULL FROM grants WHERE grant_id = $1")
                .bind(&grandchild)
                .fetch_optional(&pool)
                .await
                .unwrap();
        assert_eq!(alive, Some(false), "the grandchild outlived the revocation");
    })
    .await;
}
