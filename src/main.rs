//! The `tessera` binary: parse flags, set up logs, run one command.

use clap::{Parser, Subcommand};
use tessera::{
    app::{App, Backend},
    clients::Role,
    config::{Config, DatabaseConfig},
    net::ClientTls,
    telemetry,
    token::ClientKey,
};

#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command, `tessera` serves with these flags.
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (the default).
    Serve(Box<Config>),
    /// Apply the database migrations and exit.
    Migrate(DatabaseConfig),
    /// Re-seal every stored credential under the --seal-key file's first
    /// key, in batches, and report how many; then the file's other keys can
    /// be dropped. Safe while servers run, and safe to run again.
    Rekey {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The seal-key file (`KEYID:64hexdigits` lines, the first current).
        #[arg(long, env = "TESSERA_SEAL_KEY")]
        seal_key: std::path::PathBuf,
        /// Rows read per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
    },
    /// Print a fresh client key and the clients-file entry that admits it.
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Migrate(db)) => {
            let _logs = telemetry::init(tessera::config::LogFormat::Text);
            Backend::open(&db)?.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::Rekey {
            database,
            seal_key,
            batch_size,
        }) => rekey(&database, &seal_key, batch_size).await,
        Some(Command::ClientKey {
            id,
            roles,
            resource,
        }) => {
            tessera::input::required_id("id", id.clone())?;
            let resource = resource
                .map(|uri| tessera::resource::canonical(&uri))
                .transpose()
                .map_err(|why| anyhow::anyhow!("--resource: {why}"))?;
            let key = ClientKey::generate();
            let roles: Vec<String> = roles.iter().map(|r| format!("\"{}\"", r.name())).collect();
            // The key goes to the terminal only; stdout is the entry to append
            // to the clients file, which must never hold a key.
            eprintln!("client key for {id} (shown once, give it to the client):");
            eprintln!("{}", key.expose());
            println!("[[clients]]");
            // Debug quoting escapes `"` and `\` as TOML expects (control
            // characters were refused above).
            println!("id = {id:?}");
            println!("key_sha256 = \"{}\"", key.sha256_hex());
            println!("roles = [{}]", roles.join(", "));
            if let Some(uri) = resource {
                println!("resource = {uri:?}");
            }
            Ok(())
        }
        Some(Command::Health { addr, service, tls }) => health(&addr, service, &tls).await,
    }
}

async fn rekey(
    database: &DatabaseConfig,
    seal_key: &std::path::Path,
    batch: u32,
) -> anyhow::Result<()> {
    use tessera::credentials::{Keyring, rekey::rekey};
    let _logs = telemetry::init(tessera::config::LogFormat::Text);
    let keyring = Keyring::load(seal_key)?;
    let backend = Backend::open(database)?;
    // Nothing is resealed under a key the servers do not share.
    backend.prove_keys(&keyring, seal_key).await?;
    let report = match backend {
        Backend::Postgres(store) => rekey(&store, &keyring, batch).await,
        Backend::Sqlite(store) => rekey(&store, &keyring, batch).await,
    }?;
    println!(
        "resealed {} under key {:?}; {} changed meanwhile (already rewritten; run again to be \
         sure); {} did not open",
        report.resealed,
        keyring.current(),
        report.changed,
        report.unopenable
    );
    anyhow::ensure!(
        report.unopenable == 0,
        "{} credentials are sealed under keys the --seal-key file lacks (see the log above)",
        report.unopenable
    );
    Ok(())
}

async fn health(addr: &str, service: String, tls: &ClientTls) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let timeout = std::time::Duration::from_secs(2);
    let channel = tls
        .endpoint(addr)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await?;
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    if status != ServingStatus::Serving {
        std::process::exit(1);
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _logs = telemetry::init(config.log_format);
    let app = App::build(config).await?;
    app.run_until(shutdown_signal()).await
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
