//! The commands on files and the database: `migrate`, `rekey`,
//! `client-key`, `health`. Progress goes to stderr, for the person waiting;
//! stdout carries only what a script would read.

use std::{path::Path, process::ExitCode, time::Duration};

use tessera::{
    app::Backend,
    clients::Role,
    config::{DatabaseConfig, redact_url},
    credentials::{Keyring, rekey::rekey_with_progress},
    net::ClientTls,
    store::CredentialStore,
    token::ClientKey,
};

use super::hint;

pub async fn migrate(db: &DatabaseConfig, from: &str) -> anyhow::Result<ExitCode> {
    eprintln!("database: {} (from {from})", redact_url(&db.url));
    let backend = Backend::connect(db).await?;
    let missing = backend.unapplied_migrations().await?;
    if missing.is_empty() {
        eprintln!("nothing to apply: every migration is in place");
        return Ok(ExitCode::SUCCESS);
    }
    let names = migration_names(&backend);
    for version in &missing {
        let name = names
            .iter()
            .find(|(v, _)| v == version)
            .map_or("", |(_, name)| name.as_str());
        eprintln!("applying migration {version} {name}");
    }
    let started = std::time::Instant::now();
    backend.migrate().await?;
    eprintln!(
        "applied {} migration(s) in {:.1} s",
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The embedded migrations' versions and descriptions (the same folders
/// the stores embed).
fn migration_names(backend: &Backend) -> Vec<(i64, String)> {
    let migrator = match backend {
        Backend::Postgres(_) => sqlx::migrate!("migrations/postgres"),
        Backend::Sqlite(_) => sqlx::migrate!("migrations/sqlite"),
    };
    migrator
        .iter()
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

pub async fn rekey(
    db: &DatabaseConfig,
    from: &str,
    seal_key: &Path,
    batch: u32,
) -> anyhow::Result<ExitCode> {
    let _logs = tessera::telemetry::init(tessera::config::LogFormat::Text);
    eprintln!("database: {} (from {from})", redact_url(&db.url));
    let keyring = Keyring::load(seal_key)?;
    let backend = Backend::connect(db).await?;
    // Nothing is resealed under a key the servers do not share.
    backend.prove_keys(&keyring, seal_key).await?;
    let report = match backend {
        Backend::Postgres(store) => rekey_on(&store, &keyring, batch).await,
        Backend::Sqlite(store) => rekey_on(&store, &keyring, batch).await,
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
    Ok(ExitCode::SUCCESS)
}

/// Counts the work first, then reports each batch on stderr.
async fn rekey_on<S: CredentialStore>(
    store: &S,
    keyring: &Keyring,
    batch: u32,
) -> anyhow::Result<tessera::credentials::rekey::Report> {
    let total = store.count_stale_seals(keyring.current()).await?;
    eprintln!(
        "{total} credential(s) not sealed under key {:?}",
        keyring.current()
    );
    let report = rekey_with_progress(store, keyring, batch, |so_far| {
        let done = so_far.resealed + so_far.changed + so_far.unopenable;
        eprintln!("resealed {} of {total} ({done} looked at)", so_far.resealed);
    })
    .await?;
    Ok(report)
}

pub fn client_key(id: &str, roles: &[Role], resource: Option<&str>) -> anyhow::Result<ExitCode> {
    tessera::input::required_id("id", id.to_owned())?;
    let resource = canonical_resource(resource)?;
    let key = ClientKey::generate();
    // The key goes to the terminal only; stdout is the entry to append to
    // the clients file, which must never hold a key.
    eprintln!("client key for {id} (shown once, give it to the client):");
    eprintln!("{}", key.expose());
    print!(
        "{}",
        entry(id, &key.sha256_hex(), roles, resource.as_deref())
    );
    Ok(ExitCode::SUCCESS)
}

/// `--resource` in its canonical form (RFC 8707), as the server compares it.
pub fn canonical_resource(resource: Option<&str>) -> anyhow::Result<Option<String>> {
    resource
        .map(tessera::resource::canonical)
        .transpose()
        .map_err(|why| anyhow::anyhow!("--resource: {why}"))
}

/// A clients-file entry, as TOML.
pub fn entry(id: &str, key_sha256: &str, roles: &[Role], resource: Option<&str>) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{}\"", r.name())).collect();
    // Debug quoting escapes `"` and `\` as TOML expects (control characters
    // are refused by `required_id`; a canonical resource URI has none).
    let mut text = format!(
        "[[clients]]\nid = {id:?}\nkey_sha256 = \"{key_sha256}\"\nroles = [{}]\n",
        roles.join(", ")
    );
    if let Some(uri) = resource {
        text.push_str(&format!("resource = {uri:?}\n"));
    }
    text
}

pub async fn health(addr: &str, service: String, tls: &ClientTls) -> anyhow::Result<ExitCode> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let timeout = Duration::from_secs(2);
    let plaintext = tls.tls_ca.is_none();
    let channel = tls
        .endpoint(addr)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|err| hint::connection(addr, plaintext, &err))?;
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await
        .map_err(|status| hint::status(addr, plaintext, &status))?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
