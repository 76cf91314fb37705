//! Database faults, injected for real: a proxy that slows, cuts every
//! connection and refuses new ones, and PostgreSQL killing the server's
//! connections.

use std::time::{Duration, Instant};

use tessera::pb::{self, Denial, revoke_request::Target};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{
    Backend, PATIENCE, Proxy, TestApp, answered, check, claim, eventually, lock_table, mint_req,
    pool_settles, postgres_addr, revoke, wait_for_lock_waiters,
};

/// While the database is cut off every call is UNAVAILABLE, bounded by the
/// acquire timeout (3 s here, the default), never a denial and never a success; once it
/// is back the same server serves again, every acknowledged mint validates,
/// and no use was counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_unavailable_and_loses_nothing_acknowledged() {
    let proxy = Proxy::start(postgres_addr().await).await;
    let mut app = TestApp::spawn_behind(&proxy).await;
    let mut acknowledged = Vec::new();
    let mut claimed = Vec::new();
    for round in 0..3 {
        // Up: mint and claim.
        for _ in 0..10 {
            let single = pb::MintRequest {
                max_uses: 1,
                ..mint_req("u")
            };
            let minted = app.mint("minter", single).await.unwrap();
            assert!(
                app.claim("minter", claim(&minted.token))
                    .await
                    .unwrap()
                    .claimed
            );
            claimed.push(minted.token);
            acknowledged.push(app.mint("minter", mint_req("u")).await.unwrap().token);
        }
        // Down: every RPC is UNAVAILABLE, quickly.
        proxy.cut();
        let live = acknowledged[0].clone();
        let started = Instant::now();
        // (The test server's statement and request timeouts are minutes:
        // only the acquire timeout, or the cut itself, ends these calls.)
        let codes = [
            app.mint("minter", mint_req("u"))
                .await
                .map(drop)
                .unwrap_err()
                .code(),
            app.validate("minter", check(&live))
                .await
                .map(drop)
                .unwrap_err()
                .code(),
            app.claim("minter", claim(&live))
                .await
                .map(drop)
                .unwrap_err()
                .code(),
            app.revoke("minter", revoke(Target::Token(live.clone())))
                .await
                .map(drop)
                .unwrap_err()
                .code(),
        ];
        assert_eq!(codes, [Code::Unavailable; 4], "round {round}");
        let took = started.elapsed();
        // Four acquire timeouts (12 s) at most, with slack for a busy
        // machine; calls left to the request timeout (minutes) would fail it.
        assert!(
            took < Duration::from_secs(40),
            "each within the acquire timeout: {took:?}"
        );
        proxy.restore();
        // Back: the first calls may still meet a dead pooled connection.
        eventually("the server serves again", async || {
            app.mint("minter", mint_req("u")).await.is_ok()
        })
        .await;
    }
    for token in &acknowledged {
        assert!(
            app.validate("minter", check(token)).await.unwrap().valid,
            "an acknowledged mint survived"
        );
        let answer = app.claim("minter", claim(token)).await.unwrap();
        assert_eq!(
            answer.grant.unwrap().use_count,
            1,
            "no use was counted during the outages"
        );
    }
    for token in &claimed {
        let answer = app.claim("minter", claim(token)).await.unwrap();
        assert_eq!(
            answer.denial,
            Denial::TokenUnknown as i32,
            "used once, stays used"
        );
    }
    app.shutdown().await;
}

/// PostgreSQL kills every connection the server holds (as a restart does):
/// the server recovers by itself. Validate is a read, retried on another
/// connection, so not even one call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_when_postgres_kills_its_connections() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let token = app.mint("minter", mint_req("u")).await.unwrap().token;
    for _ in 0..20 {
        assert!(app.validate("minter", check(&token)).await.unwrap().valid);
    }
    for round in 0..3 {
        let killed = app.db.kill_connections().await;
        assert!(killed > 0, "round {round}: the server had connections");
        let mut failures = 0;
        let deadline = Instant::now() + PATIENCE;
        let mut streak = 0;
        while streak < 20 {
            match app.validate("minter", check(&token)).await {
                Ok(answer) => {
                    assert!(answer.valid, "never a denial");
                    streak += 1;
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    failures += 1;
                    streak = 0;
                }
            }
            assert!(Instant::now() < deadline, "no recovery within {PATIENCE:?}");
        }
        eprintln!("round {round}: killed {killed} connections, {failures} calls UNAVAILABLE");
        assert_eq!(failures, 0, "reads retry on another connection");
    }
}

/// Clients cancel calls at random points, keyed claims (transactions)
/// included: no connection is left idle in a transaction, no pooled
/// connection is poisoned, and the next calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_connection_in_a_transaction() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let m = pb::MintRequest {
            max_uses: 1_000,
            ..mint_req("u")
        };
        tokens.push(app.mint("minter", m).await.unwrap().token);
    }
    // Waves of 16 calls, each cancelled at a point between 0 and what a
    // whole wave takes when nothing is cancelled (the first wave, timed: at
    // least 20 ms, longer on a busy machine): before, during or after its
    // database work, however fast the machine is.
    let (mut completed, mut total) = (0, 0);
    let mut window_us = u64::MAX;
    for wave in 0..26u64 {
        let started = Instant::now();
        let mut calls = Vec::new();
        for j in 0..16u64 {
            let i = wave * 16 + j;
            let mut client = app.client();
            let token = tokens[i as usize % tokens.len()].clone();
            let request = if i % 2 == 0 {
                let key = format!("k-{i}");
                app.req(
                    "minter",
                    pb::ClaimRequest {
                        claim_key: key,
                        ..claim(&token)
                    },
                )
            } else {
                app.req("minter", claim(&token))
            };
            let cancel_after = match wave {
                0 => Duration::MAX,
                _ => Duration::from_micros((i * 7919) % window_us),
            };
            calls.push(tokio::spawn(async move {
                tokio::time::timeout(cancel_after, client.claim(request))
                    .await
                    .is_ok()
            }));
        }
        if wave == 0 {
            for call in calls {
                assert!(call.await.unwrap(), "nothing cancelled yet");
            }
            let took = u64::try_from(started.elapsed().as_micros()).unwrap();
            window_us = took.max(20_000);
            continue;
        }
        for call in calls {
            completed += usize::from(call.await.unwrap());
            total += 1;
        }
    }
    eprintln!("{completed} of {total} calls completed, the rest were cancelled");
    assert!(
        completed > 0 && completed < total,
        "both outcomes exercised"
    );
    // Once every connection is back in the pool (however long the
    // cancelled calls' clean-up takes on a busy machine), none may be left
    // inside a transaction.
    pool_settles(&app, "every connection back in the pool").await;
    let stuck = app.db.connections_in_transaction().await;
    assert_eq!(stuck, 0, "connections left idle in a transaction");
    for token in &tokens {
        let answer = app.claim("minter", claim(token)).await.unwrap();
        assert!(answer.claimed, "the pool serves again");
    }
}

/// A slow database (100 ms each way on every exchange): calls still answer
/// correctly, only later; health stays SERVING; when the latency goes, so
/// does the delay. Health answers from memory: with the database holding
/// every byte, it still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_is_slow_not_wrong() {
    let proxy = Proxy::start(postgres_addr().await).await;
    let mut app = TestApp::spawn_behind(&proxy).await;
    let four_uses = pb::MintRequest {
        max_uses: 4,
        ..mint_req("u")
    };
    let token = app.mint("minter", four_uses).await.unwrap().token;

    // Readiness pings with a 1 s timeout: a 200 ms round trip leaves it
    // 800 ms of slack on a busy machine.
    let latency = Duration::from_millis(100);
    proxy.set_latency(latency);
    let mut health = HealthClient::new(app.channel.clone());
    let started = Instant::now();
    let answer = app.claim("minter", claim(&token)).await.unwrap();
    let slow = started.elapsed();
    assert!(answer.claimed && answer.grant.unwrap().use_count == 1);
    assert!(slow >= 2 * latency, "the latency applied: {slow:?}");
    for _ in 0..5 {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let status = health.check(request).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The best of three claims beats the slow one, which took at least a
    // round trip of latency: a load spike would have to hit all three.
    proxy.set_latency(Duration::ZERO);
    let mut fastest = Duration::MAX;
    for use_count in 2..=4 {
        let started = Instant::now();
        let answer = app.claim("minter", claim(&token)).await.unwrap();
        fastest = fastest.min(started.elapsed());
        assert_eq!(answer.grant.unwrap().use_count, use_count);
    }
    assert!(fastest < slow, "fast again: {fastest:?} against {slow:?}");

    // From memory: answered while the database answers nothing.
    proxy.hold();
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let answer = answered("health, with the database held", health.check(request)).await;
    assert!(answer.is_ok(), "{answer:?}");
    proxy.release();
    app.shutdown().await;
}

/// A keyed claim whose batch loses its connection mid-statement (its write
/// to the claim keys waits on a table lock when PostgreSQL is cut off) is
/// UNAVAILABLE: its batch may have committed, so it is not run again. Once
/// the database is back, the retry with the same key gets one use, whether
/// the cut-off statement committed it or not, and the grant has one use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_claim_cut_off_mid_batch_is_unavailable_and_retried_once() {
    let proxy = Proxy::start(postgres_addr().await).await;
    let mut app = TestApp::spawn_behind(&proxy).await;
    let five_uses = pb::MintRequest {
        max_uses: 5,
        payload: b"p".to_vec(),
        ..mint_req("u")
    };
    let minted = app.mint("minter", five_uses).await.unwrap();
    let keyed = pb::ClaimRequest {
        claim_key: "k".into(),
        ..claim(&minted.token)
    };
    let lock = lock_table(&app.db, "claim_keys").await;
    let mut client = app.client();
    let request = app.req("minter", keyed.clone());
    let call = tokio::spawn(async move { client.claim(request).await });
    wait_for_lock_waiters(&app.db, &lock, 1).await;
    proxy.cut();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    lock.tx.rollback().await.unwrap();
    proxy.restore();

    // The first calls may still meet a dead pooled connection.
    let deadline = Instant::now() + PATIENCE;
    let retried = loop {
        match app.claim("minter", keyed.clone()).await {
            Ok(answer) => break answer,
            Err(err) => assert_eq!(err.code(), Code::Unavailable, "{err:?}"),
        }
        assert!(Instant::now() < deadline, "no recovery within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(retried.claimed);
    assert_eq!(
        (retried.payload.as_slice(), retried.grant.unwrap().use_count),
        (&b"p"[..], 1)
    );
    let grant_id = minted.grant.unwrap().grant_id;
    assert_eq!(app.get("minter", &grant_id).await.unwrap().use_count, 1);
    app.shutdown().await;
}
