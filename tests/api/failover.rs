//! Several database members in one `--database-url`: the server follows
//! the member that answers, without a restart; and each schema hears only
//! its own invalidations. A real failover (a standby promoted, the old
//! primary demoted) is the soak's: bench/failover-soak.sh, in CI by
//! .ci/failover.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tessera::pb::{self, revoke_request::Target};
use tonic::Code;

use crate::support::{
    Backend, Keys, Options, Proxy, TestApp, TestDb, claim, config, mint_req, postgres_addr,
    postgres_url, revoke,
};

/// A server whose `--database-url` names one member per proxy, in order.
async fn spawn_on_members(proxies: &[&Proxy]) -> TestApp {
    let db = TestDb::new(Backend::Postgres).await;
    let first = db.url_via(proxies[0].addr);
    let others: Vec<String> = proxies[1..].iter().map(|p| p.addr.to_string()).collect();
    let url = first.replacen(
        &proxies[0].addr.to_string(),
        &format!("{},{}", proxies[0].addr, others.join(",")),
        1,
    );
    let keys = Keys::new();
    let clients = Some(keys.file.path().to_owned());
    TestApp::start_config(db, keys, config(&url, clients, &Options::default())).await
}

/// Mints until one is acknowledged: every failure on the way must be
/// UNAVAILABLE (retryable), never a denial or an internal error.
async fn mint_once_back(app: &TestApp) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match app.mint("minter", mint_req("u")).await {
            Ok(minted) => return minted.token,
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(std::time::Instant::now() < deadline, "no member taken over");
    }
}

/// The first member is gone before the server starts, and later the one it
/// moved to goes too: each time the server serves from the member that
/// answers, and what it acknowledged before stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_the_member_that_answers() {
    let upstream = postgres_addr().await;
    let (one, two) = (Proxy::start(upstream).await, Proxy::start(upstream).await);
    one.cut();
    let app = spawn_on_members(&[&one, &two]).await;
    let before = mint_once_back(&app).await;

    one.restore();
    two.cut();
    let after = mint_once_back(&app).await;
    for token in [&before, &after] {
        let claimed = app.claim("minter", claim(token)).await.unwrap();
        assert!(claimed.claimed);
    }
}

/// The invalidation channel is named by the schema: two deployments in
/// two schemas of one database each hear their own revokes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_schema_has_a_channel_of_its_own() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = TestApp::spawn(Backend::Postgres).await;
    let mut channels = Vec::new();
    for app in [&a, &b] {
        let pool = sqlx::PgPool::connect(app.db.url()).await.unwrap();
        let channel: String =
            sqlx::query_scalar("SELECT 'tessera_grants_' || left(md5(current_schema()), 16)")
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        channels.push(channel);
    }
    assert_ne!(channels[0], channels[1]);
    let mut listener = PgListener::connect(&postgres_url()).await.unwrap();
    listener
        .listen_all(channels.iter().map(String::as_str))
        .await
        .unwrap();

    for (app, channel) in [(&a, &channels[0]), (&b, &channels[1])] {
        let token = app.mint("minter", mint_req("u")).await.unwrap().token;
        app.revoke("minter", revoke(Target::Token(token)))
            .await
            .unwrap();
        // Notifications arrive in commit order: the next one is this revoke's.
        let heard = listener.recv().await.unwrap();
        assert_eq!(heard.channel(), channel.as_str());
    }
    // And the last use of a grant in one schema is heard on its channel only.
    let used = b
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
    assert!(b.claim("minter", claim(&used)).await.unwrap().claimed);
    assert_eq!(listener.recv().await.unwrap().channel(), channels[1]);
}
