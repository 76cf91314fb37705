//! The statements each call runs, pinned: the refusals that must be
//! indistinguishable run the same ones, and each success path runs as few
//! as it needs. A store that records every call it gets stands behind a
//! real authority. Replays are counted after the reply, by a task of their
//! own: those calls are recorded apart, and pinned too.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tessera::{
    audit::Audit,
    authority::{Authority, Check, Claimed, Denial, MintSpec, Policy, Validated},
    cache::{Cached, GrantCache},
    clients::{Caller, Role},
    config::DatabaseConfig,
    grant::{Grant, RevokeReason},
    metrics::Metrics,
    store::{
        Delegation, Invalidation, Keyed, ListPage, ListQuery, Lookup, NewGrant, PgStore, Prior,
        Result, RevokeTarget, Revoked, Rotated, Rotation, SqliteStore, Store,
    },
    token::{Token, TokenHash},
};

use crate::support::{Backend, TestDb, eventually};

/// Delegates to `inner`, noting the name of every call.
#[derive(Clone)]
struct Recording<S> {
    inner: S,
    calls: Arc<Mutex<Vec<&'static str>>>,
    /// The grant of every replay counted, in whatever order the tasks ran.
    replays: Arc<Mutex<Vec<String>>>,
}

impl<S> Recording<S> {
    fn note(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    /// Waits for `count` replays to have been counted; returns their grants.
    async fn replays_counted(&self, count: usize) -> Vec<String> {
        eventually("the replays counted", async || {
            self.replays.lock().unwrap().len() >= count
        })
        .await;
        std::mem::take(&mut self.replays.lock().unwrap())
    }
}

impl<S: Store + Clone> Store for Recording<S> {
    async fn migrate(&self) -> anyhow::Result<()> {
        self.inner.migrate().await
    }
    async fn insert(&self, g: &NewGrant) -> Result<Grant> {
        self.note("insert");
        self.inner.insert(g).await
    }
    async fn find(&self, h: &TokenHash) -> Result<Option<Lookup>> {
        self.note("find");
        self.inner.find(h).await
    }
    async fn find_keyed(
        &self,
        h: &TokenHash,
        client: &str,
        key: &[u8; 32],
    ) -> Result<Option<(Lookup, Option<Prior>)>> {
        self.note("find_keyed");
        self.inner.find_keyed(h, client, key).await
    }
    async fn touch(&self, touches: &[(String, i64)]) -> Result<()> {
        self.note("touch");
        self.inner.touch(touches).await
    }
    async fn consume(&self, id: &str) -> Result<Option<(Grant, Vec<u8>)>> {
        self.note("consume");
        self.inner.consume(id).await
    }
    async fn consume_keyed(&self, id: &str, client: &str, key: &[u8; 32]) -> Result<Keyed> {
        self.note("consume_keyed");
        self.inner.consume_keyed(id, client, key).await
    }
    async fn revoke(&self, t: &RevokeTarget, by: Option<&str>, r: RevokeReason) -> Result<Revoked> {
        self.note("revoke");
        self.inner.revoke(t, by, r).await
    }
    async fn payload(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.note("payload");
        self.inner.payload(id).await
    }
    async fn rotate(&self, r: &Rotation) -> Result<Option<Rotated>> {
        self.note("rotate");
        self.inner.rotate(r).await
    }
    async fn delegate(&self, d: &Delegation) -> Result<Option<Grant>> {
        self.note("delegate");
        self.inner.delegate(d).await
    }
    async fn count_replay(&self, id: &str) -> Result<Option<u64>> {
        self.replays.lock().unwrap().push(id.to_owned());
        self.inner.count_replay(id).await
    }
    async fn get(&self, id: &str, by: Option<&str>) -> Result<Option<Grant>> {
        self.note("get");
        self.inner.get(id, by).await
    }
    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        self.note("list");
        self.inner.list(q).await
    }
    async fn sweep(&self, r: Duration, b: u32) -> Result<u64> {
        self.inner.sweep(r, b).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn count_live(&self) -> Result<u64> {
        self.inner.count_live().await
    }
    fn pool_probe(&self) -> tessera::metrics::PoolProbe {
        self.inner.pool_probe()
    }
    async fn listen(&self, on: impl Fn(Invalidation) + Send + Sync + 'static) {
        self.inner.listen(on).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

crate::both_backends!(hidden_refusals_run_the_same_statements);

async fn hidden_refusals_run_the_same_statements(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = DatabaseConfig {
        url: db.url().to_owned(),
        read_url: None,
        read_max_lag: Duration::ZERO,
        max_connections: 4,
        acquire_timeout: Duration::from_secs(3),
        statement_timeout: Duration::from_secs(5),
    };
    match backend {
        Backend::Postgres => run(PgStore::connect_lazy(&config).unwrap()).await,
        Backend::Sqlite => run(SqliteStore::connect_lazy(&config).unwrap()).await,
    }
}

async fn run<S: Store + Clone>(store: S) {
    store.migrate().await.unwrap();
    let store = Recording {
        inner: store,
        calls: Arc::default(),
        replays: Arc::default(),
    };
    let policy = Policy {
        default_ttl: Duration::from_secs(600),
        max_ttl: Duration::from_secs(3600),
        max_delegation_depth: 4,
    };
    let authority = Authority::new(store.clone(), policy, Audit::new(None), Metrics::new());
    let minter = Caller::new("minter", &[Role::Mint, Role::Claim, Role::Revoke]);
    let proxy = Caller::new("proxy", &[Role::Validate, Role::Claim]);
    let outsider = Caller::new("outsider", &[Role::Validate, Role::Claim]);
    let mint = |max_uses| MintSpec {
        subject: "alice".into(),
        audience: vec!["proxy".into()],
        run_id: "run".into(),
        scopes: vec![],
        labels: Default::default(),
        ttl: None,
        max_uses,
        payload: b"p".to_vec(),
        revoke_run_on_replay: false,
        payload_credential: None,
    };
    let (revoked, revoked_grant, _) = authority.mint(&minter, mint(0)).await.unwrap();
    let target = tessera::authority::Target::Token(revoked.clone());
    authority
        .revoke(&minter, target, RevokeReason::Manual)
        .await
        .unwrap();
    let (used, used_grant, _) = authority.mint(&minter, mint(1)).await.unwrap();
    assert!(matches!(
        authority.claim(&proxy, check(&used, None)).await.unwrap(),
        Claimed::Claimed { .. }
    ));
    let (live, _, _) = authority.mint(&minter, mint(0)).await.unwrap();

    let cases: [(&str, &Caller, Token, Option<&str>); 5] = [
        ("never minted", &proxy, Token::generate(), None),
        ("revoked", &proxy, revoked, None),
        ("used up", &proxy, used, None),
        ("other subject", &proxy, live.clone(), Some("mallory")),
        ("outside audience", &outsider, live, None),
    ];
    for (name, caller, token, subject) in &cases {
        store.take();
        let validated = authority
            .validate(caller, check(token, *subject))
            .await
            .unwrap();
        assert!(
            matches!(validated, Validated::Denied(Denial::Unknown)),
            "{name}"
        );
        assert_eq!(store.take(), ["find"], "validate, {name}");
        let claimed = authority
            .claim(caller, check(token, *subject))
            .await
            .unwrap();
        assert!(
            matches!(claimed, Claimed::Denied(Denial::Unknown)),
            "{name}"
        );
        assert_eq!(store.take(), ["find"], "claim, {name}");
        let keyed = Check {
            claim_key: Some("k".into()),
            required_scopes: vec!["tool:admin".into()],
            ..check(token, *subject)
        };
        let claimed = authority.claim(caller, keyed).await.unwrap();
        assert!(
            matches!(claimed, Claimed::Denied(Denial::Unknown)),
            "{name}"
        );
        assert_eq!(store.take(), ["find_keyed"], "keyed claim, {name}");
    }
    // The revoked and the used-up grant were replayed three times each,
    // and counted after each reply; the other refusals are no replays.
    let ids = |grant: &Grant, times| vec![grant.grant_id.clone(); times];
    let both = |times| [ids(&revoked_grant, times), ids(&used_grant, times)].concat();
    let mut counted = store.replays_counted(6).await;
    counted.sort_unstable();
    assert_eq!(counted, both(3), "replays counted");

    // BOUNDED: every hidden refusal is read once, then answered from this
    // replica's memory for the cache's bounded age, a token never minted
    // as much as a dead or foreign grant. A replay answered from memory is
    // counted in the database all the same, after the reply.
    for (name, caller, token, subject) in &cases {
        let cache = Arc::new(GrantCache::new(
            Duration::from_secs(60),
            100,
            Default::default(),
        ));
        cache.apply(Invalidation::Resumed);
        let cached = Authority::new(
            Cached::new(store.clone(), Some(cache)),
            policy,
            Audit::new(None),
            Metrics::new(),
        );
        let bounded = || Check {
            bounded: true,
            ..check(token, *subject)
        };
        for expected in [&["find"][..], &[]] {
            let validated = cached.validate(caller, bounded()).await.unwrap();
            assert!(
                matches!(validated, Validated::Denied(Denial::Unknown)),
                "{name}"
            );
            assert_eq!(store.take(), expected, "bounded validate, {name}");
        }
    }
    let mut counted = store.replays_counted(4).await;
    counted.sort_unstable();
    assert_eq!(counted, both(2), "bounded replays counted");

    // The success paths.
    let (token, _, _) = authority.mint(&minter, mint(2)).await.unwrap();
    assert_eq!(store.take(), ["insert"], "mint");
    let valid = authority.validate(&proxy, check(&token, None)).await;
    assert!(matches!(valid.unwrap(), Validated::Valid(_)));
    assert_eq!(store.take(), ["find"], "first validate: reads only");
    let valid = authority.validate(&proxy, check(&token, None)).await;
    assert!(matches!(valid.unwrap(), Validated::Valid(_)));
    assert_eq!(store.take(), ["find"], "validate within a minute");
    assert_eq!(authority.record_usage().await.unwrap(), 1);
    assert_eq!(
        store.take(),
        ["touch"],
        "uses are written in bulk, off the reply"
    );
    assert_eq!(authority.record_usage().await.unwrap(), 0);
    assert!(store.take().is_empty(), "nothing new, nothing written");
    let claimed = authority.claim(&proxy, check(&token, None)).await.unwrap();
    assert!(matches!(claimed, Claimed::Claimed { .. }));
    assert_eq!(store.take(), ["find", "consume"], "claim");
    let keyed = || Check {
        claim_key: Some("k".into()),
        ..check(&token, None)
    };
    let claimed = authority.claim(&proxy, keyed()).await.unwrap();
    assert!(matches!(claimed, Claimed::Claimed { .. }));
    assert_eq!(store.take(), ["find_keyed", "consume_keyed"], "keyed claim");
    let retried = authority.claim(&proxy, keyed()).await.unwrap();
    assert!(matches!(retried, Claimed::Claimed { .. }));
    assert_eq!(store.take(), ["find_keyed"], "retried keyed claim");

    // A replay that trips its run's revocation answers after one lookup;
    // the revocation follows on a task of its own.
    let (tripwire, tripwire_grant, _) = authority
        .mint(
            &minter,
            MintSpec {
                revoke_run_on_replay: true,
                ..mint(1)
            },
        )
        .await
        .unwrap();
    let claimed = authority.claim(&proxy, check(&tripwire, None)).await;
    assert!(matches!(claimed.unwrap(), Claimed::Claimed { .. }));
    store.take();
    let replayed = authority.claim(&proxy, check(&tripwire, None)).await;
    assert!(matches!(
        replayed.unwrap(),
        Claimed::Denied(Denial::Unknown)
    ));
    let mut calls = store.take();
    assert_eq!(calls.first(), Some(&"find"), "{calls:?}");
    eventually("the run revoked", async || {
        calls.extend(store.take());
        calls.contains(&"revoke")
    })
    .await;
    assert_eq!(
        calls,
        ["find", "revoke"],
        "the run is revoked off the reply path"
    );
    let counted = store.replays_counted(1).await;
    assert_eq!(counted, ids(&tripwire_grant, 1), "and the replay counted");
}

fn check(token: &Token, subject: Option<&str>) -> Check {
    Check {
        token: token.expose().to_owned(),
        required_scopes: vec![],
        subject: subject.map(str::to_owned),
        bounded: false,
        at_least: None,
        claim_key: None,
    }
}
