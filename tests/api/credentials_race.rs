//! BeginRefresh raced by many workers across two server processes on one
//! PostgreSQL: exactly one holder per lease period, a dead holder's lease
//! taken over after its TTL, readers served throughout, and no secret in
//! any log line.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tessera::pb::{self, credentials_client::CredentialsClient};
use tokio::sync::Barrier;
use tonic::transport::Channel;

use crate::{
    credentials::{K1, assert_no_secret, begin, complete, get, put, secret},
    support::{Backend, Keys, PATIENCE, Process, TestDb, channel, keyed, seal_key_file},
};

/// Workers per server process.
const PER_PROCESS: usize = 8;

struct Fleet {
    keys: Keys,
    /// One channel per process, workers alternating between them.
    channels: Vec<Channel>,
}

impl Fleet {
    fn client(&self, worker: usize) -> CredentialsClient<Channel> {
        CredentialsClient::new(self.channels[worker % self.channels.len()].clone())
    }

    async fn begin(&self, worker: usize, ttl: Duration) -> pb::BeginRefreshResponse {
        let m = keyed(self.keys.key("minter"), begin("u", ttl));
        self.client(worker)
            .begin_refresh(m)
            .await
            .unwrap()
            .into_inner()
    }

    async fn read(&self, worker: usize) -> pb::GetResponse {
        let m = keyed(self.keys.key("minter"), get("u"));
        self.client(worker).get(m).await.unwrap().into_inner()
    }

    async fn complete(
        &self,
        worker: usize,
        lease: &str,
        access: &[u8],
    ) -> Result<u64, tonic::Status> {
        let m = keyed(self.keys.key("minter"), complete(lease, access));
        Ok(self
            .client(worker)
            .complete_refresh(m)
            .await?
            .into_inner()
            .version)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresher_at_a_time_across_two_processes() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let key = seal_key_file(&[("k1", K1)]);
    let extra = ["--seal-key", key.path().to_str().unwrap()];
    // Process b logs everything (its lines are searched for secrets); a
    // only what it must, to keep the suite's two cores for the rest.
    let a = Process::spawn_with(db.url(), keys.file.path(), "info", &extra).await;
    let b = Process::spawn_with(db.url(), keys.file.path(), "trace", &extra).await;
    let fleet = Arc::new(Fleet {
        keys: keys.clone(),
        channels: vec![channel(a.addr).await, channel(b.addr).await],
    });
    let workers = 2 * PER_PROCESS;
    let m = keyed(
        keys.key("minter"),
        put("u", crate::credentials::ACCESS, Some(0)),
    );
    fleet.client(0).put(m).await.unwrap();

    // Rounds: every worker asks at once; exactly one is granted, the others
    // are told when its lease ends; readers get the old version until the
    // winner completes.
    let ttl = Duration::from_secs(10);
    for round in 1..=3u64 {
        let barrier = Arc::new(Barrier::new(workers));
        let asks: Vec<_> = (0..workers)
            .map(|worker| {
                let (fleet, barrier) = (fleet.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    (worker, fleet.begin(worker, ttl).await)
                })
            })
            .collect();
        let mut answers = Vec::new();
        for ask in asks {
            answers.push(ask.await.unwrap());
        }
        let granted: Vec<_> = answers.iter().filter(|(_, a)| a.granted).collect();
        assert_eq!(granted.len(), 1, "round {round}: {answers:?}");
        let (winner, lease) = granted[0];
        assert_eq!((lease.version, lease.fence), (round, round));
        for (_, answer) in &answers {
            assert_eq!(answer.version, round);
            assert_eq!(answer.holder_expires_at, lease.holder_expires_at);
        }
        for worker in 0..workers {
            assert_eq!(
                fleet.read(worker).await.version,
                round,
                "readers see the old version"
            );
        }
        let access = format!("at-round-{round}");
        let version = fleet
            .complete(*winner, &lease.lease_id, access.as_bytes())
            .await;
        assert_eq!(version.unwrap(), round + 1);
        assert_eq!(
            fleet.read(winner + 1).await.secret,
            secret(access.as_bytes())
        );
    }

    // Continuous contention: workers ask again and again; whoever holds the
    // lease refreshes and completes, until 20 refreshes are done (counted,
    // not timed: a busy machine only takes longer). Never two holders at
    // once, never a fence twice, every refresh committed.
    let holding = Arc::new(AtomicBool::new(false));
    let refreshes = Arc::new(AtomicU64::new(0));
    let target = 20;
    let deadline = Instant::now() + PATIENCE;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (fleet, holding, refreshes) = (fleet.clone(), holding.clone(), refreshes.clone());
            tokio::spawn(async move {
                let mut fences = Vec::new();
                while refreshes.load(Ordering::SeqCst) < target {
                    assert!(
                        Instant::now() < deadline,
                        "not {target} refreshes in {PATIENCE:?}"
                    );
                    let lease = fleet.begin(worker, ttl).await;
                    if !lease.granted {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    assert!(!holding.swap(true, Ordering::SeqCst), "two holders at once");
                    fences.push(lease.fence);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    holding.store(false, Ordering::SeqCst);
                    let access = format!("at-fence-{}", lease.fence);
                    let version = fleet
                        .complete(worker, &lease.lease_id, access.as_bytes())
                        .await;
                    assert_eq!(version.unwrap(), lease.version + 1);
                    refreshes.fetch_add(1, Ordering::SeqCst);
                }
                fences
            })
        })
        .collect();
    let mut fences = Vec::new();
    for task in tasks {
        fences.extend(task.await.unwrap());
    }
    fences.sort_unstable();
    let count = refreshes.load(Ordering::SeqCst);
    assert!(count >= target, "only {count} refreshes");
    assert_eq!(
        fences,
        (4..4 + count).collect::<Vec<_>>(),
        "one grant per fence, in order"
    );
    let now = fleet.read(1).await;
    assert_eq!(now.version, 4 + count);

    // A holder dies (and so does the server it spoke to): nobody gets the
    // lease until its TTL runs out, then exactly one worker does.
    let short = Duration::from_millis(1500);
    // The lease runs from some moment after this one.
    let asked_at = Instant::now();
    let dead = fleet.begin(0, short).await;
    assert!(dead.granted);
    drop(a);
    let survivors = Arc::new(Fleet {
        keys: keys.clone(),
        channels: vec![fleet.channels[1].clone()],
    });
    let takeovers: Vec<_> = (0..PER_PROCESS)
        .map(|worker| {
            let fleet = survivors.clone();
            tokio::spawn(async move {
                loop {
                    let lease = fleet.begin(worker, Duration::from_secs(30)).await;
                    if lease.granted {
                        return Some(lease);
                    }
                    if lease.holder_expires_at != dead.holder_expires_at {
                        return None; // another worker took it over
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    let mut heirs = Vec::new();
    for takeover in takeovers {
        heirs.extend(takeover.await.unwrap());
    }
    assert_eq!(heirs.len(), 1, "{heirs:?}");
    // (10 ms for the database's clock against this process's.)
    assert!(
        asked_at.elapsed() >= short - Duration::from_millis(10),
        "taken over before the TTL ran out"
    );
    assert_eq!(heirs[0].fence, dead.fence + 1);
    let late = survivors
        .complete(0, &dead.lease_id, b"at-from-the-dead")
        .await;
    assert_eq!(late.unwrap_err().code(), tonic::Code::FailedPrecondition);
    let version = survivors
        .complete(1, &heirs[0].lease_id, b"at-refreshed-SECRET")
        .await;
    assert_eq!(version.unwrap(), now.version + 1);

    let log = b.terminate().await.join("\n");
    assert!(
        log.contains("refresh lease granted"),
        "the log is being captured"
    );
    assert_no_secret(log.as_bytes());
    assert!(!log.contains("at-round-"), "a refreshed secret was logged");
}
