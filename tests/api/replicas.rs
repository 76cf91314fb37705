//! Read replicas and revisions, on a real Patroni cluster (one primary, a
//! synchronous standby and another standby): `.ci/failover` starts it with
//! deploy/patroni/cluster.sh and runs these tests with `TESSERA_HA_URL` and
//! `TESSERA_HA_READ_URL` set. Without them each test says loudly that it
//! did not run; they need standbys, which a lone PostgreSQL has not.
//!
//! What standbys answer is made visible by pausing their replay
//! (`pg_wal_replay_pause()`): a paused standby keeps the past, so an
//! answer that knows a new write came from the primary.

use sqlx::PgPool;
use tessera::pb::{self, revoke_request::Target};

use crate::support::{
    Backend, Keys, Options, TestApp, TestDb, check, config, eventually, mint_req, revoke,
};

/// The cluster's write and read URLs, or `None` (said loudly) without one.
fn cluster() -> Option<(String, String)> {
    match (
        std::env::var("TESSERA_HA_URL"),
        std::env::var("TESSERA_HA_READ_URL"),
    ) {
        (Ok(write), Ok(read)) => Some((write, read)),
        _ => {
            eprintln!(
                "\n*** SKIPPED: no Patroni cluster (TESSERA_HA_URL, TESSERA_HA_READ_URL unset); \
                 .ci/failover runs this test on one ***\n"
            );
            None
        }
    }
}

/// One URL per host of a multi-host URL.
fn members(url: &str) -> Vec<String> {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (hosts, path) = rest.split_at(rest.find('/').unwrap());
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    hosts
        .split(',')
        .map(|host| format!("{scheme}://{user}@{host}{path}"))
        .collect()
}

/// The cluster's members by role: the primary's pool, then the standbys'.
/// Waits (boundedly) for a primary and a standby: a cluster on a busy
/// machine may be between two leaders when the test starts.
async fn roles(url: &str) -> (PgPool, Vec<PgPool>) {
    let mut found = None;
    eventually("a primary and a standby", async || {
        let (mut primary, mut standbys) = (None, Vec::new());
        for member in members(url) {
            let Ok(pool) = PgPool::connect(&member).await else {
                continue;
            };
            match sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&pool)
                .await
            {
                Ok(true) => standbys.push(pool),
                Ok(false) => primary = Some(pool),
                Err(_) => {}
            }
        }
        match primary {
            Some(primary) if !standbys.is_empty() => {
                found = Some((primary, standbys));
                true
            }
            _ => false,
        }
    })
    .await;
    found.unwrap()
}

/// Pauses the standbys' replay for as long as it lives; resumes it when
/// dropped, even if the test failed, so the cluster is left streaming.
struct Paused(Vec<PgPool>);

impl Paused {
    async fn new(standbys: &[PgPool]) -> Self {
        for standby in standbys {
            sqlx::query("SELECT pg_wal_replay_pause()")
                .execute(standby)
                .await
                .unwrap();
        }
        Self(standbys.to_vec())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let standbys = std::mem::take(&mut self.0);
        // A runtime of its own: the test's may be the one going away.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for standby in standbys {
                    let _ = sqlx::query("SELECT pg_wal_replay_resume()")
                        .execute(&standby)
                        .await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// A server on a schema of its own in the cluster, reading from its
/// standbys; with the schema and the standbys' pools.
async fn spawn(write: &str, read: &str) -> (TestApp, String, Vec<PgPool>) {
    let (primary, standbys) = roles(write).await;
    let schema = format!("t_{}", hex::encode(rand_bytes()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&primary)
        .await
        .unwrap();
    let on_schema = |url: &str| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{schema}&application_name={schema}")
    };
    let keys = Keys::new();
    let options = Options {
        read_url: Some(on_schema(read)),
        ..Options::default()
    };
    let config = config(
        &on_schema(write),
        Some(keys.file.path().to_owned()),
        &options,
    );
    // The server's database is the cluster's; this one only fills the
    // harness's slot.
    let placeholder = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::start_config(placeholder, keys, config).await;
    (app, schema, standbys)
}

fn rand_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    tessera::token::os_random(&mut bytes);
    bytes
}

fn bounded(token: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        consistency: pb::Consistency::Bounded as i32,
        ..check(token)
    }
}

/// How many index scans the standbys ran on this schema's grants: what
/// only a read served by a standby adds to.
async fn standby_scans(standbys: &[PgPool], schema: &str) -> i64 {
    let mut scans = 0;
    for standby in standbys {
        let count: Option<i64> = sqlx::query_scalar(
            "SELECT sum(idx_scan)::bigint FROM pg_stat_user_tables \
             WHERE schemaname = $1 AND relname = 'grants'",
        )
        .bind(schema)
        .fetch_one(standby)
        .await
        .unwrap();
        scans += count.unwrap_or(0);
    }
    scans
}

/// BOUNDED Validates of grants the cache has not seen are answered by a
/// standby; a FULL Validate, a claim and every write by the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_answer_bounded_validates() {
    let Some((write, read)) = cluster() else {
        return;
    };
    let (app, schema, standbys) = spawn(&write, &read).await;
    let before = standby_scans(&standbys, &schema).await;
    // Each a new grant, so a cache miss: once a standby is confirmed
    // within the bound, such misses go to it.
    eventually("a standby answers a BOUNDED Validate", async || {
        let minted = app.mint("minter", mint_req("u")).await.unwrap();
        let answer = app
            .validate("minter", bounded(&minted.token))
            .await
            .unwrap();
        assert!(answer.valid || answer.denial == pb::Denial::TokenUnknown as i32);
        standby_scans(&standbys, &schema).await > before
    })
    .await;
}

/// With the standbys' replay paused, a BOUNDED Validate that names a
/// Mint's or a Revoke's revision still sees that write (the primary
/// answers), and one that names none is answered by the primary once the
/// standbys fall out of the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_is_honoured_while_standbys_lag() {
    let Some((write, read)) = cluster() else {
        return;
    };
    let (app, _, standbys) = spawn(&write, &read).await;
    let _paused = Paused::new(&standbys).await;

    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    assert!(!minted.revision.is_empty(), "Mint returns a revision");
    let at_least = |revision: &str| pb::ValidateRequest {
        at_least_as_fresh: revision.to_owned(),
        ..bounded(&minted.token)
    };
    let answer = app
        .validate("minter", at_least(&minted.revision))
        .await
        .unwrap();
    assert!(answer.valid, "the mint is seen: {answer:?}");

    let grant_id = minted.grant.unwrap().grant_id;
    let revoked = app
        .revoke("minter", revoke(Target::GrantId(grant_id)))
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 1);
    let answer = app
        .validate("minter", at_least(&revoked.revision))
        .await
        .unwrap();
    assert!(!answer.valid, "the revoke is seen: {answer:?}");

    // Without a revision: within the bound a paused standby may answer
    // (the grant unknown to it); past it, only the primary does.
    let other = app.mint("minter", mint_req("u")).await.unwrap();
    eventually("the lagging standbys stop answering", async || {
        app.validate("minter", bounded(&other.token))
            .await
            .unwrap()
            .valid
    })
    .await;
}

/// A revision that is not one is refused by name, and nothing is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_revision_is_refused_by_name() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    assert_eq!(minted.revision, "", "no read replicas, no revision");
    for revision in ["x", "1/", "12345678901/0"] {
        let status = app
            .validate(
                "minter",
                pb::ValidateRequest {
                    at_least_as_fresh: revision.to_owned(),
                    ..bounded(&minted.token)
                },
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("at_least_as_fresh"), "{status:?}");
    }
}
