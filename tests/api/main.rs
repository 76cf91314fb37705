//! End-to-end tests: the real server over real TCP gRPC, against a real
//! PostgreSQL (at DATABASE_URL) and SQLite.

mod support;

mod admin;
mod attacks;
mod auth;
mod cache;
mod cli;
mod conformance;
mod connections;
mod credentials;
mod credentials_race;
mod credentials_store;
mod exchange;
mod failover;
mod family;
mod family_race;
mod faults;
mod http;
mod http_clients;
mod input;
mod keyed_race;
mod lineage;
mod log_forgery;
mod logs;
mod ops;
mod overload;
mod race;
mod replicas;
mod resources;
mod retry;
mod rules;
mod seal_keys;
mod secrets;
mod signin;
mod statements;
mod store_lineage;
mod tls;
mod use_cases;

/// Instantiates each async test body once per backend: the one way a test
/// runs on both databases. A body takes the [`support::Backend`]
/// (`both_backends!(a, b)`), or what `run` makes of it
/// (`both_backends!(run: super::with_store; a, b)` hands each body a
/// migrated store).
#[macro_export]
macro_rules! both_backends {
    (run: $run:path; $($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $run($crate::support::Backend::Postgres, super::$name).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $run($crate::support::Backend::Sqlite, super::$name).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::both_backends!(run: $crate::support::on_backend; $($name),*);
    };
}
