//! A Rust client for Tessera, the gRPC token authority
//! for AI agents: mint, validate, claim, revoke, rotate and delegate
//! short-lived opaque tokens, with retries that never lose a claim's use
//! nor mint twice; and, with the `tower` feature, [`BearerAuth`]: a tower
//! layer that guards HTTP routes (an axum app, an `rmcp` streamable HTTP
//! MCP server) with Tessera tokens, answering as RFC 6750 and the MCP
//! authorization spec ask and serving RFC 9728 protected resource metadata.
//!
//! # Example
//!
//! With a Tessera running in dev mode (`cargo run --release` in the
//! workspace: no clients file, every caller may do everything):
//!
//! ```no_run
//! use std::time::Duration;
//! use tessera_client::{Claim, ClaimOutcome, Client, Mint, Validate, Validation};
//!
//! # async fn run() -> Result<(), tessera_client::Error> {
//! // TESSERA_URL (default http://127.0.0.1:50051), TESSERA_KEY, TESSERA_CA.
//! let tessera = Client::from_env().await?;
//!
//! // A single-use token for one minute, carrying a payload.
//! let minted = tessera
//!     .mint(
//!         Mint::new("user-42")
//!             .scopes(["tool:search", "connector:*"])
//!             .ttl(Duration::from_secs(60))
//!             .max_uses(1)
//!             .payload(b"secret-id-7".to_vec()),
//!     )
//!     .await?;
//! println!("minted {:?}", minted); // the token prints as <redacted>
//!
//! // Check it without consuming it, then take its one use.
//! let check = tessera
//!     .validate(Validate::new(&minted.token).scopes(["connector:github"]))
//!     .await?;
//! assert!(check.is_valid());
//! match tessera.claim(Claim::new(&minted.token).scopes(["tool:search"])).await? {
//!     ClaimOutcome::Claimed(claimed) => assert_eq!(claimed.payload.expose(), b"secret-id-7"),
//!     ClaimOutcome::Denied(denial) => panic!("refused: {denial:?}"),
//! }
//!
//! // A refusal is a value, not an error.
//! let again = tessera.validate(Validate::new(&minted.token)).await?;
//! assert!(matches!(again, Validation::Denied(_)));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/claim.rs` is the same flow as a program:
//! `cargo run -p tessera-client --example claim`.
//!
//! # Retries and deadlines
//!
//! Every call ends within the client's timeout (10 s by default,
//! [`ClientBuilder::timeout`], [`Client::with_timeout`] for one call or a
//! group of calls), retries and waits included; each attempt is also
//! bounded ([`RetryPolicy::attempt_timeout`]) and carries its deadline to
//! Tessera as `grpc-timeout`. Waits between attempts grow exponentially,
//! with full jitter. What is retried depends on the call:
//!
//! - **Claim** is made retry-safe: each [`Client::claim`] call sends a
//!   `claim_key` (32 random bytes, hex) and reuses it on every retry, so a
//!   claim whose reply was lost is retried and gets the original outcome —
//!   same payload — without consuming a second use. UNAVAILABLE, deadline
//!   failures, RESOURCE_EXHAUSTED and CANCELLED are retried.
//! - **Validate**, **GetGrant**, **ListGrants** (reads) and **Revoke**
//!   (revoking twice revokes once) are retried on the same failures.
//! - **Mint**, **Delegate** and **Rotate** are retried only when the
//!   request provably did nothing: the connection could not be made, or
//!   Tessera shed the call (RESOURCE_EXHAUSTED, refused before it runs).
//!   Never on a deadline or an UNAVAILABLE after the request was sent: the
//!   token may have been minted (or the grant rotated), and a retry would
//!   mint a second one (or fail and lose the new token). Such a failure is
//!   returned as an error for the caller to judge.
//!
//! # Secrets
//!
//! Tokens ([`Token`]), client keys, payloads and credential secrets
//! ([`SecretBytes`]) never print: their `Debug` says `<redacted>` or gives a
//! length, and so does the `Debug` of every wire message in [`pb`] that
//! carries one. Reach the plaintext with `expose()`.
//!
//! # Layout
//!
//! - `client.rs`: [`Client`], [`ClientBuilder`], the retry loop.
//! - `requests.rs`: the typed requests ([`Mint`], [`Validate`], [`Claim`],
//!   [`Revoke`], [`ListGrants`], [`Rotate`], [`Delegate`]) and answers.
//! - `retry.rs`: [`RetryPolicy`], backoff, claim keys.
//! - `error.rs`: [`Error`], from gRPC statuses.
//! - `secret.rs`: [`Token`], [`SecretBytes`].
//! - `layer.rs` (feature `tower`): [`BearerAuth`].
//! - `redact.rs`: `Debug` for the wire messages that carry secrets.

mod client;
mod error;
#[cfg(feature = "tower")]
mod layer;
mod redact;
mod requests;
#[cfg(feature = "tower")]
mod resource;
mod retry;
mod secret;

/// The wire messages and generated stubs of `tessera.v1`, compiled from
/// the same protos as the server.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tessera.v1");
}

pub use client::{Client, ClientBuilder, CredentialsClient, DEFAULT_URL, KeyInterceptor};
pub use error::Error;
#[cfg(feature = "tower")]
pub use layer::{BearerAuth, BearerService};
pub use pb::{Consistency, CredentialRef, Denial, Grant, RevokeReason};
pub use requests::{
    Claim, ClaimOutcome, Claimed, Credential, Delegate, GrantPage, ListGrants, Mint, Minted,
    Revision, Revoke, Revoked, Rotate, Rotated, Validate, Validation,
};
pub use retry::RetryPolicy;
pub use secret::{SecretBytes, Token};
pub use tonic::Code;
