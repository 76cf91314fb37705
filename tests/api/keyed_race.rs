//! Keyed claims racing for real: many tasks, many keys, each key retried
//! many times, through one server or two processes sharing a database. On
//! PostgreSQL keyed claims arriving together share one statement, so these
//! races put several keys of one grant, and one key twice, into a batch.
//! Every time: a grant gives at most its uses, a key takes at most one, and
//! every retry of a key that won gets that claim's answer.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use tessera::pb::{self, Denial, token_authority_client::TokenAuthorityClient};
use tonic::transport::Channel;

use crate::support::{Backend, Keys, Process, TestApp, TestDb, channel, claim, keyed, mint_req};

crate::both_backends!(
    racing_keys_never_exceed_max_uses,
    racing_retries_of_one_key_take_one_use,
    racing_keys_and_their_retries_take_one_use_per_winning_key,
);

/// Tokens of `max_uses` uses, each claimed with `keys` keys, each key sent
/// `retries` times, all at once.
struct Race {
    tokens: usize,
    max_uses: u32,
    keys: usize,
    retries: usize,
}

/// A token and the client that claims it (two clients, so that no one
/// client exceeds its in-flight share; a key is one client's).
struct Target {
    token: String,
    grant_id: String,
    client: &'static str,
}

const CLIENTS: [&str; 2] = ["proxy", "minter"];

impl Race {
    /// Mints the tokens through `channel`, payload `p<i>` each.
    async fn mint(&self, keys: &Keys, channel: &Channel) -> Vec<Target> {
        let mut minter = TokenAuthorityClient::new(channel.clone());
        let mut targets = Vec::with_capacity(self.tokens);
        for i in 0..self.tokens {
            let request = pb::MintRequest {
                max_uses: self.max_uses,
                payload: format!("p{i}").into_bytes(),
                ..mint_req("u")
            };
            let minted = minter
                .mint(keyed(keys.key("minter"), request))
                .await
                .unwrap()
                .into_inner();
            targets.push(Target {
                token: minted.token,
                grant_id: minted.grant.unwrap().grant_id,
                client: CLIENTS[i % 2],
            });
        }
        targets
    }

    /// Fires every claim at once, spread over `channels`, and checks the
    /// answers: per token, `min(keys, max_uses)` keys won, with use counts
    /// 1, 2, …; each of their retries got the same grant state and payload;
    /// every other key was refused each time. Returns the winners per token.
    async fn run(&self, keys: &Keys, channels: &[Channel], targets: &[Target]) -> Vec<usize> {
        let calls = self.tokens * self.keys * self.retries;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(calls));
        let tasks: Vec<_> = (0..calls)
            .map(|n| {
                // Retries of one key far apart in the order, keys interleaved.
                let (i, key) = (n % self.tokens, n / self.tokens % self.keys);
                let target = &targets[i];
                let request = keyed(
                    keys.key(target.client),
                    pb::ClaimRequest {
                        claim_key: format!("key-{key}"),
                        ..claim(&target.token)
                    },
                );
                let mut client = TokenAuthorityClient::new(channels[n % channels.len()].clone());
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let answer = client.claim(request).await;
                    (i, key, answer.expect("no RPC error").into_inner())
                })
            })
            .collect();
        let mut answers: HashMap<(usize, usize), Vec<pb::ClaimResponse>> = HashMap::new();
        for task in tasks {
            let (i, key, answer) = task.await.unwrap();
            answers.entry((i, key)).or_default().push(answer);
        }
        let mut winners = vec![0; self.tokens];
        let mut use_counts = vec![BTreeSet::new(); self.tokens];
        for ((i, key), answers) in answers {
            assert_eq!(answers.len(), self.retries);
            let first = &answers[0];
            if !first.claimed {
                for answer in &answers {
                    assert_eq!(
                        (answer.claimed, answer.denial),
                        (false, Denial::TokenUnknown as i32),
                        "token {i} key {key}: refused every time"
                    );
                }
                continue;
            }
            let grant = first.grant.as_ref().unwrap();
            assert_eq!(grant.grant_id, targets[i].grant_id);
            assert_eq!(first.payload, format!("p{i}").into_bytes());
            for answer in &answers {
                assert_eq!(
                    (answer.claimed, &answer.payload, answer.grant.as_ref()),
                    (true, &first.payload, Some(grant)),
                    "token {i} key {key}: every retry gets the first claim's answer"
                );
            }
            winners[i] += 1;
            assert!(use_counts[i].insert(grant.use_count), "one use per key");
        }
        let won = self.keys.min(self.max_uses as usize);
        let expected: BTreeSet<u32> = (1..=won as u32).collect();
        for i in 0..self.tokens {
            assert_eq!(winners[i], won, "token {i}: keys that won");
            assert_eq!(use_counts[i], expected, "token {i}: the uses taken");
        }
        winners
    }
}

/// `n` connections to `addr`.
async fn channels(addr: std::net::SocketAddr, n: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(channel(addr).await);
    }
    channels
}

/// Checks each grant's stored use count: only the winning keys' uses.
async fn assert_uses(app: &TestApp, targets: &[Target], uses: u32) {
    for target in targets {
        let grant = app.get("minter", &target.grant_id).await.unwrap();
        assert_eq!(grant.use_count, uses, "{}", target.grant_id);
    }
}

async fn race_in(app: &TestApp, race: Race) {
    let targets = race.mint(&app.keys, &app.channel).await;
    let channels = channels(app.addr, 4).await;
    race.run(&app.keys, &channels, &targets).await;
    let uses = race.keys.min(race.max_uses as usize);
    assert_uses(app, &targets, u32::try_from(uses).unwrap()).await;
}

/// 20 three-use tokens, each claimed with 12 keys at once (240 keyed
/// claims, several keys of one grant in a batch): three keys win per
/// token, with use counts 1, 2 and 3; the others are refused.
async fn racing_keys_never_exceed_max_uses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let race = Race {
        tokens: 20,
        max_uses: 3,
        keys: 12,
        retries: 1,
    };
    race_in(&app, race).await;
}

/// 30 five-use tokens, each claimed with one key sent 8 times at once (the
/// same key twice in a batch): one use per token, and all 8 answers are
/// that claim's, same payload, same use count and time of use.
async fn racing_retries_of_one_key_take_one_use(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let race = Race {
        tokens: 30,
        max_uses: 5,
        keys: 1,
        retries: 8,
    };
    race_in(&app, race).await;
}

/// 16 two-use tokens, each claimed with 4 keys, each key sent 4 times, all
/// at once: two keys win per token, each retry of a winning key gets its
/// answer, and the losing keys are refused every time.
async fn racing_keys_and_their_retries_take_one_use_per_winning_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let race = Race {
        tokens: 16,
        max_uses: 2,
        keys: 4,
        retries: 4,
    };
    race_in(&app, race).await;
}

/// 12 two-use tokens, each claimed with 3 keys sent 6 times, through two
/// server processes sharing one PostgreSQL (a key's retries land on both):
/// two keys win per token; the audit log shows, per grant, two claims
/// `claimed` and every other answer of the winning keys `retried`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_claims_through_two_processes_take_one_use_per_key() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let a = Process::spawn(db.url(), keys.file.path(), "info").await;
    let b = Process::spawn(db.url(), keys.file.path(), "info").await;
    let race = Race {
        tokens: 12,
        max_uses: 2,
        keys: 3,
        retries: 6,
    };
    let mut both = channels(a.addr, 2).await;
    both.extend(channels(b.addr, 2).await);
    let targets = race.mint(&keys, &both[0]).await;
    race.run(&keys, &both, &targets).await;

    let mut log = a.terminate().await;
    log.extend(b.terminate().await);
    let audit: Vec<Value> = log
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|e: &Value| e["target"] == "tessera::audit" && e["event"] == "claim")
        .collect();
    for target in &targets {
        let outcomes = |outcome: &str| {
            let of_grant = |e: &&Value| e["grant_id"] == target.grant_id.as_str();
            audit
                .iter()
                .filter(of_grant)
                .filter(|e| e["outcome"] == outcome)
                .count()
        };
        assert_eq!(
            (outcomes("claimed"), outcomes("retried")),
            (2, 2 * (race.retries - 1)),
            "{}",
            target.grant_id
        );
    }
}
