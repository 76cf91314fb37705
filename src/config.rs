//! Configuration: one struct, every field a flag with an environment twin.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

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
    /// Address to listen on. Without a clients file only loopback is allowed.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub limits: Limits,

    /// Clients file (TOML). Without one the server runs in dev mode: every
    /// call is allowed as client `dev`.
    #[arg(long, env = "TESSERA_CLIENTS")]
    pub clients: Option<PathBuf>,

    /// Token lifetime when Mint does not set one.
    #[arg(long, env = "TESSERA_DEFAULT_TTL", default_value = "15m", value_parser = parse_duration)]
    pub default_ttl: Duration,

    /// Longest lifetime Mint accepts.
    #[arg(long, env = "TESSERA_MAX_TTL", default_value = "30d", value_parser = parse_duration)]
    pub max_ttl: Duration,

    /// How long expired, used-up and revoked grants are kept before deletion.
    #[arg(long, env = "TESSERA_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,

    /// How often the sweeper looks for grants past their retention.
    #[arg(long, env = "TESSERA_SWEEP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Longest a BOUNDED Validate may answer from memory, even if the
    /// notification of a revoke was lost.
    #[arg(long, env = "TESSERA_CACHE_MAX_AGE", default_value = "2s", value_parser = parse_duration)]
    pub cache_max_age: Duration,

    /// Grants kept for BOUNDED Validate; 0 turns the cache off (BOUNDED
    /// then asks the database like FULL).
    #[arg(long, env = "TESSERA_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: usize,

    /// Key (64 hex digits) for the `token_mac` of audit events, so that
    /// events about one token correlate across replicas and restarts.
    /// Without one, a random key per process.
    /// (A string here, checked by `check`: clap would print a rejected
    /// value, and this one is a secret.)
    #[arg(long, env = "TESSERA_AUDIT_KEY", hide_env_values = true)]
    pub audit_key: Option<String>,

    /// Log line format.
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Do not apply migrations at start (run `tessera migrate` instead).
    #[arg(long, env = "TESSERA_NO_MIGRATE")]
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
            self.max_ttl <= MAX_MAX_TTL,
            "--max-ttl must be at most 3650d: a token should not outlive its system"
        );
        anyhow::ensure!(
            !self.sweep_interval.is_zero(),
            "--sweep-interval must be positive"
        );
        anyhow::ensure!(
            self.clients.is_some() || self.listen.ip().is_loopback(),
            "refusing to listen on {} in dev mode (no --clients): dev mode allows every call, \
             so it listens on loopback only",
            self.listen
        );
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("limits", &self.limits)
            .field("clients", &self.clients)
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("retention", &self.retention)
            .field("sweep_interval", &self.sweep_interval)
            .field("cache_max_age", &self.cache_max_age)
            .field("cache_capacity", &self.cache_capacity)
            .field("audit_key", &self.audit_key.as_ref().map(|_| "<set>"))
            .field("log_format", &self.log_format)
            .field("no_migrate", &self.no_migrate)
            .finish()
    }
}

/// What the server takes on at once, and for how long: overload protection
/// and HTTP/2 limits.
#[derive(Args, Clone, Debug)]
pub struct Limits {
    /// TokenAuthority calls running at once; beyond that a call is refused at
    /// once with RESOURCE_EXHAUSTED (health and reflection are not counted).
    /// A call counts from when its whole body has arrived until it is answered.
    #[arg(long, env = "TESSERA_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,

    /// Calls one client may have running at once, so that no client can
    /// take all of --max-in-flight; default half of it.
    #[arg(long, env = "TESSERA_MAX_IN_FLIGHT_PER_CLIENT")]
    pub max_in_flight_per_client: Option<usize>,

    /// Longest a call's request body may take to arrive after its headers.
    #[arg(long, env = "TESSERA_BODY_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Longest a call may run before it is answered CANCELLED.
    #[arg(long, env = "TESSERA_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// After SIGTERM, how long calls in flight may take before the process
    /// exits anyway.
    #[arg(long, env = "TESSERA_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// HTTP/2 streams one connection may have open.
    #[arg(
        long,
        env = "TESSERA_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 256
    )]
    pub http2_max_concurrent_streams: u32,

    /// Largest header list a request may carry, in bytes.
    #[arg(long, env = "TESSERA_HTTP2_MAX_HEADER_LIST_SIZE", default_value_t = 16 * 1024)]
    pub http2_max_header_list_size: u32,

    /// Streams a client may open and reset before the server reads them
    /// (the HTTP/2 "rapid reset" attack) before the connection is closed.
    #[arg(long, env = "TESSERA_HTTP2_MAX_PENDING_RESETS", default_value_t = 32)]
    pub http2_max_pending_resets: usize,

    /// How often an idle connection is pinged, and how long the answer may
    /// take before the connection is dropped.
    #[arg(long, env = "TESSERA_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,
    #[arg(long, env = "TESSERA_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,
}

/// Where grants live; shared by `serve` and `migrate`.
#[derive(Args, Clone)]
pub struct DatabaseConfig {
    /// `postgres://…` for replicas sharing one database, `sqlite://FILE`
    /// (created if missing) for one machine.
    #[arg(
        long = "database-url",
        env = "TESSERA_DATABASE_URL",
        default_value = "sqlite://tessera.db"
    )]
    pub url: String,

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

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
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
