//! Where grants live, shared by `serve` and `migrate`.

use std::{fmt, time::Duration};

use clap::Args;

use super::parse_duration;

/// The database when none is named: a file in the working directory,
/// for trying Tessera out on one machine.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tessera.db";

#[derive(Args, Clone)]
#[command(next_help_heading = "Database")]
pub struct DatabaseConfig {
    /// `postgres://…` for replicas sharing one database, `sqlite://FILE`
    /// (created if missing) for one machine. Several PostgreSQL hosts, as
    /// libpq takes them (`postgres://h1:5432,h2:5432/db`), mean a
    /// replicated cluster: Tessera writes only to the member that accepts
    /// writes and follows it through a failover. Not given: DATABASE_URL,
    /// then sqlite://tessera.db in the working directory.
    #[arg(
        long = "database-url",
        env = "TESSERA_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL
    )]
    pub url: String,

    /// PostgreSQL standbys for reads that may lag a little: BOUNDED
    /// Validate and operators' Get and List, so that checks scale with
    /// standbys. Same syntax as --database-url, e.g.
    /// `postgres://h2:5432,h3:5432/db?target_session_attrs=prefer-standby`.
    /// A member is used only while it is a standby that has replayed what
    /// the primary had at most --cache-max-age ago; otherwise the primary
    /// answers. FULL Validate, claims and writes always go to the primary.
    #[arg(long = "database-read-url", env = "TESSERA_DATABASE_READ_URL")]
    pub read_url: Option<String>,

    /// How far behind the primary a standby may be and still answer
    /// (`--cache-max-age`, the bound BOUNDED answers keep).
    #[arg(skip = Duration::from_secs(2))]
    pub read_max_lag: Duration,

    /// Most database connections this process holds.
    #[arg(
        long = "db-max-connections",
        env = "TESSERA_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,

    /// How long a call waits for a database connection before UNAVAILABLE.
    #[arg(long = "db-acquire-timeout", env = "TESSERA_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub acquire_timeout: Duration,

    /// Longest a PostgreSQL statement may run before it is cancelled, so a
    /// stuck query cannot hold a call (or shutdown) forever.
    #[arg(long = "db-statement-timeout", env = "TESSERA_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub statement_timeout: Duration,
}

/// Only the database's URL: what `migrate` and `rekey` need (their one
/// connection at a time needs no pool flags).
#[derive(Args, Clone)]
pub struct DatabaseUrl {
    /// `postgres://…` or `sqlite://FILE`. Not given: DATABASE_URL, then
    /// sqlite://tessera.db in the working directory.
    #[arg(
        long = "database-url",
        env = "TESSERA_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL
    )]
    pub url: String,
}

impl DatabaseUrl {
    /// A pool of two connections, without a statement timeout: a migration
    /// or a rekey batch may rightly run long.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            read_url: None,
            read_max_lag: Duration::ZERO,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("read_url", &self.read_url.as_deref().map(redact_url))
            .field("read_max_lag", &self.read_max_lag)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// Hides the password of `scheme://user:password@host/...` and of a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => match rest[..at].split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
                    None => base.to_owned(),
                },
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_both_urls_passwords() {
        let db = DatabaseConfig {
            url: "postgres://app:hunter2@h1,h2/tessera".into(),
            read_url: Some("postgres://app:hunter3@h2,h3/tessera".into()),
            read_max_lag: Duration::from_secs(2),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        };
        let printed = format!("{db:?}");
        assert!(printed.contains("app:***@h2,h3"), "{printed}");
        assert!(!printed.contains("hunter"), "{printed}");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/tessera"),
            "postgres://app:***@db:5432/tessera"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/postgres"),
            "postgres://postgres@127.0.0.1/postgres"
        );
        assert_eq!(redact_url("sqlite://tessera.db"), "sqlite://tessera.db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=hunter2"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }
}
