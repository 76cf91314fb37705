//! A database per test: a fresh PostgreSQL schema or SQLite file.

use std::net::SocketAddr;

/// `DATABASE_URL`, or the local PostgreSQL the README and CI use.
pub fn postgres_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Each test server's pool (in this process or a child): the suite stays
/// well within PostgreSQL's default 100 connections while another client
/// holds 50 (README, Testing).
pub const POOL_SIZE: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    tessera::token::os_random(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A database of its own: a fresh PostgreSQL schema or SQLite file, dropped
/// with the value.
pub struct TestDb {
    pub backend: Backend,
    url: String,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let schema = unique("t_");
                let base = postgres_url();
                let pool = sqlx::PgPool::connect(&base)
                    .await
                    .expect("PostgreSQL at DATABASE_URL (see README)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                Self {
                    backend,
                    // The schema names the connections too, so a test can
                    // find (and kill) its own server's connections.
                    url: format!(
                        "{base}{sep}options=-c%20search_path%3D{schema}&application_name={schema}"
                    ),
                    schema: Some(schema),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("tessera.db").display());
                Self {
                    backend,
                    url,
                    schema: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same database, for another server: the original cleans up.
    pub fn shared(&self) -> Self {
        Self {
            backend: self.backend,
            url: self.url.clone(),
            schema: None,
            _dir: None,
        }
    }

    /// This test's server connections that sit idle inside a transaction.
    pub async fn connections_in_transaction(&self) -> i64 {
        let schema = self.schema.clone().expect("PostgreSQL only");
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let (stuck,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        stuck
    }

    /// Kills every PostgreSQL connection the servers of this test hold, as
    /// a database restart would.
    pub async fn kill_connections(&self) -> i64 {
        let schema = self.schema.clone().expect("PostgreSQL only");
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let (killed,): (i64,) = sqlx::query_as(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        killed
    }

    /// A URL that reaches this database through `proxy` (PostgreSQL only).
    pub fn url_via(&self, proxy: SocketAddr) -> String {
        let rest = self
            .url
            .split_once('@')
            .expect("user@host in DATABASE_URL")
            .1;
        let path = &rest[rest.find('/').unwrap()..];
        let user = self
            .url
            .split_once("://")
            .unwrap()
            .1
            .split_once('@')
            .unwrap()
            .0;
        format!("postgres://{user}@{proxy}{path}")
    }

    /// Every stored byte of the grants table, one string per row, for
    /// checking that no secret reached the database.
    pub async fn dump(&self) -> Vec<Vec<u8>> {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let rows: Vec<(Vec<u8>,)> =
                    sqlx::query_as("SELECT convert_to(g::text, 'UTF8') || g.sealed_payload || g.token_hash FROM grants g")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                pool.close().await;
                rows.into_iter().map(|r| r.0).collect()
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT CAST(grant_id || token_hint || subject || audience || run_id || scopes \
                     || labels || issued_by AS BLOB) || sealed_payload || token_hash FROM grants",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                pool.close().await;
                rows.into_iter().map(|r| r.0).collect()
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Drop runs outside async; a short-lived runtime on its own thread
        // removes the schema.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&pool)
                        .await;
                        pool.close().await;
                    }
                })
        })
        .join();
    }
}

/// The upstream address of `DATABASE_URL`.
pub async fn postgres_addr() -> SocketAddr {
    let url = postgres_url();
    let host_port = url
        .split_once('@')
        .unwrap()
        .1
        .split(['/', '?'])
        .next()
        .unwrap()
        .to_owned();
    let with_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5432")
    };
    tokio::net::lookup_host(with_port)
        .await
        .unwrap()
        .next()
        .unwrap()
}
