//! What the soak found: every grant read back and held against what its
//! callers were told, and each fault's recovery time.

use std::{sync::Arc, time::Duration};

use tessera_client::Client;
use tokio::task::JoinSet;

/// One grant's round, as its callers saw it.
#[derive(Default)]
pub struct Round {
    pub grant_id: String,
    pub max_uses: u32,
    /// Claims answered "claimed".
    pub acked_uses: u32,
    /// Claims the caller got an error for (after the client's retries).
    pub claim_errors: u32,
    pub revoke_acked: bool,
    /// The acknowledged revoke counted the grant as revoked (it was live).
    pub revoked_live: bool,
    pub revoke_errors: u32,
    /// A claim sent after the revoke was acknowledged, and claimed.
    pub claimed_after_revoke: bool,
}

/// One call: when it was sent (ms since the start) and how long it took.
pub struct Sample {
    pub sent: u64,
    pub latency: u64,
    pub write: bool,
    pub ok: bool,
}

pub struct Fault {
    pub command: String,
    pub at_ms: u64,
    /// When the command returned: a SIGKILL's moment (the command looks
    /// the primary up first); a switchover's end.
    pub returned_ms: u64,
}

/// How long after a fault writes work again, and how slow calls were meanwhile.
struct Recovery {
    /// From the fault command's return to the first successful write sent
    /// after it.
    first_write_ms: Option<u64>,
    /// The longest time without a successful write finishing, in the
    /// minute after the fault: a planned switchover lets writes sent after
    /// it succeed on the old primary before it stops, so this is its outage.
    longest_gap_ms: u64,
    /// p99 of the calls sent from the fault until 2 s after that write.
    p99_ms: u64,
    calls: usize,
}

pub struct Tally {
    grants: usize,
    claims: u64,
    acked_uses: u64,
    double_uses: u64,
    lost_uses: u64,
    over_max: u64,
    revokes_acked: u64,
    /// An acknowledged revoke of a live grant not found in the database.
    revocations_undone: u64,
    /// A claim sent after a revoke was acknowledged, and claimed.
    claimed_after_revoke: u64,
    /// Uses the database holds that no caller was told of (their claim
    /// errored): not a violation, the caller did not count on them.
    unacked_uses: u64,
    claim_errors: u64,
    revoke_errors: u64,
    read_errors: u64,
    mint_errors: u64,
    p99_ms: u64,
    elapsed: Duration,
    faults: Vec<(Fault, Recovery)>,
}

fn p99(mut latencies: Vec<u64>) -> u64 {
    if latencies.is_empty() {
        return 0;
    }
    latencies.sort_unstable();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

impl Tally {
    pub async fn read_back(
        client: &Client,
        rounds: Vec<Round>,
        samples: Vec<Sample>,
        faults: Vec<Fault>,
        mint_errors: u64,
        elapsed: Duration,
    ) -> Self {
        let mut tally = Tally {
            grants: rounds.len(),
            claims: 0,
            acked_uses: 0,
            double_uses: 0,
            lost_uses: 0,
            over_max: 0,
            revokes_acked: 0,
            revocations_undone: 0,
            claimed_after_revoke: 0,
            unacked_uses: 0,
            claim_errors: 0,
            revoke_errors: 0,
            read_errors: 0,
            mint_errors,
            p99_ms: p99(samples.iter().map(|s| s.latency).collect()),
            elapsed,
            faults: Vec::new(),
        };
        for fault in faults {
            let recovery = recovery(&samples, &fault);
            tally.faults.push((fault, recovery));
        }
        // Read back on 16 tasks, each a slice of the rounds.
        let rounds = Arc::new(rounds);
        let mut readers = JoinSet::new();
        for reader in 0..16 {
            let (client, rounds) = (client.clone(), rounds.clone());
            readers.spawn(async move {
                let mut stored = Vec::new();
                for round in rounds.iter().skip(reader).step_by(16) {
                    stored.push(client.get_grant(round.grant_id.clone()).await);
                }
                (reader, stored)
            });
        }
        while let Some(read) = readers.join_next().await {
            let (reader, stored) = read.expect("a reader");
            for (round, grant) in rounds.iter().skip(reader).step_by(16).zip(stored) {
                tally.count(round, grant);
            }
        }
        tally
    }

    fn count(
        &mut self,
        round: &Round,
        grant: Result<tessera_client::Grant, tessera_client::Error>,
    ) {
        self.claims += u64::from(round.max_uses) + 2 + u64::from(round.revoke_acked);
        self.acked_uses += u64::from(round.acked_uses);
        self.claim_errors += u64::from(round.claim_errors);
        self.revoke_errors += u64::from(round.revoke_errors);
        self.revokes_acked += u64::from(round.revoke_acked);
        self.claimed_after_revoke += u64::from(round.claimed_after_revoke);
        let acked = round.acked_uses;
        if acked > round.max_uses {
            match round.max_uses {
                1 => self.double_uses += u64::from(acked - 1),
                _ => self.over_max += u64::from(acked - round.max_uses),
            }
        }
        let Ok(grant) = grant else {
            self.read_errors += 1;
            return;
        };
        if grant.use_count < acked {
            self.lost_uses += u64::from(acked - grant.use_count);
        }
        if grant.use_count > grant.max_uses.max(1) {
            self.over_max += u64::from(grant.use_count - grant.max_uses.max(1));
        }
        self.unacked_uses += u64::from(grant.use_count.saturating_sub(acked));
        let spent = grant.use_count >= grant.max_uses.max(1);
        let over = grant.revoked_at.is_some() || spent;
        if round.revoked_live && grant.revoked_at.is_none() || round.revoke_acked && !over {
            self.revocations_undone += 1;
        }
    }

    /// Every safety count is zero and no claim, revoke or read failed.
    pub fn held(&self) -> bool {
        self.double_uses
            + self.lost_uses
            + self.over_max
            + self.revocations_undone
            + self.claimed_after_revoke
            == 0
            && self.claim_errors + self.revoke_errors + self.read_errors == 0
    }

    pub fn print(&self) {
        let rate = self.claims as f64 / self.elapsed.as_secs_f64();
        println!(
            "claims {} ({rate:.0}/s over {:.0} s), grants {}, uses acknowledged {}, revocations acknowledged {}",
            self.claims,
            self.elapsed.as_secs_f64(),
            self.grants,
            self.acked_uses,
            self.revokes_acked
        );
        println!(
            "double uses {}, acknowledged uses lost {}, revocations undone {} (and claims \
             granted after one {}), uses over a maximum {}",
            self.double_uses,
            self.lost_uses,
            self.revocations_undone,
            self.claimed_after_revoke,
            self.over_max
        );
        println!(
            "errors seen by callers: claims {}, revokes {}, reads {}; mints {} (a mint whose reply was lost is never retried)",
            self.claim_errors, self.revoke_errors, self.read_errors, self.mint_errors
        );
        println!(
            "uses stored but not acknowledged (their claim errored) {}; p99 of every call {} ms",
            self.unacked_uses, self.p99_ms
        );
        for (fault, recovery) in &self.faults {
            let first = recovery
                .first_write_ms
                .map_or("none".to_owned(), |ms| format!("{ms} ms"));
            println!(
                "fault `{}` at {} ms (returned after {} ms): first write sent after it done after \
                 {first}; longest time without a successful write {} ms; p99 {} ms over {} calls \
                 around it",
                fault.command,
                fault.at_ms,
                fault.returned_ms - fault.at_ms,
                recovery.longest_gap_ms,
                recovery.p99_ms,
                recovery.calls
            );
        }
        println!("{}", if self.held() { "HELD" } else { "VIOLATED" });
    }
}

fn recovery(samples: &[Sample], fault: &Fault) -> Recovery {
    let (at, returned) = (fault.at_ms, fault.returned_ms);
    let first_write_ms = samples
        .iter()
        .filter(|s| s.write && s.ok && s.sent >= returned)
        .map(|s| s.sent + s.latency - returned)
        .min();
    let mut done: Vec<u64> = samples
        .iter()
        .filter(|s| s.write && s.ok)
        .map(|s| s.sent + s.latency)
        .filter(|&done| done >= at && done <= at + 60_000)
        .collect();
    done.sort_unstable();
    let longest_gap_ms = std::iter::once(at)
        .chain(done.iter().copied())
        .zip(done.iter().copied())
        .map(|(before, after)| after - before)
        .max()
        .unwrap_or(0);
    let until = at + first_write_ms.unwrap_or(0).max(longest_gap_ms) + 2000;
    let around: Vec<u64> = samples
        .iter()
        .filter(|s| s.sent >= at && s.sent <= until)
        .map(|s| s.latency)
        .collect();
    Recovery {
        first_write_ms,
        longest_gap_ms,
        calls: around.len(),
        p99_ms: p99(around),
    }
}
