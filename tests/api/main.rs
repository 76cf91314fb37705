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
mod resources;
mod retry;
mod rules;
mod seal_keys;
mod secrets;
mod signin;
mod statements;
mod tls;
mod use_cases;

/// Instantiates each async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
    };
}
