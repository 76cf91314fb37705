//! Mint, validate, claim and revoke against a running Tessera.
//!
//! ```sh
//! cargo run --release &                       # Tessera in dev mode on 127.0.0.1:50051
//! cargo run -p tessera-client --example claim # TESSERA_URL, TESSERA_KEY, TESSERA_CA if needed
//! ```

use std::time::Duration;

use tessera_client::{Claim, ClaimOutcome, Client, Mint, Revoke, Validate};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tessera_client::Error> {
    let tessera = Client::from_env().await?;

    let minted = tessera
        .mint(
            Mint::new("user-42")
                .scopes(["tool:search", "connector:*"])
                .run_id("example-run")
                .ttl(Duration::from_secs(60))
                .max_uses(1)
                .payload(b"secret-id-7".to_vec()),
        )
        .await?;
    // Debug never shows the token itself.
    println!("minted: {minted:?}");

    let check = tessera
        .validate(Validate::new(&minted.token).scopes(["connector:github"]))
        .await?;
    println!("valid for connector:github: {}", check.is_valid());

    // The claim carries a fresh claim_key, reused if it has to be retried.
    match tessera
        .claim(Claim::new(&minted.token).scopes(["tool:search"]))
        .await?
    {
        ClaimOutcome::Claimed(claimed) => println!(
            "claimed: payload {:?}, uses {}",
            String::from_utf8_lossy(claimed.payload.expose()),
            claimed.grant.use_count
        ),
        ClaimOutcome::Denied(denial) => println!("refused: {denial:?}"),
    }
    match tessera.claim(Claim::new(&minted.token)).await? {
        ClaimOutcome::Claimed(_) => println!("claimed twice?"),
        ClaimOutcome::Denied(denial) => println!("second claim refused: {denial:?}"),
    }

    let revoked = tessera.revoke(Revoke::run("example-run")).await?;
    println!("revoked {revoked} live grant(s) of the run");
    Ok(())
}
