//! BOUNDED Validate: answered from memory, yet revokes and last uses show
//! on every replica at once, and never later than --cache-max-age.

use std::time::{Duration, Instant};

use tessera::pb::{self, Consistency, Denial, revoke_request::Target};

use crate::support::{
    Backend, Options, PATIENCE, TestApp, check, claim, eventually, metric, mint_req, revoke,
};

crate::both_backends!(bounded_sees_this_replicas_changes_at_once);

fn bounded(token: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        consistency: Consistency::Bounded as i32,
        ..check(token)
    }
}

async fn bounded_sees_this_replicas_changes_at_once(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            cache_max_age: "60s",
            ..Options::default()
        },
    )
    .await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 2,
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    for _ in 0..3 {
        let answer = app.validate("minter", bounded(&token)).await.unwrap();
        assert!(answer.valid);
        assert_eq!(answer.grant.unwrap().use_count, 0);
    }
    assert!(app.claim("minter", claim(&token)).await.unwrap().claimed);
    let after_claim = app.validate("minter", bounded(&token)).await.unwrap();
    assert_eq!(
        after_claim.grant.unwrap().use_count,
        1,
        "this replica's claim shows at once"
    );
    // The rules still apply to a cached grant.
    let foreign = pb::ValidateRequest {
        subject: "mallory".into(),
        ..bounded(&token)
    };
    assert_eq!(
        app.validate("minter", foreign).await.unwrap().denial,
        Denial::TokenUnknown as i32
    );
    let outside = app.validate("reader", bounded(&token)).await.unwrap();
    assert!(outside.valid, "an empty audience admits every validator");
    let scoped = pb::ValidateRequest {
        required_scopes: vec!["x:y".into()],
        ..bounded(&token)
    };
    assert_eq!(
        app.validate("minter", scoped).await.unwrap().denial,
        Denial::ScopeMissing as i32
    );

    app.revoke("minter", revoke(Target::Token(token.clone())))
        .await
        .unwrap();
    let after_revoke = app.validate("minter", bounded(&token)).await.unwrap();
    assert_eq!(
        after_revoke.denial,
        Denial::TokenUnknown as i32,
        "this replica's revoke shows at once"
    );

    // Expiry needs no invalidation. The grant is cached while valid (3 s:
    // slack for one call on a busy machine), then judged from memory once
    // its expiry has passed.
    let ttl = Duration::from_secs(3);
    let short = pb::MintRequest {
        ttl: Some(ttl.try_into().unwrap()),
        ..mint_req("u")
    };
    let short = app.mint("minter", short).await.unwrap().token;
    let minted = Instant::now();
    assert!(app.validate("minter", bounded(&short)).await.unwrap().valid);
    tokio::time::sleep_until((minted + ttl + Duration::from_millis(50)).into()).await;
    assert_eq!(
        app.validate("minter", bounded(&short))
            .await
            .unwrap()
            .denial,
        Denial::TokenExpired as i32
    );

    let bad = pb::ValidateRequest {
        consistency: 7,
        ..check(&token)
    };
    let err = app.validate("minter", bad).await.unwrap_err();
    assert!(
        err.message().starts_with("consistency: "),
        "{}",
        err.message()
    );
}

/// Polls replica `app` with BOUNDED validates until `token` is refused.
async fn refused_within(app: &TestApp, token: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let answer = app.validate("minter", bounded(token)).await.unwrap();
        if !answer.valid {
            assert_eq!(answer.denial, Denial::TokenUnknown as i32);
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "still valid after {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Two replicas on one PostgreSQL, entries kept for ten minutes (longer
/// than the test waits): only the database's notification can explain the
/// other replica noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revokes_and_last_uses_reach_other_replicas() {
    let long = || Options {
        cache_max_age: "10m",
        ..Options::default()
    };
    let a = TestApp::spawn_with(Backend::Postgres, long()).await;
    let b = a.replica(long()).await;
    eventually("B's listener subscribed", async || {
        metric(&b, "tessera_notify_listener_up ").await == 1
    })
    .await;

    let revoked = a.mint("minter", mint_req("u")).await.unwrap().token;
    let used = a
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    for token in [&revoked, &used] {
        assert!(b.validate("minter", bounded(token)).await.unwrap().valid);
        assert!(
            b.validate("minter", bounded(token)).await.unwrap().valid,
            "now from B's memory"
        );
    }
    a.revoke("minter", revoke(Target::Token(revoked.clone())))
        .await
        .unwrap();
    let took = refused_within(&b, &revoked, PATIENCE).await;
    eprintln!("revoke on A seen by B after {took:?}");
    assert!(a.claim("minter", claim(&used)).await.unwrap().claimed);
    let took = refused_within(&b, &used, PATIENCE).await;
    eprintln!("last use on A seen by B after {took:?}");
}

/// Two servers on one SQLite file: nothing announces A's revoke to B, so
/// B's memory answers until --cache-max-age, and not a moment longer; FULL
/// sees the revoke at once. The max age (5 s) is slack for the three calls
/// that must come inside it on a busy machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_bounds_staleness_when_no_notification_arrives() {
    let max_age = Duration::from_secs(5);
    let options = || Options {
        cache_max_age: "5s",
        ..Options::default()
    };
    let a = TestApp::spawn_with(Backend::Sqlite, options()).await;
    let b = a.replica(options()).await;
    let token = a.mint("minter", mint_req("u")).await.unwrap().token;
    // Cached by this call: after `asked`, before `cached`.
    let asked = Instant::now();
    assert!(b.validate("minter", bounded(&token)).await.unwrap().valid);
    let cached = Instant::now();
    a.revoke("minter", revoke(Target::Token(token.clone())))
        .await
        .unwrap();
    assert_eq!(
        b.validate("minter", check(&token)).await.unwrap().denial,
        Denial::TokenUnknown as i32
    );
    assert!(
        b.validate("minter", bounded(&token)).await.unwrap().valid,
        "stale, within bounds"
    );
    let took = refused_within(&b, &token, PATIENCE).await;
    // Not before the max age, counted from before the entry was cached;
    // not long after it, counted from after (5 s of slack for a busy
    // machine: an entry kept twice as long would fail it).
    assert!(asked.elapsed() >= max_age, "{took:?}");
    let age = cached.elapsed();
    assert!(age < max_age + Duration::from_secs(5), "{age:?} ({took:?})");
}
