//! Claims racing for real: many tasks, several server processes, one database.

use tessera::pb::{self, Denial, token_authority_client::TokenAuthorityClient};
use tonic::transport::Channel;

use crate::support::{Backend, Keys, Process, TestApp, TestDb, channel, claim, keyed, mint_req};

crate::both_backends!(
    two_hundred_claims_of_a_five_use_token_win_five_times,
    eight_resumers_one_winner,
    racing_validates_each_get_their_own_answer,
    racing_mints_each_get_their_own_grant,
    racing_claims_of_many_tokens_take_each_use_once,
);

/// 60 single-use and 20 three-use tokens, every one claimed by four tasks
/// at once (320 claims over 4 connections, taken together in batches on
/// PostgreSQL): each single-use token is claimed exactly once, each
/// three-use token exactly three times, and every winner gets its own
/// token's payload.
async fn racing_claims_of_many_tokens_take_each_use_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tokens = Vec::new();
    for i in 0..80 {
        let minted = pb::MintRequest {
            max_uses: if i < 60 { 1 } else { 3 },
            payload: format!("p{i}").into_bytes(),
            ..mint_req("u")
        };
        tokens.push(app.mint("minter", minted).await.unwrap().token);
    }
    let channels = channels(&app, 4).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(320));
    let tasks: Vec<_> = (0..320)
        .map(|n| {
            let i = n % 80;
            let mut client = TokenAuthorityClient::new(channels[n % 4].clone());
            // Two clients, so that no one client exceeds its in-flight share.
            let who = if n % 2 == 0 { "proxy" } else { "minter" };
            let request = app.req(who, claim(&tokens[i]));
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                (i, client.claim(request).await.unwrap().into_inner())
            })
        })
        .collect();
    let mut wins = [0u32; 80];
    for task in tasks {
        let (i, answer) = task.await.unwrap();
        if answer.claimed {
            wins[i] += 1;
            assert_eq!(answer.payload, format!("p{i}").into_bytes());
        } else {
            assert_eq!(answer.denial, Denial::TokenUnknown as i32);
        }
    }
    assert_eq!(wins[..60], [1; 60], "single-use tokens: once each");
    assert_eq!(wins[60..], [3; 20], "three-use tokens: three times each");
}

/// 200 Mints at once over 4 connections, each with its own subject, labels,
/// scopes, audience, uses and payload: written together in batches on
/// PostgreSQL, each caller still gets its own grant, stored as asked, and
/// its token claims its own payload.
async fn racing_mints_each_get_their_own_grant(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channels = channels(&app, 4).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let mut client = TokenAuthorityClient::new(channels[i % 4].clone());
            let request = app.req(
                "minter",
                pb::MintRequest {
                    audience: vec!["proxy".into(), format!("c{i}")],
                    scopes: vec![format!("tool:t{i}")],
                    labels: [("n".to_owned(), i.to_string())].into(),
                    max_uses: u32::try_from(i % 3).unwrap() + 1,
                    payload: format!("payload-{i}").into_bytes(),
                    revoke_run_on_replay: i % 2 == 0,
                    ..mint_req(&format!("s{i}"))
                },
            );
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                (i, client.mint(request).await.unwrap().into_inner())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (i, minted) = task.await.unwrap();
        let grant = minted.grant.unwrap();
        assert!(ids.insert(grant.grant_id.clone()), "one grant per mint");
        assert_eq!(grant.subject, format!("s{i}"));
        assert_eq!(grant.audience, ["proxy".to_owned(), format!("c{i}")]);
        assert_eq!(grant.scopes, [format!("tool:t{i}")]);
        assert_eq!(grant.labels["n"], i.to_string());
        assert_eq!(grant.max_uses, u32::try_from(i % 3).unwrap() + 1);
        assert_eq!(grant.revoke_run_on_replay, i % 2 == 0);
        if i % 20 == 0 {
            let claimed = app.claim("proxy", claim(&minted.token)).await.unwrap();
            assert_eq!(claimed.payload, format!("payload-{i}").into_bytes());
            assert_eq!(claimed.grant.unwrap().subject, format!("s{i}"));
        }
    }
}

/// 200 Validates at once over 4 connections, of 40 live grants (each asked
/// for many times), revoked ones and tokens never minted: looked up
/// together in batches on PostgreSQL, each call still gets exactly its own
/// token's answer.
async fn racing_validates_each_get_their_own_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut expected = Vec::new();
    for i in 0..40 {
        let minted = app
            .mint("minter", mint_req(&format!("s{i}")))
            .await
            .unwrap();
        expected.push((minted.token, Some(format!("s{i}"))));
    }
    for _ in 0..5 {
        let minted = app.mint("minter", mint_req("gone")).await.unwrap();
        let target = pb::revoke_request::Target::Token(minted.token.clone());
        app.revoke("minter", crate::support::revoke(target))
            .await
            .unwrap();
        expected.push((minted.token, None));
    }
    for _ in 0..5 {
        expected.push((tessera::token::Token::generate().into_plaintext(), None));
    }
    let channels = channels(&app, 4).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (token, subject) = expected[i % expected.len()].clone();
            let mut client = TokenAuthorityClient::new(channels[i % 4].clone());
            let request = app.req("proxy", crate::support::check(&token));
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let answer = client.validate(request).await.unwrap().into_inner();
                (answer, subject)
            })
        })
        .collect();
    for task in tasks {
        let (answer, subject) = task.await.unwrap();
        match subject {
            Some(subject) => {
                assert!(answer.valid, "{subject}");
                assert_eq!(answer.grant.unwrap().subject, subject);
            }
            None => assert_eq!(answer.denial, Denial::TokenUnknown as i32),
        }
    }
}

/// `n` connections to the server, for calls that race over several.
async fn channels(app: &TestApp, n: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(channel(app.addr).await);
    }
    channels
}

/// Fires `n` claims of `token` at once, spread over `channels`; returns
/// (winners, losers) after checking every loser saw TOKEN_UNKNOWN.
async fn race(channels: &[Channel], key: &str, token: &str, n: usize) -> (usize, usize) {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut client = TokenAuthorityClient::new(channels[i % channels.len()].clone());
            let request = keyed(key, claim(token));
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client.claim(request).await.map(|r| r.into_inner())
            })
        })
        .collect();
    let mut won = 0;
    let mut lost = 0;
    for task in tasks {
        let answer: pb::ClaimResponse = task.await.unwrap().expect("no RPC error under contention");
        if answer.claimed {
            assert_eq!(answer.payload, b"once");
            won += 1;
        } else {
            assert_eq!(answer.denial, Denial::TokenUnknown as i32);
            lost += 1;
        }
    }
    (won, lost)
}

async fn two_hundred_claims_of_a_five_use_token_win_five_times(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 5,
                payload: b"once".to_vec(),
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    let channels: Vec<_> = futures_channels(&app, 4).await;
    let (won, lost) = race(&channels, app.keys.key("proxy"), &token, 200).await;
    assert_eq!((won, lost), (5, 195));
}

async fn eight_resumers_one_winner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                payload: b"once".to_vec(),
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    let channels: Vec<_> = futures_channels(&app, 8).await;
    assert_eq!(
        race(&channels, app.keys.key("proxy"), &token, 8).await,
        (1, 7)
    );
}

async fn futures_channels(app: &TestApp, n: usize) -> Vec<Channel> {
    let mut channels = Vec::new();
    for _ in 0..n {
        channels.push(channel(app.addr).await);
    }
    channels
}

/// 64 claims of one single-use token through two server processes sharing
/// one PostgreSQL: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_claims_through_two_processes_win_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let a = Process::spawn(db.url(), keys.file.path(), "info").await;
    let b = Process::spawn(db.url(), keys.file.path(), "info").await;
    let channels = [channel(a.addr).await, channel(b.addr).await];

    for round in 0..3 {
        let mut minter = TokenAuthorityClient::new(channels[round % 2].clone());
        let request = keyed(
            keys.key("minter"),
            pb::MintRequest {
                max_uses: 1,
                payload: b"once".to_vec(),
                ..mint_req("u")
            },
        );
        let token = minter.mint(request).await.unwrap().into_inner().token;
        assert_eq!(
            race(&channels, keys.key("proxy"), &token, 64).await,
            (1, 63),
            "round {round}"
        );
    }
    a.terminate().await;
    b.terminate().await;
}
