//! The load: clients, pre-minting, and the closed loop of calls.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tonic::{Request, metadata::MetadataValue, transport::Channel};

use crate::report::{Report, report};
use tessera::{
    config::parse_duration,
    pb::{self, revoke_request::Target, token_authority_client::TokenAuthorityClient},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Validate,
    Claim,
    Mint,
    /// RFC 7662 introspection over HTTP (`--http`), instead of Validate.
    Introspect,
    /// 70% validate, 20% claim, 8% mint, 2% revoke.
    Mixed,
    /// How long a revoke on `--target` takes to show in BOUNDED Validates
    /// on `--replica`; latencies are those delays.
    Propagation,
}

/// The tokens Validate and Claim present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokens {
    /// Minted first, live.
    Live,
    /// Never minted (well-formed, checksummed, unknown to the server).
    Unknown,
    /// Minted first, then revoked: refused like unknown ones, but with a row.
    Revoked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Full,
    Bounded,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub target: SocketAddr,
    #[command(flatten)]
    pub tls: tessera::net::ClientTls,
    #[arg(long, value_enum, default_value = "validate")]
    pub op: Op,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections the calls share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before it, under the same load.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Consistency of the Validate calls.
    #[arg(long, value_enum, default_value = "full")]
    pub consistency: Consistency,
    /// HTTP version of `--op introspect`: 1.1 (a connection per task,
    /// kept alive) or 2 (tasks share `--connections`).
    #[arg(long, value_enum, default_value = "1.1")]
    pub http: crate::http::Version,
    /// A second server on the same database (for `--op propagation`).
    #[arg(long)]
    pub replica: Option<SocketAddr>,
    /// Grants to mint first, for validate and claim to use.
    #[arg(long, default_value_t = 10_000)]
    pub grants: usize,
    /// Which tokens validate and claim present: comparing `unknown` with
    /// `revoked` shows whether a hidden refusal's timing tells them apart.
    #[arg(long, value_enum, default_value = "live")]
    pub tokens: Tokens,
    /// Uses each pre-minted grant allows (0 = unlimited). With 1, every
    /// claim takes a grant's last use; pre-mint more grants than claims.
    #[arg(long, default_value_t = 0)]
    pub max_uses: u32,
    /// Send every claim with a claim key of its own (a retry-safe claim).
    #[arg(long)]
    pub claim_key: bool,
    /// Client key with the mint, validate, claim and revoke roles (none in dev mode).
    #[arg(long, env = "TESSERA_BENCH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Server process to read peak RSS from; found by the target port if unset.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print, as JSON, the PostgreSQL statements each operation runs, and exit.
    #[arg(long)]
    pub print_sql: bool,
}

/// One task's record of the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    outcomes: BTreeMap<String, u64>,
}

#[derive(Clone)]
pub(crate) struct Caller {
    client: TokenAuthorityClient<Channel>,
    auth: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// This task's HTTP connection, for `--op introspect`.
    http: Option<crate::http::Sender>,
    target: SocketAddr,
    consistency: pb::Consistency,
    max_uses: u32,
    claim_key: bool,
}

impl Caller {
    fn req<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(auth) = &self.auth {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        request
    }

    pub(crate) async fn mint(&mut self, i: usize) -> Result<String, tonic::Status> {
        let message = pb::MintRequest {
            subject: format!("bench-subject-{}", i % 100),
            run_id: format!("bench-run-{}", i % 1000),
            scopes: vec!["bench:*".into(), "tool:search".into()],
            ttl: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            max_uses: self.max_uses,
            ..Default::default()
        };
        Ok(self
            .client
            .mint(self.req(message))
            .await?
            .into_inner()
            .token)
    }

    /// One call of `op`; returns the outcome's name.
    pub(crate) async fn call(
        &mut self,
        op: Op,
        tokens: &[String],
        i: usize,
        minted: &mut Vec<String>,
    ) -> String {
        let token = tokens[i % tokens.len()].clone();
        let required_scopes = vec!["bench:read".to_owned()];
        let result = match op {
            Op::Validate => {
                let m = pb::ValidateRequest {
                    token,
                    required_scopes,
                    consistency: self.consistency as i32,
                    ..Default::default()
                };
                self.client.validate(self.req(m)).await.map(|r| {
                    let r = r.into_inner();
                    if r.valid {
                        "valid".to_owned()
                    } else {
                        denial(r.denial)
                    }
                })
            }
            Op::Claim => {
                let m = pb::ClaimRequest {
                    token,
                    required_scopes,
                    claim_key: if self.claim_key {
                        format!("bench-{i}")
                    } else {
                        String::new()
                    },
                    ..Default::default()
                };
                self.client.claim(self.req(m)).await.map(|r| {
                    let r = r.into_inner();
                    if r.claimed {
                        "claimed".to_owned()
                    } else {
                        denial(r.denial)
                    }
                })
            }
            Op::Introspect => {
                let (http, auth) = (self.http.as_ref().expect("connected"), self.auth.as_ref());
                let auth = auth.and_then(|a| a.to_str().ok());
                return crate::http::introspect(http, self.target, auth, &token).await;
            }
            Op::Mint => self.mint(i).await.map(|t| {
                minted.push(t);
                "minted".to_owned()
            }),
            Op::Mixed | Op::Propagation => unreachable!("resolved before the call"),
        };
        result.unwrap_or_else(|status| format!("error:{:?}", status.code()))
    }

    pub(crate) async fn revoke(&mut self, token: String) -> String {
        let m = pb::RevokeRequest {
            target: Some(Target::Token(token)),
            reason: pb::RevokeReason::Manual as i32,
        };
        match self.client.revoke(self.req(m)).await {
            Ok(_) => "revoked".to_owned(),
            Err(status) => format!("error:{:?}", status.code()),
        }
    }
}

fn denial(code: i32) -> String {
    let name = pb::Denial::try_from(code).map_or("UNKNOWN_ENUM", |d| d.as_str_name());
    format!("denied:{}", name.trim_start_matches("DENIAL_"))
}

/// Which operation the `n`th call of a mixed load is: a fixed 100-call cycle.
fn mixed(n: usize) -> Option<Op> {
    match n % 100 {
        0..70 => Some(Op::Validate),
        70..90 => Some(Op::Claim),
        90..98 => Some(Op::Mint),
        _ => None, // revoke
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.concurrency > 0 && args.connections > 0,
        "--concurrency and --connections must be positive"
    );
    let auth = args
        .key
        .as_deref()
        .map(|key| MetadataValue::try_from(format!("Bearer {key}")))
        .transpose()
        .context("--key is not a valid header value")?;
    let consistency = match args.consistency {
        Consistency::Full => pb::Consistency::Full,
        Consistency::Bounded => pb::Consistency::Bounded,
    };
    let (max_uses, claim_key) = (args.max_uses, args.claim_key);
    let connect = |target: SocketAddr| {
        let auth = auth.clone();
        let endpoint = args.tls.endpoint(&target.to_string());
        async move {
            let channel = endpoint?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {target}"))?;
            anyhow::Ok(Caller {
                client: TokenAuthorityClient::new(channel)
                    .max_decoding_message_size(tessera::input::MAX_MESSAGE),
                auth,
                http: None,
                target,
                consistency,
                max_uses,
                claim_key,
            })
        }
    };
    let mut callers = Vec::new();
    for _ in 0..args.connections {
        callers.push(connect(args.target).await?);
    }
    if args.op == Op::Propagation {
        let replica = args.replica.context("--op propagation needs --replica")?;
        let on_replica = Caller {
            consistency: pb::Consistency::Bounded,
            ..connect(replica).await?
        };
        let delays = crate::propagation::run(&args, callers.swap_remove(0), on_replica).await?;
        return Ok(report(&args, delays, BTreeMap::new(), None));
    }

    let tokens = match (args.op, args.tokens) {
        (Op::Mint, _) => Vec::new(),
        (_, Tokens::Unknown) => (0..args.grants.max(1))
            .map(|_| tessera::token::Token::generate().into_plaintext())
            .collect(),
        _ => premint(&args, &callers).await?,
    };
    let tokens = Arc::new(if tokens.is_empty() {
        vec![String::new()]
    } else {
        tokens
    });

    let mut https = Vec::new();
    if args.op == Op::Introspect {
        let count = match args.http {
            crate::http::Version::Http1 => args.concurrency,
            crate::http::Version::Http2 => args.connections,
        };
        for _ in 0..count {
            https.push(crate::http::connect(args.target, args.http).await?);
        }
    }
    let start = Instant::now();
    let unix_ms = |at: Instant| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (now + at.saturating_duration_since(Instant::now())).as_millis() as u64
    };
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let window = (unix_ms(measure_from), unix_ms(end));
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let mut caller = callers[t % callers.len()].clone();
            caller.http = (!https.is_empty()).then(|| https[t % https.len()].clone());
            let (tokens, next, op) = (tokens.clone(), next.clone(), args.op);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut minted = Vec::new();
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let outcome = match op {
                        Op::Mixed => match mixed(i) {
                            Some(op) => caller.call(op, &tokens, i, &mut minted).await,
                            None => match minted.pop() {
                                Some(token) => caller.revoke(token).await,
                                None => caller.call(Op::Mint, &tokens, i, &mut minted).await,
                            },
                        },
                        op => caller.call(op, &tokens, i, &mut minted).await,
                    };
                    if now >= measure_from {
                        // Latency is of answered calls; errors (a shed call
                        // returns at once) are counted, not timed.
                        if !outcome.starts_with("error:") {
                            let took = now.elapsed().as_micros();
                            tally
                                .latencies_us
                                .push(u32::try_from(took).unwrap_or(u32::MAX));
                        }
                        *tally.outcomes.entry(outcome).or_default() += 1;
                    }
                    if op == Op::Mint {
                        minted.clear();
                    }
                }
                tally
            })
        })
        .collect();

    let rate = crate::progress::rate(next.clone(), measure_from, end);

    let mut latencies = Vec::new();
    let mut outcomes = BTreeMap::new();
    for task in tasks {
        let tally = task.await?;
        latencies.extend(tally.latencies_us);
        for (name, count) in tally.outcomes {
            *outcomes.entry(name).or_default() += count;
        }
    }
    if let Some(rate) = rate {
        rate.abort();
    }
    Ok(report(&args, latencies, outcomes, Some(window)))
}

/// Mints `args.grants` tokens with every task at once, showing progress on a terminal.
async fn premint(args: &BenchArgs, callers: &[Caller]) -> anyhow::Result<Vec<String>> {
    let total = args.grants.max(1);
    let done = Arc::new(AtomicUsize::new(0));
    // Few enough minters that a server shedding load above its limit
    // still takes them all.
    let workers = args.concurrency.clamp(1, 16).min(total);
    let revoked = args.tokens == Tokens::Revoked;
    let tasks: Vec<_> = (0..workers)
        .map(|t| {
            let mut caller = callers[t % callers.len()].clone();
            let done = done.clone();
            let share = (t..total).step_by(workers).collect::<Vec<_>>();
            tokio::spawn(async move {
                let mut tokens = Vec::with_capacity(share.len());
                for i in share {
                    let token = caller.mint(i).await?;
                    if revoked {
                        let outcome = caller.revoke(token.clone()).await;
                        if outcome != "revoked" {
                            return Err(tonic::Status::internal(outcome));
                        }
                    }
                    tokens.push(token);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, tonic::Status>(tokens)
            })
        })
        .collect();
    let progress = crate::progress::bar(done.clone(), total);
    let mut tokens = Vec::with_capacity(total);
    for task in tasks {
        tokens.extend(task.await?.map_err(|s| {
            anyhow::anyhow!("pre-minting failed: {} {}", s.code() as i32, s.message())
        })?);
    }
    if let Some(progress) = progress {
        progress.await?;
    }
    Ok(tokens)
}
