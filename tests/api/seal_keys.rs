//! A server proves its `--seal-key` keys against the database before it
//! serves: one given another key under a key id in use refuses to start,
//! naming `--seal-key` and the id, so it never seals a credential the
//! other replicas cannot open. So does `tessera rekey`.

use tempfile::NamedTempFile;
use tessera::app::{App, Backend as Store};

use crate::{
    credentials::{ACCESS, K1, K2, get, put, secret, with_key},
    support::{Backend, Keys, TestApp, TestDb, config, seal_key_file},
};

crate::both_backends!(
    a_replica_with_another_key_under_the_same_id_refuses_to_start,
    of_two_servers_racing_on_an_empty_database_one_starts,
    a_database_from_before_the_checks_is_proven_by_its_credentials,
    rekey_proves_the_keys_before_it_writes,
);

/// Not the key the others have, under their key id.
const IMPOSTOR: &str = "3333333333333333333333333333333333333333333333333333333333333333";

macro_rules! call {
    ($app:expr, $client:expr, $method:ident, $message:expr) => {
        $app.credentials()
            .$method($app.req($client, $message))
            .await
            .map(tonic::Response::into_inner)
    };
}

/// Builds (without serving) a server on `db` with the seal-key file `key`:
/// the error if it refuses to start.
async fn build(db: &TestDb, keys: &Keys, key: &NamedTempFile) -> Result<App, String> {
    let mut config = config(db.url(), Some(keys.file.path().to_owned()), &with_key(key));
    // Migrated already: only the keys are raced.
    config.no_migrate = true;
    App::build(config).await.map_err(|err| format!("{err:#}"))
}

fn assert_names_the_key(err: &str, key: &NamedTempFile, key_id: &str) {
    assert!(
        err.contains("--seal-key") && err.contains(&key.path().display().to_string()),
        "{err}"
    );
    assert!(err.contains(&format!("key id \"{key_id}\"")), "{err}");
    assert!(
        !err.contains(&IMPOSTOR[..16]) && !err.contains(&K1[..16]),
        "{err}"
    );
}

async fn a_replica_with_another_key_under_the_same_id_refuses_to_start(backend: Backend) {
    let key = seal_key_file(&[("k1", K1)]);
    let app = TestApp::spawn_with(backend, with_key(&key)).await;
    call!(app, "minter", put, put("u1", ACCESS, None)).unwrap();
    // The attack: a replica started with another key under `k1`, as the
    // current key or as an older one beside a new current key.
    for wrong in [
        seal_key_file(&[("k1", IMPOSTOR)]),
        seal_key_file(&[("k2", K2), ("k1", IMPOSTOR)]),
    ] {
        let err = build(&app.db, &app.keys, &wrong).await.err();
        let err = err.expect("a replica with another key under k1 does not start");
        assert_names_the_key(&err, &wrong, "k1");
    }
    // What the first server wrote stays readable, there and on a replica
    // with the right key.
    let got = call!(app, "minter", get, get("u1")).unwrap();
    assert_eq!(got.secret, secret(ACCESS));
    let replica = app.replica(with_key(&key)).await;
    call!(replica, "minter", put, put("u2", ACCESS, None)).unwrap();
    for bearer in ["u1", "u2"] {
        let got = call!(app, "minter", get, get(bearer)).unwrap();
        assert_eq!(got.secret, secret(ACCESS));
    }
}

async fn of_two_servers_racing_on_an_empty_database_one_starts(backend: Backend) {
    let db = TestDb::new(backend).await;
    let keys = Keys::new();
    migrate(&db).await;
    let ours = seal_key_file(&[("k1", K1)]);
    let theirs = seal_key_file(&[("k1", IMPOSTOR)]);
    let (a, b) = tokio::join!(build(&db, &keys, &ours), build(&db, &keys, &theirs));
    let (winner, loser, err) = match (a, b) {
        (Ok(_), Err(err)) => (&ours, &theirs, err),
        (Err(err), Ok(_)) => (&theirs, &ours, err),
        (a, b) => panic!("exactly one starts: {:?} {:?}", a.err(), b.err()),
    };
    assert_names_the_key(&err, loser, "k1");
    // The first key stays the one: its holders start, the other's never.
    assert!(build(&db, &keys, winner).await.is_ok());
    assert!(build(&db, &keys, loser).await.is_err());
    // A fresh database takes whichever key comes first, and serves with it.
    let fresh = TestDb::new(backend).await;
    let app = TestApp::start(fresh, Keys::new(), with_key(&theirs)).await;
    call!(app, "minter", put, put("u1", ACCESS, None)).unwrap();
    let got = call!(app, "minter", get, get("u1")).unwrap();
    assert_eq!(got.secret, secret(ACCESS));
}

/// A database whose credentials were sealed before key checks existed:
/// the first key proven for an id must open one of them.
async fn a_database_from_before_the_checks_is_proven_by_its_credentials(backend: Backend) {
    let key = seal_key_file(&[("k1", K1)]);
    let app = TestApp::spawn_with(backend, with_key(&key)).await;
    call!(app, "minter", put, put("u1", ACCESS, None)).unwrap();
    let (db, keys) = app.stop().await;
    execute(&db, "DELETE FROM seal_key_checks").await;
    let wrong = seal_key_file(&[("k1", IMPOSTOR)]);
    let err = build(&db, &keys, &wrong).await.err();
    assert_names_the_key(&err.expect("the wrong key refused"), &wrong, "k1");
    let app = TestApp::start(db, keys, with_key(&key)).await;
    let got = call!(app, "minter", get, get("u1")).unwrap();
    assert_eq!(got.secret, secret(ACCESS));
    // Its check is recorded now: the wrong key stays out.
    assert!(build(&app.db, &app.keys, &wrong).await.is_err());
}

async fn rekey_proves_the_keys_before_it_writes(backend: Backend) {
    let key = seal_key_file(&[("k1", K1)]);
    let app = TestApp::spawn_with(backend, with_key(&key)).await;
    call!(app, "minter", put, put("u1", ACCESS, None)).unwrap();
    let (db, keys) = app.stop().await;
    let rekey = |file: &NamedTempFile| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["rekey", "--database-url", db.url(), "--seal-key"])
            .arg(file.path())
            .output()
            .unwrap()
    };
    let wrong_old = seal_key_file(&[("k2", K2), ("k1", IMPOSTOR)]);
    let refused = rekey(&wrong_old);
    assert!(!refused.status.success());
    assert_names_the_key(&String::from_utf8_lossy(&refused.stderr), &wrong_old, "k1");
    assert!(refused.stdout.is_empty(), "nothing resealed");
    let rotated = seal_key_file(&[("k2", K2), ("k1", K1)]);
    let done = rekey(&rotated);
    assert!(done.status.success(), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).starts_with("resealed 1 under key \"k2\""));
    // k2 is the database's now: only K2 starts under it.
    let wrong_new = seal_key_file(&[("k2", IMPOSTOR)]);
    let err = build(&db, &keys, &wrong_new).await.err();
    assert_names_the_key(&err.expect("another k2 refused"), &wrong_new, "k2");
    let app = TestApp::start(db, keys, with_key(&seal_key_file(&[("k2", K2)]))).await;
    let got = call!(app, "minter", get, get("u1")).unwrap();
    assert_eq!(got.secret, secret(ACCESS));
}

async fn migrate(db: &TestDb) {
    let config = config(db.url(), None, &Default::default());
    Store::open(&config.database)
        .unwrap()
        .migrate()
        .await
        .unwrap();
}

async fn execute(db: &TestDb, statement: &'static str) {
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}
