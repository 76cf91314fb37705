//! Retry-safe Claim: a claim_key makes a retried claim return the original
//! outcome and consume nothing more.

use tessera::pb::{self, Denial, token_authority_client::TokenAuthorityClient};
use tonic::Code;

use crate::support::{
    Backend, TestApp, answered, channel, check, claim, eventually, lock_run, mint_req,
    wait_for_lock_waiters,
};

crate::both_backends!(
    a_retried_claim_returns_the_original_outcome,
    racing_retries_with_one_key_use_once,
    replay_of_a_flagged_grant_revokes_its_run,
    outsiders_cannot_trip_a_run_revocation,
);

fn keyed_claim(token: &str, key: &str) -> pb::ClaimRequest {
    pb::ClaimRequest {
        claim_key: key.into(),
        ..claim(token)
    }
}

async fn a_retried_claim_returns_the_original_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                payload: b"secret-7".to_vec(),
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    let first = app
        .claim("proxy", keyed_claim(&token, "attempt-1"))
        .await
        .unwrap();
    assert!(first.claimed);
    assert_eq!(first.payload, b"secret-7");
    for _ in 0..3 {
        let retry = app
            .claim("proxy", keyed_claim(&token, "attempt-1"))
            .await
            .unwrap();
        assert!(retry.claimed, "the reply was lost, not the claim");
        assert_eq!(retry.payload, b"secret-7");
        let (a, b) = (first.grant.clone().unwrap(), retry.grant.unwrap());
        assert_eq!((b.use_count, b.last_used_at), (a.use_count, a.last_used_at));
    }
    // A new key, no key, or the same key from another client is a new claim.
    for (client, key) in [
        ("proxy", "attempt-2"),
        ("proxy", ""),
        ("minter", "attempt-1"),
    ] {
        let other = app.claim(client, keyed_claim(&token, key)).await.unwrap();
        assert_eq!(
            (other.claimed, other.denial),
            (false, Denial::TokenUnknown as i32),
            "{client} {key:?}"
        );
    }
    let id = first.grant.unwrap().grant_id;
    assert_eq!(
        app.get("minter", &id).await.unwrap().use_count,
        1,
        "nothing more consumed"
    );
    assert_eq!(
        app.validate("proxy", check(&token)).await.unwrap().denial,
        Denial::TokenUnknown as i32
    );

    for (bad, why) in [("k".repeat(129), "long"), ("a\nb".into(), "newline")] {
        let err = app
            .claim("proxy", keyed_claim(&token, &bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}");
        assert!(
            err.message().starts_with("claim_key: "),
            "{}",
            err.message()
        );
    }
}

/// 32 retries of one claim racing over 4 connections: every one gets the
/// same successful answer, and exactly one use is consumed.
async fn racing_retries_with_one_key_use_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 5,
                payload: b"p".to_vec(),
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(channel(app.addr).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let mut client = TokenAuthorityClient::new(channels[i % 4].clone());
            let request = app.req("proxy", keyed_claim(&token.token, "one-claim"));
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client.claim(request).await.map(|r| r.into_inner())
            })
        })
        .collect();
    for task in tasks {
        let answer = task.await.unwrap().expect("no RPC error");
        assert!(answer.claimed);
        assert_eq!(answer.grant.unwrap().use_count, 1);
    }
    let id = token.grant.unwrap().grant_id;
    assert_eq!(app.get("minter", &id).await.unwrap().use_count, 1);
}

/// Presenting a used-up or revoked token again is a replay. The caller sees
/// only TOKEN_UNKNOWN; a grant minted with revoke_run_on_replay takes its
/// whole run down (reason COMPROMISED), other runs stay.
async fn replay_of_a_flagged_grant_revokes_its_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let in_run = |run: &str, flagged: bool, max_uses: u32| pb::MintRequest {
        run_id: run.into(),
        revoke_run_on_replay: flagged,
        max_uses,
        ..mint_req("u")
    };
    let tripwire = app.mint("minter", in_run("run-9", true, 1)).await.unwrap();
    assert!(tripwire.grant.as_ref().unwrap().revoke_run_on_replay);
    let sibling = app.mint("minter", in_run("run-9", false, 0)).await.unwrap();
    let other_run = app
        .mint("minter", in_run("run-10", false, 0))
        .await
        .unwrap();
    let unflagged = app
        .mint("minter", in_run("run-11", false, 1))
        .await
        .unwrap();
    let bystander = app
        .mint("minter", in_run("run-11", false, 0))
        .await
        .unwrap();

    assert!(
        app.claim("proxy", claim(&tripwire.token))
            .await
            .unwrap()
            .claimed
    );
    assert!(
        app.claim("proxy", claim(&unflagged.token))
            .await
            .unwrap()
            .claimed
    );
    // The replays: answered like any unknown token.
    for replayed in [&tripwire.token, &unflagged.token] {
        let answer = app.claim("proxy", claim(replayed)).await.unwrap();
        assert_eq!(
            (answer.claimed, answer.denial),
            (false, Denial::TokenUnknown as i32)
        );
    }
    // The run's revocation follows the reply, on a task of its own.
    eventually("the run is revoked", async || {
        let sibling_now = app.validate("proxy", check(&sibling.token)).await.unwrap();
        sibling_now.denial == Denial::TokenUnknown as i32
    })
    .await;
    let id = sibling.grant.unwrap().grant_id;
    let revoked = app.get("minter", &id).await.unwrap();
    assert_eq!(revoked.revoke_reason, pb::RevokeReason::Compromised as i32);
    assert!(
        app.validate("proxy", check(&other_run.token))
            .await
            .unwrap()
            .valid
    );
    assert!(
        app.validate("proxy", check(&bystander.token))
            .await
            .unwrap()
            .valid,
        "unflagged: run stays"
    );
}

/// The review's attack: `reader`, outside the audience, presenting a
/// used-up `revoke_run_on_replay` token made the issuer's other grants in
/// that run get revoked. Only a presentation that passes the audience and
/// subject rules is a replay now. And a keyed claim of a dead token is a
/// replay like any other (it used to skip the state checks, and the
/// tripwire with them).
async fn outsiders_cannot_trip_a_run_revocation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tripwire = pb::MintRequest {
        run_id: "run-t".into(),
        audience: vec!["proxy".into()],
        revoke_run_on_replay: true,
        max_uses: 1,
        ..mint_req("alice")
    };
    let tripwire = app.mint("minter", tripwire).await.unwrap().token;
    let sibling = pb::MintRequest {
        run_id: "run-t".into(),
        ..mint_req("alice")
    };
    let sibling = app.mint("minter", sibling).await.unwrap().token;
    assert!(app.claim("proxy", claim(&tripwire)).await.unwrap().claimed);

    let foreign_subject = pb::ClaimRequest {
        subject: "mallory".into(),
        ..claim(&tripwire)
    };
    let answers = [
        app.validate("reader", check(&tripwire))
            .await
            .unwrap()
            .denial,
        app.claim("other", claim(&tripwire)).await.unwrap().denial,
        app.claim("proxy", foreign_subject).await.unwrap().denial,
    ];
    assert_eq!(answers, [Denial::TokenUnknown as i32; 3]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        app.validate("proxy", check(&sibling)).await.unwrap().valid,
        "outsiders did not revoke the run"
    );

    let keyed = pb::ClaimRequest {
        required_scopes: vec!["tool:admin".into()],
        ..keyed_claim(&tripwire, "a-new-key")
    };
    let answer = app.claim("proxy", keyed).await.unwrap();
    assert_eq!(answer.denial, Denial::TokenUnknown as i32);
    eventually("a keyed replay revokes the run", async || {
        !app.validate("proxy", check(&sibling)).await.unwrap().valid
    })
    .await;
}

/// The replay's reply does not wait for the run's revocation: with the
/// run's rows locked by another session, the refusal comes back at once;
/// the revocation lands when the lock goes, durably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_answered_before_its_run_is_revoked() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let in_run = |flagged: bool| pb::MintRequest {
        run_id: "run-slow".into(),
        revoke_run_on_replay: flagged,
        max_uses: 1,
        ..mint_req("alice")
    };
    let tripwire = app.mint("minter", in_run(true)).await.unwrap().token;
    let sibling = app.mint("minter", in_run(false)).await.unwrap();
    assert!(app.claim("proxy", claim(&tripwire)).await.unwrap().claimed);

    let lock = lock_run(&app.db, "run-slow").await;
    // Answered while the run's rows stay locked: a reply that waited for
    // the revocation would wait for the lock, which outlasts it.
    let answer = answered("the replay", app.claim("proxy", claim(&tripwire))).await;
    assert_eq!(answer.unwrap().denial, Denial::TokenUnknown as i32);
    wait_for_lock_waiters(&app.db, &lock, 1).await;
    lock.tx.rollback().await.unwrap();
    let id = sibling.grant.unwrap().grant_id;
    eventually("the run is revoked once the lock goes", async || {
        app.get("minter", &id).await.unwrap().revoke_reason == pb::RevokeReason::Compromised as i32
    })
    .await;
}
