//! End-to-end tests of the client and of `BearerAuth`, each against a real
//! Tessera (the workspace's `tessera` binary, see `support.rs`).

mod calls;
mod layer;
mod retries;
mod support;
mod tls;
