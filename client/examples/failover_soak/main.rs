//! The failover soak: claims racing through Tessera replicas while the
//! database fails over under them, then every grant read back.
//!
//! Run by `bench/failover-soak.sh`, which brings up the Patroni cluster
//! (deploy/patroni/cluster.sh) and the Tessera replicas:
//!
//! ```sh
//! cargo run -p tessera-client --example failover_soak -- \
//!   --url http://127.0.0.1:50161 --url http://127.0.0.1:50162 --claims 100000 \
//!   --fault "deploy/patroni/cluster.sh kill-primary" --heal "deploy/patroni/cluster.sh heal"
//! ```
//!
//! Each round mints a grant (single-use, or three uses) on one replica and
//! sends more claims than it has uses, at once, through every replica, each
//! with the client's retries (one claim key per claim); one round in eight
//! also revokes the grant while its claims race, then claims once more
//! (which must be refused). The faults run in turn, spread over the run;
//! after each, once a write succeeds again, `--heal` restores the cluster
//! (the killed member rejoins) before the next. At the end every grant is
//! read back and compared with what callers were told: see [`tally`].

mod tally;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tessera_client::{Claim, ClaimOutcome, Client, Mint, RetryPolicy, Revoke};
use tokio::task::JoinSet;

use tally::{Fault, Round, Sample, Tally};

struct Args {
    urls: Vec<String>,
    claims: u64,
    concurrency: usize,
    faults: Vec<String>,
    heal: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        urls: Vec::new(),
        claims: 10_000,
        concurrency: 32,
        faults: Vec::new(),
        heal: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag}: a value is missing"));
        match flag.as_str() {
            "--url" => args.urls.push(value()?),
            "--claims" => args.claims = value()?.parse().map_err(|_| "--claims: a count")?,
            "--concurrency" => {
                args.concurrency = value()?.parse().map_err(|_| "--concurrency: a count")?
            }
            "--fault" => args.faults.push(value()?),
            "--heal" => args.heal = Some(value()?),
            _ => return Err(format!("{flag}: unknown flag")),
        }
    }
    if args.urls.is_empty() {
        return Err("--url: at least one Tessera".into());
    }
    Ok(args)
}

/// What every task shares.
struct Shared {
    clients: Vec<Client>,
    started: Instant,
    target: u64,
    /// Claims sent so far (each counted once, retries not).
    claims: AtomicU64,
    /// When the latest successful write was sent, in ms since `started`:
    /// the faults' supervisor waits for one sent after its fault.
    last_write_sent: AtomicU64,
    samples: Mutex<Vec<Sample>>,
    rounds: Mutex<Vec<Round>>,
    mint_errors: AtomicU64,
}

impl Shared {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn record(&self, sent: u64, write: bool, ok: bool) {
        let latency = self.ms() - sent;
        if write && ok {
            self.last_write_sent.fetch_max(sent, Ordering::Relaxed);
        }
        let sample = Sample {
            sent,
            latency,
            write,
            ok,
        };
        self.samples.lock().expect("samples").push(sample);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // Patient enough to cover a failover (Patroni's TTL and a promotion):
    // claims and revokes are retried for up to a minute.
    let policy = RetryPolicy {
        max_attempts: 40,
        attempt_timeout: Duration::from_secs(3),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    };
    let mut clients = Vec::new();
    for url in &args.urls {
        let client = Client::builder(url.clone())
            .timeout(Duration::from_secs(60))
            .retry(policy.clone())
            .connect()
            .await?;
        clients.push(client);
    }
    let shared = Arc::new(Shared {
        clients,
        started: Instant::now(),
        target: args.claims,
        claims: AtomicU64::new(0),
        last_write_sent: AtomicU64::new(0),
        samples: Mutex::default(),
        rounds: Mutex::default(),
        mint_errors: AtomicU64::new(0),
    });
    let mut workers = JoinSet::new();
    for worker in 0..args.concurrency {
        workers.spawn(work(shared.clone(), worker as u64));
    }
    let faults = tokio::spawn(supervise(shared.clone(), args.faults, args.heal));
    let progress = tokio::spawn(progress(shared.clone()));
    while let Some(done) = workers.join_next().await {
        done?;
    }
    progress.abort();
    let faults = faults.await??;
    let elapsed = shared.started.elapsed();
    let rounds = std::mem::take(&mut *shared.rounds.lock().expect("rounds"));
    let samples = std::mem::take(&mut *shared.samples.lock().expect("samples"));
    let tally = Tally::read_back(
        &shared.clients[0],
        rounds,
        samples,
        faults,
        shared.mint_errors.load(Ordering::Relaxed),
        elapsed,
    )
    .await;
    tally.print();
    if !tally.held() {
        std::process::exit(1);
    }
    Ok(())
}

/// One task's rounds until the run has sent its claims.
async fn work(shared: Arc<Shared>, seed: u64) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while shared.claims.load(Ordering::Relaxed) < shared.target {
        round(&shared, next()).await;
    }
}

async fn round(shared: &Arc<Shared>, dice: u64) {
    let replicas = shared.clients.len();
    let max_uses: u32 = if dice % 5 < 3 { 1 } else { 3 };
    let revoke = dice % 8 == 7;
    let first = (dice >> 8) as usize % replicas;
    let sent = shared.ms();
    let minted = shared.clients[first]
        .mint(
            Mint::new("soak")
                .scopes(["soak"])
                .ttl(Duration::from_secs(3600))
                .max_uses(max_uses),
        )
        .await;
    shared.record(sent, true, minted.is_ok());
    let Ok(minted) = minted else {
        // A mint whose reply was lost is not retried (it may have minted):
        // the caller sees it, and the soak counts it apart.
        shared.mint_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let racers = u64::from(max_uses) + 2;
    shared.claims.fetch_add(racers, Ordering::Relaxed);
    let mut race = JoinSet::new();
    for racer in 0..racers as usize {
        let (shared, token) = (shared.clone(), minted.token.clone());
        race.spawn(async move {
            let client = &shared.clients[(first + racer) % replicas];
            let sent = shared.ms();
            let outcome = client.claim(Claim::new(&token)).await;
            shared.record(sent, true, outcome.is_ok());
            Ok::<_, tessera_client::Error>(outcome?.is_claimed())
        });
    }
    let revoking = revoke.then(|| {
        let (shared, grant_id) = (shared.clone(), minted.grant.grant_id.clone());
        tokio::spawn(async move {
            let client = &shared.clients[(first + 1) % replicas];
            let sent = shared.ms();
            let revoked = client.revoke(Revoke::grant(grant_id)).await;
            shared.record(sent, true, revoked.is_ok());
            revoked.ok()
        })
    });
    let mut result = Round {
        grant_id: minted.grant.grant_id.clone(),
        max_uses,
        ..Round::default()
    };
    while let Some(claimed) = race.join_next().await {
        match claimed.expect("a claim task") {
            Ok(true) => result.acked_uses += 1,
            Ok(false) => {}
            Err(_) => result.claim_errors += 1,
        }
    }
    if let Some(revoking) = revoking {
        if let Some(revoked) = revoking.await.expect("the revoke task") {
            // 0: the grant was used up first, or a lost reply's retry found
            // it revoked already; either way it is over.
            result.revoke_acked = true;
            result.revoked_live = revoked > 0;
            // Acknowledged: from now on every claim must be refused.
            let client = &shared.clients[(first + 2) % replicas];
            match client.claim(Claim::new(&minted.token)).await {
                Ok(ClaimOutcome::Claimed(_)) => result.claimed_after_revoke = true,
                Ok(ClaimOutcome::Denied(_)) => {}
                Err(_) => result.claim_errors += 1,
            }
        } else {
            result.revoke_errors += 1;
        }
    }
    shared.rounds.lock().expect("rounds").push(result);
}

/// Runs each fault in turn, spread evenly over the run's claims; after
/// each, waits for a write sent after it to succeed, then heals.
async fn supervise(
    shared: Arc<Shared>,
    faults: Vec<String>,
    heal: Option<String>,
) -> Result<Vec<Fault>, String> {
    let mut done = Vec::new();
    let count = faults.len() as u64;
    for (at, command) in faults.into_iter().enumerate() {
        let due = shared.target * (at as u64 + 1) / (count + 1);
        while shared.claims.load(Ordering::Relaxed) < due {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fault_ms = shared.ms();
        let output = shell(command.clone()).await?;
        let returned_ms = shared.ms();
        eprintln!("soak: at {fault_ms} ms `{command}`: {}", output.trim());
        loop {
            if shared.last_write_sent.load(Ordering::Relaxed) > returned_ms {
                break;
            }
            if shared.claims.load(Ordering::Relaxed) >= shared.target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(heal) = &heal {
            let output = shell(heal.clone()).await?;
            eprintln!("soak: at {} ms healed: {}", shared.ms(), output.trim());
        }
        done.push(Fault {
            command,
            at_ms: fault_ms,
            returned_ms,
        });
    }
    Ok(done)
}

/// A line on stderr every 10 s, so that a long run shows it is moving.
async fn progress(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let claims = shared.claims.load(Ordering::Relaxed);
        let secs = shared.started.elapsed().as_secs_f64();
        eprintln!(
            "soak: {claims} of {} claims sent in {secs:.0} s ({:.0}/s)",
            shared.target,
            claims as f64 / secs
        );
    }
}

/// Runs `command` with `sh -c` off the runtime; its stdout, or an error.
async fn shell(command: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .map_err(|err| format!("{command}: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "{command}: {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    })
    .await
    .map_err(|err| err.to_string())?
}
