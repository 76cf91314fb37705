//! Compiles Tessera's protos (the workspace's `proto/`) into client stubs,
//! without a system `protoc`: protox parses them in Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(
        ["tessera/v1/authority.proto", "tessera/v1/credentials.proto"],
        ["../proto"],
    )?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        // These messages carry a token, a key or a secret: their Debug is
        // written by hand (src/redact.rs) so that no `{:?}` can print one.
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
            ".tessera.v1.PutRequest",
            ".tessera.v1.GetResponse",
            ".tessera.v1.CompleteRefreshRequest",
        ])
        .compile_fds(fds)?;
    Ok(())
}
