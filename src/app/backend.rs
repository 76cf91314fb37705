//! The store behind a database URL, and the errors that say why it cannot
//! be reached: the pool only reports `pool timed out while waiting for an
//! open connection`, which names neither the host nor the cause, so start-up
//! opens one connection of its own first and explains its failure.

use std::{io::ErrorKind, path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{ConnectOptions, postgres::PgConnectOptions};

use crate::{
    config::DatabaseConfig,
    credentials::{Keyring, keycheck},
    store::{PgStore, SqliteStore, Store},
};

/// A store of either kind, chosen by the database URL's scheme.
pub enum Backend {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Backend {
    /// The store, not yet connected (the pool connects on first use).
    pub fn open(db: &DatabaseConfig) -> anyhow::Result<Self> {
        let url = db.url.as_str();
        if is_postgres(url) {
            Ok(Self::Postgres(PgStore::connect_lazy(db)?))
        } else if url.starts_with("sqlite:") {
            anyhow::ensure!(
                db.read_url.is_none(),
                "--database-read-url: SQLite has no standbys; it needs a postgres:// --database-url"
            );
            Ok(Self::Sqlite(SqliteStore::connect_lazy(db)?))
        } else {
            anyhow::bail!("--database-url must start with postgres://, postgresql:// or sqlite:")
        }
    }

    /// The store, after one connection proved that the database is there:
    /// what start-up and the commands use, so that an unreachable or missing
    /// database is named as such.
    pub async fn connect(db: &DatabaseConfig) -> anyhow::Result<Self> {
        // A cluster's members are tried in turn by the store itself, which
        // waits for the one that accepts writes; one host is probed here.
        if is_postgres(&db.url) && !names_several_hosts(&db.url) {
            probe_postgres(db).await?;
        }
        Self::open(db)
    }

    /// What the start line says about the store.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(store) => store.migrate().await,
            Self::Sqlite(store) => store.migrate().await,
        }
        .context("applying migrations")
    }

    /// Proves the `--seal-key` keys against what their ids sealed (see
    /// [`crate::credentials::keycheck`]): a server that would seal
    /// credentials the other replicas cannot open does not start.
    pub async fn prove_keys(&self, keyring: &Keyring, path: &Path) -> anyhow::Result<()> {
        match self {
            Self::Postgres(store) => keycheck::prove(store, keyring).await,
            Self::Sqlite(store) => keycheck::prove(store, keyring).await,
        }
        .with_context(|| format!("--seal-key {}", path.display()))
    }

    /// The versions of the embedded migrations the database lacks.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        match self {
            Self::Postgres(store) => store.unapplied_migrations().await,
            Self::Sqlite(store) => store.unapplied_migrations().await,
        }
    }

    /// With `--no-migrate`, the schema must be there already: a server
    /// that reported SERVING while every call failed would be worse than
    /// one that does not start.
    pub(super) async fn ensure_migrated(&self) -> anyhow::Result<()> {
        let missing = self.unapplied_migrations().await?;
        anyhow::ensure!(
            missing.is_empty(),
            "--no-migrate, but the database lacks migrations {missing:?} (or cannot be read): \
             run `tessera migrate --database-url ...` first, or start without --no-migrate"
        );
        Ok(())
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Whether a PostgreSQL URL lists several hosts (`postgres://h1,h2/db`).
fn names_several_hosts(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or("");
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    hosts.contains(',')
}

/// Opens and closes one connection, within the longer of the acquire
/// timeout and 5 s (a first connection may need DNS and TLS).
async fn probe_postgres(db: &DatabaseConfig) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(&db.url)
        .map_err(|err| anyhow::anyhow!("--database-url is not a PostgreSQL URL: {err}"))?;
    let wait = db.acquire_timeout.max(Duration::from_secs(5));
    let at = where_(&options);
    match tokio::time::timeout(wait, options.connect()).await {
        Ok(Ok(connection)) => {
            // Closing is a courtesy; the connection was what mattered.
            let _ = sqlx::Connection::close(connection).await;
            Ok(())
        }
        Ok(Err(err)) => Err(explain(&err, &options, &at)),
        Err(_) => anyhow::bail!(
            "PostgreSQL at {at} did not answer within {wait:?}: check --database-url's host and \
             port, and that a firewall lets the connection through"
        ),
    }
}

/// `host:port`, or the Unix socket, of the URL: never its password.
fn where_(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// One line that names the database, the cause and the fix.
fn explain(err: &sqlx::Error, options: &PgConnectOptions, at: &str) -> anyhow::Error {
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    match err {
        sqlx::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "cannot connect to PostgreSQL at {at}: connection refused (is PostgreSQL running \
             there? are --database-url's host and port right?)"
        ),
        sqlx::Error::Io(io) => anyhow::anyhow!("cannot connect to PostgreSQL at {at}: {io}"),
        sqlx::Error::Tls(tls) => anyhow::anyhow!(
            "TLS with PostgreSQL at {at} failed: {tls} (see sslmode and sslrootcert in \
             --database-url)"
        ),
        sqlx::Error::Database(db_err) => match db_err.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => anyhow::anyhow!(
                "PostgreSQL at {at} has no database {database:?}: create it (`createdb -h {} -p \
                 {} -U {user} {database}`) or name another one in --database-url",
                options.get_host(),
                options.get_port()
            ),
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => anyhow::anyhow!(
                "PostgreSQL at {at} refused user {user:?}: {} (check the user and password in \
                 --database-url)",
                db_err.message()
            ),
            _ => anyhow::anyhow!(
                "PostgreSQL at {at} refused the connection: {}",
                db_err.message()
            ),
        },
        other => anyhow::anyhow!("cannot connect to PostgreSQL at {at}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::names_several_hosts;

    #[test]
    fn a_host_list_is_told_from_one_host() {
        for (url, several) in [
            (
                "postgres://h1:5432,h2:5433/db?target_session_attrs=read-write",
                true,
            ),
            ("postgres://user:pa,ss@h1,h2/db", true),
            ("postgres://user:pa,ss@h1:5432/db", false),
            ("postgres://h1:5432/db?options=a,b", false),
            ("postgresql://localhost/db", false),
        ] {
            assert_eq!(names_several_hosts(url), several, "{url}");
        }
    }
}
