//! `--op propagation`: how long a revoke on one replica takes to show in
//! BOUNDED Validates on another.

use std::time::{Duration, Instant};

use crate::load::{BenchArgs, Caller, Op};

/// Mint on the target, cache it on the replica, revoke on the target, then
/// ask the replica (BOUNDED) until it refuses: the delay after the revoke
/// was acknowledged, in microseconds, once per round for `--duration`.
pub async fn run(
    args: &BenchArgs,
    mut target: Caller,
    mut replica: Caller,
) -> anyhow::Result<Vec<u32>> {
    let end = Instant::now() + args.duration;
    let mut delays = Vec::new();
    let mut minted = Vec::new();
    let mut round = 0;
    while Instant::now() < end {
        round += 1;
        let token = target.mint(round).await?;
        for _ in 0..2 {
            let outcome = replica
                .call(Op::Validate, std::slice::from_ref(&token), 0, &mut minted)
                .await;
            anyhow::ensure!(
                outcome == "valid",
                "replica does not see a fresh grant: {outcome}"
            );
        }
        let revoked = target.revoke(token.clone()).await;
        anyhow::ensure!(revoked == "revoked", "revoke failed: {revoked}");
        let acknowledged = Instant::now();
        loop {
            let outcome = replica
                .call(Op::Validate, std::slice::from_ref(&token), 0, &mut minted)
                .await;
            if outcome != "valid" {
                break;
            }
            anyhow::ensure!(
                acknowledged.elapsed() < Duration::from_secs(30),
                "revoke never reached the replica"
            );
        }
        delays.push(u32::try_from(acknowledged.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(delays)
}
