//! Configuration: one struct, every field a flag with an environment twin.

mod database;
mod limits;

use std::{fmt, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

pub use database::{DEFAULT_DATABASE_URL, DatabaseConfig, DatabaseUrl, redact_url};
pub use limits::Limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Upper bound for `--max-ttl` (ten years), far from any overflow of
/// microsecond timestamps.
const MAX_MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);

/// Everything `tessera serve` needs.
#[derive(Args, Clone)]
pub struct Config {
    /// Address to listen on, `host:port` (a host name resolves, and the
    /// server listens on every address it resolves to). Without a clients
    /// file only loopback is allowed; beyond loopback, TLS or --plaintext.
    #[arg(
        long,
        help_heading = "Listening and TLS",
        env = "TESSERA_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: String,

    /// Serve the HTTP face (OAuth endpoints, probes, metrics) on an address
    /// of its own instead of beside gRPC on --listen.
    #[arg(long, help_heading = "Listening and TLS", env = "TESSERA_HTTP_LISTEN")]
    pub http_listen: Option<String>,

    #[command(flatten)]
    pub tls: TlsConfig,

    /// The `iss` of introspection answers and the RFC 8414 metadata; its
    /// endpoints are named under it. Default: the server's own URL
    /// (`https://` with TLS, `http://` without, and the --listen address).
    #[arg(long, help_heading = "Listening and TLS", env = "TESSERA_ISSUER")]
    pub issuer: Option<String>,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub signin: crate::signin::SigninConfig,

    /// Clients file (TOML). Without one the server runs in dev mode: every
    /// call is allowed as client `dev`.
    #[arg(long, help_heading = "Credentials", env = "TESSERA_CLIENTS")]
    pub clients: Option<PathBuf>,

    /// Token lifetime when Mint does not set one.
    #[arg(long, help_heading = "Limits", env = "TESSERA_DEFAULT_TTL", default_value = "15m", value_parser = parse_duration)]
    pub default_ttl: Duration,

    /// Longest lifetime Mint accepts.
    #[arg(long, help_heading = "Limits", env = "TESSERA_MAX_TTL", default_value = "30d", value_parser = parse_duration)]
    pub max_ttl: Duration,

    /// How many delegations deep a grant may be (a sub-agent's token is 1,
    /// its own sub-agent's 2, ...).
    #[arg(
        long,
        help_heading = "Limits",
        env = "TESSERA_MAX_DELEGATION_DEPTH",
        default_value_t = 4
    )]
    pub max_delegation_depth: u32,

    /// How long expired, used-up and revoked grants are kept before deletion.
    #[arg(long, help_heading = "Database", env = "TESSERA_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,

    /// How often the sweeper looks for grants past their retention.
    #[arg(long, help_heading = "Database", env = "TESSERA_SWEEP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Longest a BOUNDED Validate may answer from memory, even if the
    /// notification of a revoke was lost.
    #[arg(long, help_heading = "Cache", env = "TESSERA_CACHE_MAX_AGE", default_value = "2s", value_parser = parse_duration)]
    pub cache_max_age: Duration,

    /// Grants kept for BOUNDED Validate; 0 turns the cache off (BOUNDED
    /// then asks the database like FULL).
    #[arg(
        long,
        help_heading = "Cache",
        env = "TESSERA_CACHE_CAPACITY",
        default_value_t = 100_000
    )]
    pub cache_capacity: usize,

    /// Key (64 hex digits) for the `token_mac` of audit events, so that
    /// events about one token correlate across replicas and restarts.
    /// Without one, a random key per process.
    // A string here, checked by `check`: clap would print a rejected
    // value, and this one is a secret.
    #[arg(
        long,
        help_heading = "Logging",
        env = "TESSERA_AUDIT_KEY",
        hide_env_values = true
    )]
    pub audit_key: Option<String>,

    /// Seal keys of the Credentials service: a file of `KEYID:64hexdigits`
    /// lines. The first key seals every write; the others only open rows
    /// sealed before (rotation; see `tessera rekey`). Without it the
    /// Credentials service answers FAILED_PRECONDITION.
    #[arg(long, help_heading = "Credentials", env = "TESSERA_SEAL_KEY")]
    pub seal_key: Option<PathBuf>,

    /// Log line format.
    #[arg(
        long,
        help_heading = "Logging",
        env = "TESSERA_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Do not apply migrations at start (run `tessera migrate` instead).
    #[arg(long, help_heading = "Database", env = "TESSERA_NO_MIGRATE")]
    pub no_migrate: bool,
}

impl Config {
    /// Checks what clap cannot: relations between fields.
    pub fn check(&self) -> anyhow::Result<()> {
        self.audit_key()?;
        anyhow::ensure!(
            !self.default_ttl.is_zero(),
            "--default-ttl must be positive"
        );
        anyhow::ensure!(
            self.default_ttl <= self.max_ttl,
            "--default-ttl must not exceed --max-ttl"
        );
        anyhow::ensure!(
            self.limits.max_in_flight > 0,
            "--max-in-flight must be positive"
        );
        anyhow::ensure!(
            self.limits.max_in_flight_per_client.is_none_or(|n| n > 0),
            "--max-in-flight-per-client must be positive"
        );
        anyhow::ensure!(
            !self.limits.body_timeout.is_zero(),
            "--body-timeout must be positive"
        );
        anyhow::ensure!(
            self.limits.http2_max_header_list_size >= 8192,
            "--http2-max-header-list-size must be at least 8192 (it also bounds an HTTP/1.1 \
             request head, whose read buffer is at least 8 KiB)"
        );
        anyhow::ensure!(
            !self.limits.request_head_timeout.is_zero(),
            "--request-head-timeout must be positive"
        );
        anyhow::ensure!(
            !self.limits.idle_timeout.is_zero(),
            "--idle-timeout must be positive"
        );
        anyhow::ensure!(
            self.limits.max_connections.is_none_or(|n| n > 0),
            "--max-connections must be positive"
        );
        anyhow::ensure!(
            self.max_ttl <= MAX_MAX_TTL,
            "--max-ttl must be at most 3650d: a token should not outlive its system"
        );
        anyhow::ensure!(
            !self.sweep_interval.is_zero(),
            "--sweep-interval must be positive"
        );
        self.tls.check()?;
        self.signin.check(self.max_ttl)?;
        if let Some(issuer) = &self.issuer {
            anyhow::ensure!(
                (issuer.starts_with("https://") || issuer.starts_with("http://"))
                    && !issuer.contains(['?', '#']),
                "--issuer must be an http(s) URL without query or fragment (RFC 8414)"
            );
        }
        Ok(())
    }

    /// Whether serving on `addrs` is safe: dev mode allows every call, so
    /// it stays on loopback; with clients, keys and tokens cross the network,
    /// so beyond loopback they need TLS, or an explicit --plaintext when a
    /// service mesh provides it.
    pub fn check_exposure(&self, flag: &str, addrs: &[std::net::SocketAddr]) -> anyhow::Result<()> {
        let Some(open) = addrs.iter().find(|addr| !addr.ip().is_loopback()) else {
            return Ok(());
        };
        anyhow::ensure!(
            self.clients.is_some(),
            "refusing to listen on {open} ({flag}) in dev mode (no --clients): dev mode allows \
             every call, so it listens on loopback only"
        );
        anyhow::ensure!(
            self.tls.enabled() || self.tls.plaintext,
            "refusing to listen on {open} ({flag}) without TLS: client keys and tokens would \
             cross the network in the clear. Give --tls-cert and --tls-key, or --plaintext if a \
             service mesh or proxy provides TLS"
        );
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("tls", &self.tls)
            .field("issuer", &self.issuer)
            .field("database", &self.database)
            .field("limits", &self.limits)
            .field("signin", &self.signin)
            .field("clients", &self.clients)
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("max_delegation_depth", &self.max_delegation_depth)
            .field("retention", &self.retention)
            .field("sweep_interval", &self.sweep_interval)
            .field("cache_max_age", &self.cache_max_age)
            .field("cache_capacity", &self.cache_capacity)
            .field("audit_key", &self.audit_key.as_ref().map(|_| "<set>"))
            .field("seal_key", &self.seal_key)
            .field("log_format", &self.log_format)
            .field("no_migrate", &self.no_migrate)
            .finish()
    }
}

/// TLS for the listeners. The files are PEM and are read again when they
/// change or on SIGHUP: new connections get the new certificate, open ones
/// keep theirs (cert-manager rotates certificates in place).
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Listening and TLS")]
pub struct TlsConfig {
    /// Certificate chain (PEM) served to clients; with --tls-key turns TLS on.
    #[arg(long, env = "TESSERA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "TESSERA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM); when set, every client must present a
    /// certificate they signed (mTLS), on top of its key.
    #[arg(long, env = "TESSERA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve without TLS beyond loopback (a service mesh or proxy provides it).
    #[arg(long, env = "TESSERA_PLAINTEXT", conflicts_with = "tls_cert")]
    pub plaintext: bool,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "--tls-cert and --tls-key go together"
        );
        anyhow::ensure!(
            self.tls_client_ca.is_none() || self.enabled(),
            "--tls-client-ca needs --tls-cert and --tls-key"
        );
        anyhow::ensure!(
            !(self.plaintext && self.enabled()),
            "--plaintext and --tls-cert exclude each other"
        );
        Ok(())
    }
}

impl Config {
    /// `--audit-key` as bytes. The error never repeats the input: it is a secret.
    pub fn audit_key(&self) -> anyhow::Result<Option<[u8; 32]>> {
        let Some(text) = &self.audit_key else {
            return Ok(None);
        };
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .map_err(|_| anyhow::anyhow!("--audit-key must be 64 hex digits (32 bytes)"))?;
        Ok(Some(key))
    }
}

/// `500ms`, `30s`, `15m`, `24h`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number and a unit, like 15m"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (ms, s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn debug_hides_the_audit_key_and_the_database_password() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let key = "ab".repeat(32);
        let cli = Cli::try_parse_from([
            "tessera",
            "--audit-key",
            &key,
            "--database-url",
            "postgres://app:hunter2@db/tessera?password=hunter3",
        ])
        .unwrap();
        assert_eq!(cli.config.audit_key().unwrap(), Some([0xab; 32]));
        let printed = format!("{:?}", cli.config);
        assert!(
            !printed.contains(&key[..16]) && !printed.contains("hunter"),
            "{printed}"
        );
        assert!(printed.contains("<set>"));
        let bad = Cli::try_parse_from(["tessera", "--audit-key", "not-hex-secret"]).unwrap();
        let err = bad.config.check().unwrap_err().to_string();
        assert!(
            err.contains("64 hex digits") && !err.contains("not-hex-secret"),
            "{err}"
        );
    }

    #[test]
    fn connection_limits_out_of_range_are_refused_by_name() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        for (flag, value) in [
            ("--request-head-timeout", "0s"),
            ("--idle-timeout", "0s"),
            ("--max-connections", "0"),
            ("--http2-max-header-list-size", "4096"),
        ] {
            let cli = Cli::try_parse_from(["tessera", flag, value]).unwrap();
            let err = cli.config.check().unwrap_err().to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        }
    }
}
