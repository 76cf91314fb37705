//! Tessera's wire, shared by the server (`tessera`) and the Rust client
//! (`tessera-client`), so that neither carries a copy of it.
//!
//! # Layout
//!
//! - [`pb`]: the `tessera.v1` messages and gRPC stubs, compiled once from
//!   the workspace's `proto/` (build.rs), and the descriptor set that
//!   server reflection serves.
//! - `redact.rs`: the `Debug` of every message that carries a token, a
//!   key, a payload or a stored secret, written once.
//! - [`codec`]: the protobuf codec the stubs use.
//! - [`error`]: the one table of error codes, each mapped to gRPC and HTTP.

pub mod codec;
pub mod error;
mod redact;

/// The messages and gRPC stubs of `tessera.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tessera.v1");

    /// Encoded descriptors of `tessera.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tessera_descriptor.bin"));
}
