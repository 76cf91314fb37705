//! The commands of the `tessera` binary (this module is the binary's, not
//! the library's): serving, the database's and seal key's upkeep, keys,
//! health, completions, and the operators' commands (`grants`, `clients`).
//!
//! Layout: `ops.rs` the commands on files and the database (migrate, rekey,
//! client-key, health); `hint.rs` what a failed connection most likely
//! means; `remote.rs` how the admin commands reach a server; `grants.rs`
//! and `clients.rs` those commands; `table.rs` their human-readable output.

mod clients;
mod grants;
mod hint;
mod ops;
mod remote;
mod table;

use std::process::ExitCode;

use clap::{ArgMatches, Parser, Subcommand, parser::ValueSource};
use tessera::{
    app::App,
    clients::Role,
    config::{Config, DEFAULT_DATABASE_URL, DatabaseUrl, redact_url},
    net::ClientTls,
    telemetry,
};
use tracing::info;

#[derive(Parser)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = "With no command, `tessera` serves (the flags above are `tessera serve`'s)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API and the HTTP face (what `tessera` alone does).
    #[command(
        long_about = "Serve the gRPC API (TokenAuthority, Credentials, health, \
                            reflection) and the HTTP face (OAuth 2.0 endpoints, probes, \
                            metrics) on --listen."
    )]
    Serve(Box<Config>),
    /// Apply the database migrations and exit.
    Migrate(DatabaseUrl),
    /// Re-seal every stored credential under the --seal-key file's first
    /// key, in batches, and report how many; then the file's other keys can
    /// be dropped. Safe while servers run, and safe to run again.
    Rekey {
        #[command(flatten)]
        database: DatabaseUrl,
        /// The seal-key file (`KEYID:64hexdigits` lines, the first current).
        #[arg(long, env = "TESSERA_SEAL_KEY")]
        seal_key: std::path::PathBuf,
        /// Rows read per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
    },
    /// Print a fresh client key (to stderr) and the clients-file entry that
    /// admits it (to stdout).
    ClientKey {
        /// The client's id (what audiences name).
        id: String,
        /// Roles to grant.
        #[arg(required = true, value_enum)]
        roles: Vec<Role>,
        /// The resource URI (RFC 8707) this client serves, for a resource
        /// server such as an MCP server: tokens for it are for this client.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Ask a running server whether it is SERVING; exit 0 if so, 1 if not
    /// (for container health checks that cannot speak gRPC themselves).
    Health {
        /// The server's address, `host:port`.
        #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:50051")]
        addr: String,
        /// Service to ask about ("" = the whole server).
        #[arg(long, default_value = "")]
        service: String,
        #[command(flatten)]
        tls: ClientTls,
    },
    /// Grants on a running server: mint, get, list, revoke, rotate.
    #[command(subcommand)]
    Grants(grants::Grants),
    /// Edit a clients file: add, list, remove, rotate-key (running servers
    /// reload it on change).
    #[command(subcommand)]
    Clients(clients::Clients),
    /// Print a shell completion script: `tessera completions bash >
    /// /etc/bash_completion.d/tessera`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

pub async fn run(mut cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let source = database_source(matches);
    match cli.command.take() {
        None => serve(cli.serve, source).await,
        Some(Command::Serve(config)) => serve(*config, source).await,
        Some(Command::Migrate(mut db)) => {
            let from = resolve_database_url(&mut db.url, source);
            ops::migrate(&db.config(), from).await
        }
        Some(Command::Rekey {
            mut database,
            seal_key,
            batch_size,
        }) => {
            let from = resolve_database_url(&mut database.url, source);
            ops::rekey(&database.config(), from, &seal_key, batch_size).await
        }
        Some(Command::ClientKey {
            id,
            roles,
            resource,
        }) => ops::client_key(&id, &roles, resource.as_deref()),
        Some(Command::Health { addr, service, tls }) => ops::health(&addr, service, &tls).await,
        Some(Command::Grants(command)) => command.run().await,
        Some(Command::Clients(command)) => command.run(),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "tessera", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where `--database-url` came from, for the commands that have it.
fn database_source(matches: &ArgMatches) -> Option<ValueSource> {
    let command = matches.subcommand().map_or(matches, |(_, sub)| sub);
    // `value_source` panics (in debug builds) on an id the command lacks.
    match command.try_contains_id("url") {
        Ok(_) => command.value_source("url"),
        Err(_) => None,
    }
}

/// `--database-url`, else TESSERA_DATABASE_URL, else DATABASE_URL (the
/// variable most tools and the tests use), else the SQLite file in the
/// working directory. Returns where the URL came from, for the start line.
fn resolve_database_url(url: &mut String, source: Option<ValueSource>) -> &'static str {
    match source {
        Some(ValueSource::CommandLine) => "--database-url",
        Some(ValueSource::EnvVariable) => "TESSERA_DATABASE_URL",
        _ => match std::env::var("DATABASE_URL") {
            Ok(from_env) if !from_env.is_empty() => {
                *url = from_env;
                "DATABASE_URL"
            }
            _ => {
                *url = DEFAULT_DATABASE_URL.to_owned();
                "the default: no --database-url, TESSERA_DATABASE_URL or DATABASE_URL"
            }
        },
    }
}

async fn serve(mut config: Config, source: Option<ValueSource>) -> anyhow::Result<ExitCode> {
    let from = resolve_database_url(&mut config.database.url, source);
    let _logs = telemetry::init(config.log_format);
    info!(database = %redact_url(&config.database.url), from, "database");
    let app = App::build(config).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("installing the SIGINT handler");
    };
    #[cfg(unix)]
    let term = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
