//! The Credentials service end to end: writes and their compare-and-set,
//! refresh leases, isolation between clients, input limits, sealing at
//! rest, restarts and key rotation.

use std::{collections::HashMap, time::Duration};

use tempfile::NamedTempFile;
use tessera::pb;
use tonic::Code;

use crate::support::{Backend, Options, TestApp, TestDb, seal_key_file};

crate::both_backends!(
    put_get_and_compare_and_set,
    refresh_due_follows_the_window,
    another_client_sees_nothing,
    a_refresh_lease_goes_to_one_caller_at_a_time,
    an_expired_lease_is_taken_over_and_its_holder_fenced_out,
    a_put_supersedes_a_refresh_in_progress,
    list_pages_names_and_versions,
    the_database_holds_no_secret,
    a_restart_keeps_credentials_and_leases,
    rekey_reseals_under_the_new_key,
);

pub(crate) const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub(crate) const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
pub(crate) const ACCESS: &[u8] = b"at-UPSTREAM-ACCESS-SECRET-0042";
pub(crate) const REFRESH: &[u8] = b"rt-UPSTREAM-REFRESH-SECRET-0042";

/// A server with the Credentials service on (key `k1`).
pub(crate) async fn spawn(backend: Backend) -> (TestApp, NamedTempFile) {
    let key = seal_key_file(&[("k1", K1)]);
    let app = TestApp::spawn_with(backend, with_key(&key)).await;
    (app, key)
}

pub(crate) fn with_key(key: &NamedTempFile) -> Options {
    Options {
        seal_key: Some(key.path().to_owned()),
        ..Options::default()
    }
}

pub(crate) fn secret(access: &[u8]) -> HashMap<String, Vec<u8>> {
    [
        ("access_token".to_owned(), access.to_vec()),
        ("refresh_token".to_owned(), REFRESH.to_vec()),
    ]
    .into()
}

pub(crate) fn put(bearer: &str, access: &[u8], if_version: Option<u64>) -> pb::PutRequest {
    pb::PutRequest {
        bearer_id: bearer.into(),
        name: "github".into(),
        secret: secret(access),
        expires_at: None,
        if_version,
    }
}

pub(crate) fn get(bearer: &str) -> pb::GetRequest {
    pb::GetRequest {
        bearer_id: bearer.into(),
        name: "github".into(),
        refresh_window: None,
    }
}

pub(crate) fn begin(bearer: &str, ttl: Duration) -> pb::BeginRefreshRequest {
    pb::BeginRefreshRequest {
        bearer_id: bearer.into(),
        name: "github".into(),
        lease_ttl: Some(ttl.try_into().unwrap()),
    }
}

pub(crate) fn complete(lease_id: &str, access: &[u8]) -> pb::CompleteRefreshRequest {
    pb::CompleteRefreshRequest {
        lease_id: lease_id.into(),
        secret: secret(access),
        expires_at: None,
    }
}

fn at(from_now: Duration) -> prost_types::Timestamp {
    (std::time::SystemTime::now() + from_now).into()
}

macro_rules! call {
    ($app:expr, $client:expr, $method:ident, $message:expr) => {
        $app.credentials()
            .$method($app.req($client, $message))
            .await
            .map(tonic::Response::into_inner)
    };
}

async fn put_get_and_compare_and_set(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    let created = call!(app, "minter", put, put("u1", b"at-1", Some(0))).unwrap();
    assert_eq!(created.version, 1);
    let again = call!(app, "minter", put, put("u1", b"at-x", Some(0))).unwrap_err();
    assert_eq!(again.code(), Code::Aborted, "{again:?}");
    assert_eq!(
        call!(app, "minter", put, put("u1", b"at-2", Some(1)))
            .unwrap()
            .version,
        2
    );
    let stale = call!(app, "minter", put, put("u1", b"at-x", Some(1))).unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let missing = call!(app, "minter", put, put("u2", b"at-x", Some(4))).unwrap_err();
    assert_eq!(missing.code(), Code::Aborted, "{missing:?}");
    let expires = at(Duration::from_secs(3600));
    let unconditional = pb::PutRequest {
        expires_at: Some(expires),
        ..put("u1", b"at-3", None)
    };
    assert_eq!(call!(app, "minter", put, unconditional).unwrap().version, 3);
    let got = call!(app, "minter", get, get("u1")).unwrap();
    assert_eq!(got.version, 3);
    assert_eq!(got.secret, secret(b"at-3"));
    assert_eq!(got.expires_at.unwrap().seconds, expires.seconds);
    assert!(!got.refresh_due);
    // Unconditional Put creates, too; Delete removes; Get is then NOT_FOUND.
    assert_eq!(
        call!(app, "minter", put, put("u3", b"a", None))
            .unwrap()
            .version,
        1
    );
    let delete = pb::DeleteRequest {
        bearer_id: "u3".into(),
        name: "github".into(),
    };
    assert!(
        call!(app, "minter", delete, delete.clone())
            .unwrap()
            .deleted
    );
    assert!(!call!(app, "minter", delete, delete).unwrap().deleted);
    let gone = call!(app, "minter", get, get("u3")).unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

async fn refresh_due_follows_the_window(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    let soon = pb::PutRequest {
        expires_at: Some(at(Duration::from_secs(60))),
        ..put("u", b"at", None)
    };
    call!(app, "minter", put, soon).unwrap();
    // Default window: 5 minutes; the token expires in one.
    assert!(call!(app, "minter", get, get("u")).unwrap().refresh_due);
    let narrow = pb::GetRequest {
        refresh_window: Some(Duration::from_secs(10).try_into().unwrap()),
        ..get("u")
    };
    assert!(!call!(app, "minter", get, narrow).unwrap().refresh_due);
    // Already expired: due even with a zero window.
    let past = pb::PutRequest {
        expires_at: Some((std::time::SystemTime::now() - Duration::from_secs(1)).into()),
        ..put("v", b"at", None)
    };
    call!(app, "minter", put, past).unwrap();
    let zero = pb::GetRequest {
        refresh_window: Some(prost_types::Duration::default()),
        ..get("v")
    };
    assert!(call!(app, "minter", get, zero).unwrap().refresh_due);
    // No known expiry: never due.
    call!(app, "minter", put, put("w", b"at", None)).unwrap();
    let got = call!(app, "minter", get, get("w")).unwrap();
    assert!(!got.refresh_due && got.expires_at.is_none());
}

async fn another_client_sees_nothing(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    call!(app, "minter", put, put("u", ACCESS, None)).unwrap();
    let foreign = call!(app, "other", get, get("u")).unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    let refresh = call!(
        app,
        "other",
        begin_refresh,
        begin("u", Duration::from_secs(5))
    );
    assert_eq!(refresh.unwrap_err().code(), Code::NotFound);
    let list = pb::ListRequest {
        bearer_id: "u".into(),
        ..Default::default()
    };
    assert!(
        call!(app, "other", list, list.clone())
            .unwrap()
            .credentials
            .is_empty()
    );
    // The same bearer under another client is another credential.
    call!(app, "other", put, put("u", b"at-other", Some(0))).unwrap();
    assert_eq!(
        call!(app, "minter", get, get("u")).unwrap().secret,
        secret(ACCESS)
    );
    assert_eq!(
        call!(app, "other", get, get("u")).unwrap().secret,
        secret(b"at-other")
    );
    // A lease of one client is nothing to another.
    let lease = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(5))
    )
    .unwrap()
    .lease_id;
    let stolen = call!(app, "other", complete_refresh, complete(&lease, b"x")).unwrap_err();
    assert_eq!(stolen.code(), Code::FailedPrecondition, "{stolen:?}");
    let stolen = pb::AbortRefreshRequest {
        lease_id: lease.clone(),
    };
    let stolen = call!(app, "other", abort_refresh, stolen).unwrap_err();
    assert_eq!(stolen.code(), Code::FailedPrecondition);
    assert_eq!(call!(app, "minter", get, get("u")).unwrap().version, 1);
    // A client without the role is refused before anything is read.
    let denied = call!(app, "reader", get, get("u")).unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("credentials"), "{denied:?}");
    let anonymous = call!(app, "", list, list).unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

async fn a_refresh_lease_goes_to_one_caller_at_a_time(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    call!(app, "minter", put, put("u", b"at-old", None)).unwrap();
    let ttl = Duration::from_secs(30);
    let first = call!(app, "minter", begin_refresh, begin("u", ttl)).unwrap();
    assert!(first.granted && first.lease_id.starts_with("lse_"));
    assert_eq!((first.version, first.fence), (1, 1));
    let second = call!(app, "minter", begin_refresh, begin("u", ttl)).unwrap();
    assert!(!second.granted && second.lease_id.is_empty());
    assert_eq!(second.holder_expires_at, first.holder_expires_at);
    // Readers see the old version while the refresh runs.
    let during = call!(app, "minter", get, get("u")).unwrap();
    assert_eq!((during.version, during.secret), (1, secret(b"at-old")));
    let done = call!(
        app,
        "minter",
        complete_refresh,
        complete(&first.lease_id, b"at-new")
    );
    assert_eq!(done.unwrap().version, 2);
    let after = call!(app, "minter", get, get("u")).unwrap();
    assert_eq!((after.version, after.secret), (2, secret(b"at-new")));
    // The lease is spent: completing or aborting it again writes nothing.
    let again = call!(
        app,
        "minter",
        complete_refresh,
        complete(&first.lease_id, b"x")
    );
    let again = again.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("nothing was written"), "{again:?}");
    let abort = pb::AbortRefreshRequest {
        lease_id: first.lease_id.clone(),
    };
    let abort = call!(app, "minter", abort_refresh, abort).unwrap_err();
    assert_eq!(abort.code(), Code::FailedPrecondition);
    // The next lease has a greater fence; aborting it frees the lease.
    let next = call!(app, "minter", begin_refresh, begin("u", ttl)).unwrap();
    assert!(next.granted);
    assert_eq!((next.version, next.fence), (2, 2));
    let abort = pb::AbortRefreshRequest {
        lease_id: next.lease_id,
    };
    call!(app, "minter", abort_refresh, abort).unwrap();
    let last = call!(app, "minter", begin_refresh, begin("u", ttl)).unwrap();
    assert!(last.granted && last.fence == 3);
    assert_eq!(call!(app, "minter", get, get("u")).unwrap().version, 2);
}

async fn an_expired_lease_is_taken_over_and_its_holder_fenced_out(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    call!(app, "minter", put, put("u", b"at-old", None)).unwrap();
    // 3 s: slack for the second ask, which must come while the lease holds.
    let short = Duration::from_secs(3);
    let dead = call!(app, "minter", begin_refresh, begin("u", short)).unwrap();
    assert!(dead.granted);
    assert!(
        !call!(app, "minter", begin_refresh, begin("u", short))
            .unwrap()
            .granted
    );
    // The lease ran from before its answer came.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let heir = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    )
    .unwrap();
    assert!(heir.granted);
    assert_eq!(heir.fence, dead.fence + 1);
    // The dead holder wakes up: its completion is refused and writes nothing.
    let late = call!(
        app,
        "minter",
        complete_refresh,
        complete(&dead.lease_id, b"at-late")
    );
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    let got = call!(app, "minter", get, get("u")).unwrap();
    assert_eq!((got.version, got.secret), (1, secret(b"at-old")));
    // Even with nobody after it, an expired lease completes nothing.
    let done = call!(
        app,
        "minter",
        complete_refresh,
        complete(&heir.lease_id, b"at-new")
    );
    assert_eq!(done.unwrap().version, 2);
    let brief = Duration::from_millis(300);
    let lapsed = call!(app, "minter", begin_refresh, begin("u", brief)).unwrap();
    tokio::time::sleep(brief + Duration::from_millis(100)).await;
    let late = call!(
        app,
        "minter",
        complete_refresh,
        complete(&lapsed.lease_id, b"x")
    );
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(call!(app, "minter", get, get("u")).unwrap().version, 2);
}

async fn a_put_supersedes_a_refresh_in_progress(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    call!(app, "minter", put, put("u", b"at-1", None)).unwrap();
    let lease = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    )
    .unwrap()
    .lease_id;
    // The user authorised again: a new secret, put outright.
    call!(app, "minter", put, put("u", b"at-reauthorised", None)).unwrap();
    let stale = call!(
        app,
        "minter",
        complete_refresh,
        complete(&lease, b"at-from-old")
    );
    assert_eq!(stale.unwrap_err().code(), Code::FailedPrecondition);
    let got = call!(app, "minter", get, get("u")).unwrap();
    assert_eq!((got.version, got.secret), (2, secret(b"at-reauthorised")));
    // The lease went with it: the next refresher need not wait.
    let next = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    );
    assert!(next.unwrap().granted);
}

async fn list_pages_names_and_versions(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    for name in ["c", "a", "b"] {
        let m = pb::PutRequest {
            name: name.into(),
            ..put("u", ACCESS, None)
        };
        call!(app, "minter", put, m).unwrap();
    }
    call!(
        app,
        "minter",
        put,
        pb::PutRequest {
            name: "b".into(),
            ..put("u", ACCESS, None)
        }
    )
    .unwrap();
    let first = pb::ListRequest {
        bearer_id: "u".into(),
        page_size: 2,
        page_token: String::new(),
    };
    let page = call!(app, "minter", list, first.clone()).unwrap();
    let names: Vec<_> = page
        .credentials
        .iter()
        .map(|c| (c.name.as_str(), c.version))
        .collect();
    assert_eq!(names, [("a", 1), ("b", 2)]);
    assert_eq!(page.next_page_token, "b");
    let rest = pb::ListRequest {
        page_token: page.next_page_token,
        ..first
    };
    let page = call!(app, "minter", list, rest).unwrap();
    assert_eq!(page.credentials.len(), 1);
    assert_eq!(page.credentials[0].name, "c");
    assert!(page.next_page_token.is_empty());
}

/// Every stored byte of the credentials table, one string per row.
pub(crate) async fn dump(db: &TestDb) -> Vec<Vec<u8>> {
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
            let rows: Vec<(Vec<u8>,)> =
                sqlx::query_as("SELECT convert_to(c::text, 'UTF8') || c.sealed FROM credentials c")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            rows.into_iter().map(|r| r.0).collect()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
            let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                "SELECT CAST(client_id || bearer_id || name || key_id || \
                 coalesce(lease_id, '') AS BLOB) || sealed FROM credentials",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            rows.into_iter().map(|r| r.0).collect()
        }
    }
}

pub(crate) fn assert_no_secret(haystack: &[u8]) {
    let contains = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    for secret in [ACCESS, REFRESH, &b"at-refreshed-SECRET"[..]] {
        assert!(!contains(&secret[..16]), "a secret was found");
        assert!(
            !contains(hex::encode(secret).as_bytes()),
            "a secret (hex) was found"
        );
    }
    assert!(
        !contains(K1.as_bytes()) && !contains(K2.as_bytes()),
        "a seal key was found"
    );
}

async fn the_database_holds_no_secret(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    call!(app, "minter", put, put("u", ACCESS, None)).unwrap();
    let lease = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    )
    .unwrap()
    .lease_id;
    call!(
        app,
        "minter",
        complete_refresh,
        complete(&lease, b"at-refreshed-SECRET")
    )
    .unwrap();
    call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    )
    .unwrap();
    let rows = dump(&app.db).await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].windows(6).any(|w| w == b"minter"),
        "the dump holds the row"
    );
    assert_no_secret(&rows[0]);
}

async fn a_restart_keeps_credentials_and_leases(backend: Backend) {
    let (app, key) = spawn(backend).await;
    call!(app, "minter", put, put("u", b"at-old", None)).unwrap();
    let lease = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    )
    .unwrap()
    .lease_id;
    let (db, keys) = app.stop().await;
    let app = TestApp::start(db, keys, with_key(&key)).await;
    let got = call!(app, "minter", get, get("u")).unwrap();
    assert_eq!((got.version, got.secret), (1, secret(b"at-old")));
    let blocked = call!(
        app,
        "minter",
        begin_refresh,
        begin("u", Duration::from_secs(30))
    );
    assert!(!blocked.unwrap().granted, "the lease survived the restart");
    let done = call!(app, "minter", complete_refresh, complete(&lease, b"at-new"));
    assert_eq!(done.unwrap().version, 2);
}

async fn rekey_reseals_under_the_new_key(backend: Backend) {
    let (app, old) = spawn(backend).await;
    for bearer in ["u1", "u2", "u3"] {
        call!(app, "minter", put, put(bearer, ACCESS, None)).unwrap();
    }
    call!(app, "other", put, put("u1", ACCESS, None)).unwrap();
    let (db, keys) = app.stop().await;
    let rotated = seal_key_file(&[("k2", K2), ("k1", K1)]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("rekey")
        .arg("--database-url")
        .arg(db.url())
        .arg("--seal-key")
        .arg(rotated.path())
        .args(["--batch-size", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.starts_with("resealed 4 under key \"k2\""),
        "{stdout}"
    );
    // Again: nothing left to do.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["rekey", "--database-url", db.url(), "--seal-key"])
        .arg(rotated.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("resealed 0"));
    // The old key can go: a server with only k2 reads everything.
    let only_new = seal_key_file(&[("k2", K2)]);
    let app = TestApp::start(db, keys, with_key(&only_new)).await;
    for bearer in ["u1", "u2", "u3"] {
        let got = call!(app, "minter", get, get(bearer)).unwrap();
        assert_eq!(got.secret, secret(ACCESS));
    }
    assert_eq!(call!(app, "other", get, get("u1")).unwrap().version, 1);
    let (db, keys) = app.stop().await;
    // And a server with only the old key cannot: INTERNAL, nothing leaked.
    let app = TestApp::start(db, keys, with_key(&old)).await;
    let err = call!(app, "minter", get, get("u1")).unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(err.message(), "internal error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_seal_key_every_call_says_how_to_enable_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let errors = [
        call!(app, "minter", put, put("u", ACCESS, None)).unwrap_err(),
        call!(app, "minter", get, get("u")).unwrap_err(),
        call!(
            app,
            "minter",
            begin_refresh,
            begin("u", Duration::from_secs(1))
        )
        .unwrap_err(),
        call!(app, "minter", complete_refresh, complete("bad", ACCESS)).unwrap_err(),
        call!(app, "minter", list, pb::ListRequest::default()).unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains("--seal-key") && err.message().contains("TESSERA_SEAL_KEY"),
            "{err:?}"
        );
    }
    // The role is still checked first.
    let denied = call!(app, "reader", get, get("u")).unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_writes_nothing() {
    let (app, _key) = spawn(Backend::Sqlite).await;
    let big = vec![0u8; 64 * 1024 + 1];
    let cases: Vec<(pb::PutRequest, &str)> = vec![
        (put("", ACCESS, None), "bearer_id: is required"),
        (
            put(&"b".repeat(257), ACCESS, None),
            "bearer_id: must be at most 256 bytes",
        ),
        (
            put("a\nb", ACCESS, None),
            "bearer_id: must not contain control",
        ),
        (
            pb::PutRequest {
                name: String::new(),
                ..put("u", ACCESS, None)
            },
            "name: is required",
        ),
        (
            pb::PutRequest {
                name: "x\u{202E}".into(),
                ..put("u", ACCESS, None)
            },
            "name: must not contain invisible",
        ),
        (
            pb::PutRequest {
                secret: HashMap::new(),
                ..put("u", ACCESS, None)
            },
            "secret: must have at least one part",
        ),
        (
            pb::PutRequest {
                secret: [("t".to_owned(), big)].into(),
                ..put("u", ACCESS, None)
            },
            "secret[t]: must be at most 65536 bytes",
        ),
        (
            pb::PutRequest {
                secret: (0..33).map(|i| (i.to_string(), vec![])).collect(),
                ..put("u", ACCESS, None)
            },
            "secret: must have at most 32 parts",
        ),
        (
            pb::PutRequest {
                expires_at: Some(prost_types::Timestamp {
                    seconds: -5,
                    nanos: 0,
                }),
                ..put("u", ACCESS, None)
            },
            "expires_at: must be a valid time",
        ),
    ];
    for (request, expected) in cases {
        let err = call!(app, "minter", put, request).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(expected), "{expected}: {err:?}");
        assert!(!err.message().contains("at-UPSTREAM"), "{err:?}");
    }
    let negative = prost_types::Duration {
        seconds: -1,
        nanos: 0,
    };
    let err = call!(
        app,
        "minter",
        get,
        pb::GetRequest {
            refresh_window: Some(negative),
            ..get("u")
        }
    )
    .unwrap_err();
    assert!(err.message().starts_with("refresh_window:"), "{err:?}");
    let long = Duration::from_secs(7200);
    let err = call!(app, "minter", begin_refresh, begin("u", long)).unwrap_err();
    assert!(
        err.message()
            .starts_with("lease_ttl: must be at most 1 hour"),
        "{err:?}"
    );
    let err = call!(
        app,
        "minter",
        complete_refresh,
        complete("lse_nope", ACCESS)
    )
    .unwrap_err();
    assert!(err.message().starts_with("lease_id:"), "{err:?}");
    let err = call!(
        app,
        "minter",
        list,
        pb::ListRequest {
            bearer_id: "u".into(),
            page_size: 5000,
            ..Default::default()
        }
    )
    .unwrap_err();
    assert!(err.message().starts_with("page_size:"), "{err:?}");
    assert!(dump(&app.db).await.is_empty(), "nothing was written");
}
