//! Compiles the protos (the workspace's `proto/`, from which the Python
//! client and the docs build too) once, for the server and the Rust client,
//! without a system `protoc` (protox parses them in Rust), and writes the
//! encoded descriptor set that server reflection serves.

use std::{env, path::PathBuf};

/// The messages that carry a token, a client key, a payload or a stored
/// secret: their derived `Debug` is off, and `src/redact.rs` writes one that
/// prints every other field and never the secret.
const REDACTED: [&str; 15] = [
    ".tessera.v1.MintRequest",
    ".tessera.v1.MintResponse",
    ".tessera.v1.ValidateRequest",
    ".tessera.v1.ClaimRequest",
    ".tessera.v1.ClaimResponse",
    ".tessera.v1.RevokeRequest",
    ".tessera.v1.RevokeRequest.target",
    ".tessera.v1.RotateRequest",
    ".tessera.v1.RotateRequest.target",
    ".tessera.v1.RotateResponse",
    ".tessera.v1.DelegateRequest",
    ".tessera.v1.DelegateResponse",
    ".tessera.v1.PutRequest",
    ".tessera.v1.GetResponse",
    ".tessera.v1.CompleteRefreshRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(
        ["tessera/v1/authority.proto", "tessera/v1/credentials.proto"],
        ["../proto"],
    )?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tessera_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // The server takes its own transport (src/net); the client builds
        // its channel itself: no generated `connect`.
        .build_transport(false)
        // tonic-prost's codec, but an undecodable message is INVALID_ARGUMENT
        // with a fixed message (src/codec.rs).
        .codec_path("crate::codec::Codec")
        .skip_debug(REDACTED)
        .compile_fds(fds)?;
    Ok(())
}
