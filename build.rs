//! Compiles the protos without a system `protoc` (protox parses them in Rust)
//! and writes the encoded descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds migrations/ at compile time.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(
        ["tessera/v1/authority.proto", "tessera/v1/credentials.proto"],
        ["proto"],
    )?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tessera_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // tonic-prost's codec, but an undecodable request is INVALID_ARGUMENT
        // with a fixed message (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        // These messages carry a token or a payload: their Debug is written by
        // hand (src/grpc/redact.rs) so that no `{:?}` can print a secret.
        .skip_debug([
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
            // Credentials: the messages that carry a secret.
            ".tessera.v1.PutRequest",
            ".tessera.v1.GetResponse",
            ".tessera.v1.CompleteRefreshRequest",
        ])
        .compile_fds(fds)?;
    Ok(())
}
