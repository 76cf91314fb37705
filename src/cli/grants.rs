//! `tessera grants …`: mint, look up, list, revoke and rotate grants on a
//! running server, as `vault token create/lookup/revoke` do for Vault.
//! Tables for people, `--json` for scripts. A token is read from a flag
//! only when the operator gives it there; `-` reads it from stdin, so that
//! it stays out of `ps` and shell history.

use std::{io::Read, process::ExitCode, time::Duration};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tessera::config::parse_duration;
use tessera_client::{Grant, ListGrants, Mint, Revoke, RevokeReason, Rotate, Token};

use super::{remote::Remote, table};

#[derive(Subcommand)]
pub enum Grants {
    /// Mint a token (role `mint`); prints it once, with its grant.
    Mint {
        /// Whom the token is for.
        #[arg(long)]
        subject: String,
        /// A scope it grants (repeat for more): `tool:search`, `connector:*`.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A client id that may validate or claim it (repeat; none: any).
        #[arg(long = "audience")]
        audience: Vec<String>,
        /// The run it belongs to (to revoke or count a run at once).
        #[arg(long)]
        run: Option<String>,
        /// A label `KEY=VALUE` for the audit trail (repeat for more).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Lifetime (`60s`, `15m`); the server's --default-ttl if not given.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Uses a claim may take; 0 = unlimited.
        #[arg(long, default_value_t = 0)]
        max_uses: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one grant.
    Get {
        /// The grant's id (`grt_…`).
        grant_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List grants, oldest first, live ones unless --all.
    List {
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        run: Option<String>,
        /// Revoked, used-up and expired grants too.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke by token, grant, run or subject; prints how many live grants
    /// it revoked (their live descendants included).
    Revoke {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value = "manual")]
        reason: Reason,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace a grant with a successor and a new token (printed once); the
    /// old token stays valid for --overlap.
    Rotate {
        /// The token to rotate (`-` reads it from stdin); its payload is
        /// carried over.
        #[arg(long, group = "which")]
        token: Option<String>,
        /// The grant to rotate (one without a payload).
        #[arg(long, group = "which")]
        grant: Option<String>,
        /// How long the old token stays valid (default: none, it ends now).
        #[arg(long, value_parser = parse_duration)]
        overlap: Option<Duration>,
        /// The successor's lifetime (default: the original's).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Exactly one of these says what to revoke.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A token (`-` reads it from stdin).
    #[arg(long)]
    token: Option<String>,
    /// A grant id.
    #[arg(long)]
    grant: Option<String>,
    /// Every grant of a run.
    #[arg(long)]
    run: Option<String>,
    /// Every grant of a subject.
    #[arg(long)]
    subject: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Reason {
    Manual,
    RunEnded,
    SubjectDisabled,
    Compromised,
}

impl Grants {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Mint {
                subject,
                scopes,
                audience,
                run,
                labels,
                ttl,
                max_uses,
                remote,
            } => {
                let mut mint = Mint::new(subject).scopes(scopes).audience(audience);
                if let Some(run) = run {
                    mint = mint.run_id(run);
                }
                for (key, value) in labels {
                    mint = mint.label(key, value);
                }
                if let Some(ttl) = ttl {
                    mint = mint.ttl(ttl);
                }
                let client = remote.connect().await?;
                let minted = client
                    .mint(mint.max_uses(max_uses))
                    .await
                    .map_err(|e| remote.explain(e))?;
                print_token(&remote, &minted.token, &minted.grant);
            }
            Self::Get { grant_id, remote } => {
                let client = remote.connect().await?;
                let grant = client
                    .get_grant(grant_id)
                    .await
                    .map_err(|e| remote.explain(e))?;
                if remote.json {
                    println!("{}", grant_json(&grant));
                } else {
                    print!("{}", table::pairs(&grant_pairs(&grant)));
                }
            }
            Self::List {
                subject,
                run,
                all,
                limit,
                remote,
            } => list(subject, run, all, limit, &remote).await?,
            Self::Revoke {
                target,
                reason,
                remote,
            } => {
                let revoke = match target {
                    Target { token: Some(t), .. } => Revoke::token(read_token(t)?),
                    Target { grant: Some(g), .. } => Revoke::grant(g),
                    Target { run: Some(r), .. } => Revoke::run(r),
                    Target {
                        subject: Some(s), ..
                    } => Revoke::subject(s),
                    _ => unreachable!("clap requires one target"),
                };
                let client = remote.connect().await?;
                let revoked = client
                    .revoke(revoke.reason(reason.into()))
                    .await
                    .map_err(|e| remote.explain(e))?;
                if remote.json {
                    println!("{}", json!({ "revoked": revoked }));
                } else {
                    println!("revoked {revoked} live grant(s)");
                }
            }
            Self::Rotate {
                token,
                grant,
                overlap,
                ttl,
                remote,
            } => {
                let mut rotate = match (token, grant) {
                    (Some(token), _) => Rotate::token(read_token(token)?),
                    (None, Some(grant)) => Rotate::grant(grant),
                    (None, None) => anyhow::bail!("give --token or --grant"),
                };
                if let Some(overlap) = overlap {
                    rotate = rotate.overlap(overlap);
                }
                if let Some(ttl) = ttl {
                    rotate = rotate.ttl(ttl);
                }
                let client = remote.connect().await?;
                let rotated = client.rotate(rotate).await.map_err(|e| remote.explain(e))?;
                print_token(&remote, &rotated.token, &rotated.grant);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn list(
    subject: Option<String>,
    run: Option<String>,
    all: bool,
    limit: usize,
    remote: &Remote,
) -> anyhow::Result<()> {
    let client = remote.connect().await?;
    let mut grants = Vec::new();
    let mut page_token = None;
    let mut active: u64;
    loop {
        let mut request = ListGrants::new()
            .include_inactive(all)
            .page_size(limit.saturating_sub(grants.len()).clamp(1, 1000) as u32);
        if let Some(subject) = &subject {
            request = request.subject(subject.clone());
        }
        if let Some(run) = &run {
            request = request.run_id(run.clone());
        }
        if let Some(page) = page_token.take() {
            request = request.page_token(page);
        }
        let page = client
            .list_grants(request)
            .await
            .map_err(|e| remote.explain(e))?;
        active = page.active_count;
        grants.extend(page.grants);
        match page.next_page_token {
            Some(next) if grants.len() < limit => page_token = Some(next),
            _ => break,
        }
    }
    grants.truncate(limit);
    if remote.json {
        let list: Vec<Value> = grants.iter().map(grant_json).collect();
        println!("{}", json!({ "grants": list, "active_count": active }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            vec![
                g.grant_id.clone(),
                g.subject.clone(),
                g.run_id.clone(),
                g.scopes.join(" "),
                uses(g),
                time(g.expires_at.as_ref()),
                state(g),
            ]
        })
        .collect();
    print!(
        "{}",
        table::columns(
            &[
                "GRANT", "SUBJECT", "RUN", "SCOPES", "USES", "EXPIRES", "STATE"
            ],
            &rows
        )
    );
    eprintln!("{} shown; {active} live", grants.len());
    Ok(())
}

/// A token the operator gave, or `-`: the first line of stdin.
fn read_token(given: String) -> anyhow::Result<Token> {
    if given != "-" {
        return Ok(Token::new(given));
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "--token -: stdin held no token");
    Ok(Token::new(token))
}

/// The token, once, then its grant: stdout, since printing it is the point.
fn print_token(remote: &Remote, token: &Token, grant: &Grant) {
    if remote.json {
        println!(
            "{}",
            json!({ "token": token.expose(), "grant": grant_json(grant) })
        );
        return;
    }
    let mut rows = vec![("token", token.expose().to_owned())];
    rows.extend(grant_pairs(grant));
    print!("{}", table::pairs(&rows));
}

fn grant_pairs(g: &Grant) -> Vec<(&'static str, String)> {
    let mut labels: Vec<String> = g.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    vec![
        ("grant", g.grant_id.clone()),
        ("state", state(g)),
        ("subject", g.subject.clone()),
        ("audience", g.audience.join(" ")),
        ("run", g.run_id.clone()),
        ("scopes", g.scopes.join(" ")),
        ("labels", labels.join(" ")),
        ("uses", uses(g)),
        ("issued_by", g.issued_by.clone()),
        ("issued_at", time(g.issued_at.as_ref())),
        ("expires_at", time(g.expires_at.as_ref())),
        ("last_used_at", time(g.last_used_at.as_ref())),
        ("parent", g.parent_grant_id.clone()),
        ("rotated_from", g.rotated_from.clone()),
        ("rotated_to", g.rotated_to.clone()),
    ]
}

fn grant_json(g: &Grant) -> Value {
    let stamp = |t: Option<&prost_types::Timestamp>| t.map(ToString::to_string);
    json!({
        "grant_id": g.grant_id, "state": state(g), "subject": g.subject,
        "audience": g.audience, "run_id": g.run_id, "scopes": g.scopes, "labels": g.labels,
        "max_uses": g.max_uses, "use_count": g.use_count, "issued_by": g.issued_by,
        "issued_at": stamp(g.issued_at.as_ref()), "expires_at": stamp(g.expires_at.as_ref()),
        "revoked_at": stamp(g.revoked_at.as_ref()),
        "revoke_reason": (g.revoked_at.is_some()).then(|| g.revoke_reason().as_str_name()),
        "last_used_at": stamp(g.last_used_at.as_ref()),
        "parent_grant_id": g.parent_grant_id, "depth": g.depth,
        "rotated_from": g.rotated_from, "rotated_to": g.rotated_to,
    })
}

fn uses(g: &Grant) -> String {
    match g.max_uses {
        0 => format!("{}/unlimited", g.use_count),
        max => format!("{}/{max}", g.use_count),
    }
}

/// `live`, `revoked (REASON)`, `used up` or `expired`, by the local clock
/// for expiry (the server judges by the database's).
fn state(g: &Grant) -> String {
    if g.revoked_at.is_some() {
        let reason = g.revoke_reason().as_str_name();
        return format!("revoked ({})", reason.trim_start_matches("REVOKE_REASON_"));
    }
    if g.max_uses != 0 && g.use_count >= g.max_uses {
        return "used up".into();
    }
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    match &g.expires_at {
        Some(at) if (at.seconds, at.nanos) <= (now.seconds, now.nanos) => "expired".into(),
        _ => "live".into(),
    }
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))
}

impl From<Reason> for RevokeReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::Manual => Self::Manual,
            Reason::RunEnded => Self::RunEnded,
            Reason::SubjectDisabled => Self::SubjectDisabled,
            Reason::Compromised => Self::Compromised,
        }
    }
}
