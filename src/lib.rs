//! Tessera: a gRPC token authority for AI agents.
//!
//! Many MCP servers, agent runtimes and backend services share one Tessera
//! to mint, validate, claim and revoke short-lived opaque tokens. A token
//! carries exactly what one run or one call may do; the authority keeps only
//! its SHA-256, consumes single-use tokens exactly once across replicas, and
//! revokes a whole run or subject at once.
//!
//! # Layout
//!
//! - [`token`]: the token, client-key and grant-id formats (generate, parse, hash).
//! - [`grant`]: a grant and the words every layer uses about it (revoke
//!   reasons, the credential it hands over, the database's time).
//! - [`seal`]: payload encryption under a key derived from the token.
//! - [`input`]: limits on every request field.
//! - [`clients`]: the clients file, roles and bearer-key authentication.
//! - [`audit`]: the audit trail (events, keyed token MACs, typed fields).
//! - [`resource`]: resource URIs (RFC 8707) as audiences, in their canonical form.
//! - [`rules`]: who may use a grant — one pure function, denials and their precedence.
//! - [`authority`]: the domain operations — mint, validate, claim, revoke — over the rules, store, cache and audit trail.
//! - [`credentials`]: upstream secrets kept per bearer, sealed at rest, refreshed under a lease.
//! - [`cache`]: this replica's memory of grants, for BOUNDED Validate.
//! - [`usage`]: Validate's `last_used_at`, noted per call and written in bulk.
//! - [`store`]: the storage trait and its PostgreSQL and SQLite implementations.
//! - [`door`]: keys, roles and in-flight shares, for gRPC and HTTP alike.
//! - [`grpc`]: the thin tonic adapter and the one place errors become `Status`.
//! - [`http`]: the OAuth 2.0 face (RFC 7662, 7009, 8414), probes and metrics.
//! - [`net`]: listening, TLS and its reloads, serving each connection under
//!   its deadlines and the connection cap; [`observe`]: metrics and access lines per call.
//! - [`metrics`]: the Prometheus registry.
//! - [`app`]: start-up, health, reflection, the sweeper and graceful shutdown.
//! - [`config`], [`telemetry`]: one settings struct; log set-up.

pub mod app;
pub mod audit;
pub mod authority;
pub mod cache;
pub mod clients;
pub mod config;
pub mod credentials;
pub mod door;
#[cfg(test)]
mod fuzz;
pub mod grant;
pub mod grpc;
pub mod http;
pub mod input;
pub mod metrics;
pub mod net;
pub mod observe;
pub mod resource;
pub mod rules;
pub mod seal;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod usage;

/// Generated protobuf and gRPC code for `tessera.v1`.
pub mod pb {
    tonic::include_proto!("tessera.v1");

    /// Encoded descriptors of `tessera.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tessera_descriptor.bin"));
}
