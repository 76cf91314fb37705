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
//! - [`failure`]: every error as the wire says it (a code from the wire's
//!   table, a message safe to send); service failures logged here, once.
//! - [`grpc`]: the thin tonic adapter; a failure becomes a `Status` in one place.
//! - [`http`]: the OAuth 2.0 face (RFC 7662, 7009, 8414, 7591), probes and metrics.
//! - [`signin`]: the authorization-code flow MCP clients sign in through —
//!   clients (metadata documents, registration), the upstream OpenID
//!   Connect provider, consent, codes and refresh tokens.
//! - [`net`]: listening, TLS and its reloads, serving each connection under
//!   its deadlines and the connection cap; [`observe`]: metrics and access lines per call.
//! - [`metrics`]: the Prometheus registry.
//! - [`app`]: start-up, health, reflection, the sweeper and graceful shutdown.
//! - [`config`], [`telemetry`]: one settings struct; log set-up.
//!
//! The wire itself (the `tessera.v1` messages, their redacting `Debug`, the
//! table of error codes) is the `tessera-wire` crate (`wire/`), which the
//! Rust client shares; [`pb`] is its messages.
//!
//! # Glossary
//!
//! A few names are metaphors; each stands for one thing:
//!
//! - **door** ([`door::Door`]): the one way in, for gRPC and HTTP alike.
//!   It judges what a call [`door::Presented`] (its key, the client id it
//!   claims) against the clients file and the method's role, and hands out
//!   the in-flight permits, so a client's share is one share whichever
//!   interface it uses.
//! - **gate** ([`grpc::Gate`]): the gRPC side's tower layer that walks each
//!   call through the door, after reading its body under the body deadline.
//! - **face** ([`http::Face`]): the HTTP side, the OAuth endpoints, probes
//!   and `/metrics`; `Face` is what its handlers share.
//! - **credentials**: always the *stored upstream secrets* of
//!   [`credentials`] (the `tessera.v1.Credentials` service and its store);
//!   what a caller sends to be let in is its *client key*, and what the
//!   door judges is what it presented.

pub mod app;
pub mod audit;
pub mod authority;
pub mod cache;
pub mod clients;
pub mod config;
pub mod credentials;
pub mod door;
pub mod failure;
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
pub mod signin;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod usage;

/// The `tessera.v1` messages and stubs, from the wire crate the client shares.
pub use tessera_wire::pb;
