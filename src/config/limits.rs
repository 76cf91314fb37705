//! Overload protection and HTTP/2 limits.

use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// What the server takes on at once, and for how long: overload protection
/// and HTTP/2 limits.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Limits")]
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

    /// Largest header section a request may carry, in bytes: an HTTP/2
    /// header list, and an HTTP/1.1 request head (answered 431 beyond it).
    /// At least 8192, the smallest read buffer of the HTTP/1.1 server.
    #[arg(long, env = "TESSERA_HTTP2_MAX_HEADER_LIST_SIZE", default_value_t = 16 * 1024)]
    pub http2_max_header_list_size: u32,

    /// Streams a client may open and reset before the server reads them
    /// (the HTTP/2 "rapid reset" attack) before the connection is closed.
    #[arg(long, env = "TESSERA_HTTP2_MAX_PENDING_RESETS", default_value_t = 32)]
    pub http2_max_pending_resets: usize,

    /// How often an idle connection is pinged (see --http2-keepalive-timeout).
    #[arg(long, env = "TESSERA_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long the answer to a keepalive ping may take before the
    /// connection is dropped.
    #[arg(long, env = "TESSERA_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// Longest a new connection may take to send its first request head
    /// (TLS handshake, HTTP/2 preface and first HEADERS included), and an
    /// HTTP/1.1 connection each next one; then it is closed.
    #[arg(long, env = "TESSERA_REQUEST_HEAD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_head_timeout: Duration,

    /// A connection with no call open for this long is closed (HTTP/2 with
    /// a GOAWAY, so that clients reconnect cleanly).
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Client connections open at once, gRPC and HTTP together; beyond it a
    /// new connection waits in the kernel's listen backlog. Default: the
    /// open-files soft limit (RLIMIT_NOFILE) less 3 × --db-max-connections
    /// (a SQLite connection holds up to three files) less 64 (listeners,
    /// runtime, logs, files read), and at least half the limit.
    // (`id`: --db-max-connections's field has this name too.)
    #[arg(
        long = "max-connections",
        id = "client_max_connections",
        value_name = "N",
        env = "TESSERA_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<usize>,
}

/// Descriptors kept for what is not a client connection or the pool.
const FD_HEADROOM: u64 = 64;

impl Limits {
    /// `--max-connections`, or its default from the open-files limit.
    pub fn connection_cap(&self, db_max_connections: u32) -> usize {
        if let Some(cap) = self.max_connections {
            return cap;
        }
        let cap = default_cap(open_files_limit(), db_max_connections);
        usize::try_from(cap).unwrap_or(usize::MAX)
    }
}

/// The open-files limit less the pool's files and the headroom, and at
/// least half the limit: a small limit leaves clients half of it rather
/// than nothing.
fn default_cap(open_files: u64, db_max_connections: u32) -> u64 {
    open_files
        .saturating_sub(3 * u64::from(db_max_connections) + FD_HEADROOM)
        .max(open_files / 2)
        .max(1)
}

/// The process's open-files soft limit; "unlimited" (or unknown) counts as
/// 2^20, Linux's default ceiling, so the cap stays a number.
fn open_files_limit() -> u64 {
    const CEILING: u64 = 1 << 20;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    // RLIM_INFINITY is the largest value: the ceiling takes it too.
    if read {
        limit.rlim_cur.min(CEILING)
    } else {
        CEILING
    }
}

#[cfg(test)]
mod tests {
    use super::default_cap;

    #[test]
    fn the_default_cap_leaves_room_for_the_pool_and_the_process() {
        assert_eq!(default_cap(1024, 16), 1024 - 48 - 64);
        assert_eq!(default_cap(65_536, 16), 65_536 - 48 - 64);
        assert_eq!(default_cap(128, 16), 64);
        assert_eq!(default_cap(1, 16), 1);
    }
}
