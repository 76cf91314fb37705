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

    /// Largest header list a request may carry, in bytes.
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
}
