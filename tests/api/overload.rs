//! Overload and shutdown: calls beyond the limit are refused at once, and
//! SIGTERM ends the process within its grace period even with calls stuck.

use std::time::Duration;

use tessera::pb::{self, token_authority_client::TokenAuthorityClient};
use tonic::Code;

use crate::support::{
    Backend, HeldClaims, Keys, Options, PATIENCE, Process, TestApp, TestDb, answered, channel,
    check, claim, eventually, keyed, lock_run, metric, mint_req, pool_settles,
    wait_for_lock_waiters,
};

/// Two claims held in flight by a row lock fill `--max-in-flight 2`; the
/// next call is refused at once with RESOURCE_EXHAUSTED, health still
/// answers, and once the lock goes the held calls complete and new calls
/// are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_limit_are_shed_at_once() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options {
            max_in_flight: 2,
            max_in_flight_per_client: Some(2),
            ..Options::default()
        },
    )
    .await;
    let held = HeldClaims::start(&app, "minter", 2).await;

    // Refused at once: answered while both slots are still held (a call
    // that queued for a slot would wait for the lock, which outlasts it).
    let err = answered(
        "the call beyond the limit",
        app.mint("minter", mint_req("u")),
    )
    .await;
    assert_eq!(err.unwrap_err().code(), Code::ResourceExhausted);
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let ready = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(ready.is_ok(), "health is not shed");

    held.release().await;
    assert!(
        app.mint("minter", mint_req("u")).await.is_ok(),
        "served again"
    );
}

/// A call stuck on the database does not keep the process alive past
/// --shutdown-grace after SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_with_a_call_stuck() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    // Nothing but the grace period can end the stuck call: the statement
    // and request timeouts are far longer than the test waits.
    let server = Process::spawn_with(
        db.url(),
        keys.file.path(),
        "info",
        &[
            "--shutdown-grace",
            "1s",
            "--db-statement-timeout",
            "300s",
            "--request-timeout",
            "300s",
        ],
    )
    .await;
    let mut client = TokenAuthorityClient::new(channel(server.addr).await);
    let held = pb::MintRequest {
        run_id: "held".into(),
        ..mint_req("u")
    };
    let token = client
        .mint(keyed(keys.key("minter"), held))
        .await
        .unwrap()
        .into_inner()
        .token;
    let lock = lock_run(&db, "held").await;
    let stuck =
        tokio::spawn(async move { client.claim(keyed(keys.key("minter"), claim(&token))).await });
    wait_for_lock_waiters(&db, &lock, 1).await;

    let (took, log) = server.terminate_within(PATIENCE).await;
    // The 1 s grace, with slack for a busy machine; the default grace
    // (20 s) would not pass.
    assert!(took < Duration::from_secs(15), "exited after {took:?}");
    assert!(log.iter().any(|l| l.contains("grace period")), "{log:#?}");
    assert!(
        stuck.await.unwrap().is_err(),
        "the stuck call got a definite answer: an error"
    );
    drop(lock);
}

/// Claims are taken in batches on PostgreSQL; a row held by another
/// transaction must not hold up the claims batched with it. With four
/// claims waiting on a locked grant (more than the batches running at
/// once), claims of other grants are still answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_holds_up_only_its_own_claims() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(app.mint("minter", mint_req("u")).await.unwrap().token);
    }
    let held = HeldClaims::start(&app, "minter", 6).await;
    let claims: Vec<_> = others
        .iter()
        .map(|token| {
            let mut client = app.client();
            let request = app.req("proxy", claim(token));
            tokio::spawn(async move { client.claim(request).await })
        })
        .collect();
    // Answered while the row stays locked (no statement or request
    // timeout of the test server ends a wait on it first): a claim held up
    // by the locked row would wait for the lock, which outlasts it.
    for call in claims {
        let answer = answered("a claim of another grant", call).await;
        assert!(answer.unwrap().unwrap().into_inner().claimed);
    }
    wait_for_lock_waiters(&app.db, &held.lock, 6).await;
    held.release().await;
}

/// Keyed claims are batched too: with six keyed claims (more than the
/// batches running at once) waiting on a locked grant, keyed claims of
/// other grants are still answered at once, and the held ones complete
/// once the lock goes, one use per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_holds_up_only_its_own_keyed_claims() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let with_key = |token: &str, key: String| pb::ClaimRequest {
        claim_key: key,
        ..claim(token)
    };
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(app.mint("minter", mint_req("u")).await.unwrap().token);
    }
    let held = pb::MintRequest {
        run_id: "held".into(),
        ..mint_req("u")
    };
    let held = app.mint("minter", held).await.unwrap();
    let lock = lock_run(&app.db, "held").await;
    let held_calls: Vec<_> = (0..6)
        .map(|i| {
            let mut client = app.client();
            let request = app.req("minter", with_key(&held.token, format!("held-{i}")));
            tokio::spawn(async move { client.claim(request).await })
        })
        .collect();
    wait_for_lock_waiters(&app.db, &lock, 6).await;

    let claims: Vec<_> = others
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let mut client = app.client();
            let request = app.req("proxy", with_key(token, format!("k-{i}")));
            tokio::spawn(async move { client.claim(request).await })
        })
        .collect();
    // Answered while the row stays locked, as above.
    for call in claims {
        let answer = answered("a keyed claim of another grant", call).await;
        assert!(answer.unwrap().unwrap().into_inner().claimed);
    }
    wait_for_lock_waiters(&app.db, &lock, 6).await;
    lock.tx.rollback().await.unwrap();
    let mut uses = Vec::new();
    for call in held_calls {
        let answer = call.await.unwrap().unwrap().into_inner();
        uses.push(answer.grant.unwrap().use_count);
    }
    uses.sort_unstable();
    assert_eq!(uses, [1, 2, 3, 4, 5, 6], "one use per key");
}

/// A client's share is one share across gRPC and HTTP: with its claims
/// held in flight, its introspections are shed too (429), while another
/// client's are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_share_spans_grpc_and_http() {
    use crate::support::http::{Auth, Version, form, send};
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options {
            max_in_flight: 8,
            max_in_flight_per_client: Some(2),
            ..Options::default()
        },
    )
    .await;
    let held = HeldClaims::start(&app, "minter", 2).await;
    let introspect = |client: &'static str| {
        let request = form(
            "/oauth2/introspect",
            Auth::Bearer(app.keys.key(client)),
            &[("token", "tsr_x")],
        );
        send(app.http_addr, None, Version::H1, request)
    };
    let shed = introspect("minter").await;
    assert_eq!(shed.status, 429);
    assert_eq!(shed.header("retry-after"), ["1"]);
    assert_eq!(introspect("reader").await.status, 200);
    held.release().await;
    assert_eq!(introspect("minter").await.status, 200);
}

/// Under load a batch passes its connection to the next batch instead of
/// handing it back to the pool (which would test it with a round trip);
/// once the calls stop, every connection goes back: after a burst of
/// concurrent mints, validates and claims, each answered right, none stays
/// in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_give_their_connections_back_once_calls_stop() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mints: Vec<_> = (0..32)
        .map(|_| {
            let mut client = app.client();
            let request = app.req("minter", mint_req("u"));
            tokio::spawn(async move { client.mint(request).await.unwrap().into_inner().token })
        })
        .collect();
    let mut tokens = Vec::new();
    for mint in mints {
        tokens.push(mint.await.unwrap());
    }
    let calls: Vec<_> = (0..400)
        .map(|i| {
            let token = &tokens[i % tokens.len()];
            let mut client = app.client();
            let (validate, use_one) = (
                app.req("proxy", check(token)),
                app.req("proxy", claim(token)),
            );
            tokio::spawn(async move {
                let valid = client.validate(validate).await.unwrap().into_inner().valid;
                valid && client.claim(use_one).await.unwrap().into_inner().claimed
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap(), "validated and claimed");
    }

    // Given back once no call came for a moment: however long the machine
    // takes to get there, the gauge comes back down.
    pool_settles(&app, "every connection back once the calls stopped").await;
}

/// A client presenting a spent token in a loop gets each refusal at once
/// and does not take the pool: two replays are counted at a time and a
/// bounded number (`REPLAY_BACKLOG`) wait. With the grant's row locked, so that counting
/// hangs, another client still mints and validates; every replay is in the
/// metric; once the lock goes, the row holds the replays that were queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_in_a_loop_do_not_take_the_pool() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let spent = pb::MintRequest {
        run_id: "looped".into(),
        max_uses: 1,
        ..mint_req("u")
    };
    let token = app.mint("minter", spent).await.unwrap().token;
    assert!(app.claim("proxy", claim(&token)).await.unwrap().claimed);
    let lock = lock_run(&app.db, "looped").await;
    const BACKLOG: u64 = tessera::authority::REPLAY_BACKLOG as u64;
    let replays = BACKLOG + 44;
    for _ in 0..replays {
        assert!(!app.claim("proxy", claim(&token)).await.unwrap().claimed);
    }

    let other = app.mint("other", mint_req("v")).await;
    let other = other.unwrap_or_else(|_| panic!("another client mints"));
    assert!(
        app.validate("other", check(&other.token))
            .await
            .unwrap()
            .valid
    );
    assert_eq!(metric(&app, "tessera_replays_total ").await, replays);

    lock.tx.rollback().await.unwrap();
    let counted = async || {
        let row: (i64,) = sqlx::query_as("SELECT replays FROM grants WHERE run_id = 'looped'")
            .fetch_one(&sqlx::PgPool::connect(app.db.url()).await.unwrap())
            .await
            .unwrap();
        row.0
    };
    // Two counting, the backlog waiting: the rest were refused a place.
    eventually("the queued replays counted", async || {
        counted().await >= BACKLOG as i64
    })
    .await;
    // Counting is over once the pool is idle again (each count holds a
    // connection): a replay beyond the bound would be in the row by then.
    pool_settles(&app, "the replays counted").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        (BACKLOG as i64..=BACKLOG as i64 + 2).contains(&counted().await),
        "{}",
        counted().await
    );
}
