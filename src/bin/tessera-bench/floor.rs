//! The floors Tessera is counted against (bench/count.py): a bare tonic
//! server on the service's own crates and messages, doing only what any
//! server answering Validate must. The `echo` floor answers every
//! `ValidateRequest` with a `ValidateResponse` built from memory; the
//! `database` floor runs one sqlx SELECT by token hash per call on
//! Tessera's grants table and builds the response from the row. What
//! Tessera spends beyond them is its own: rules, audit, metrics, batching.
//!
//! Mint is answered too (from memory, or with one INSERT of the row the
//! database floor will select), only so that the unchanged load generator
//! can pre-mint its tokens against a floor as it does against Tessera.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, ValueEnum};
use prost_types::Timestamp;
use sqlx::{PgPool, Row};
use tonic::{Request, Response, Status};

use tessera::{
    pb::{self, token_authority_server::TokenAuthorityServer},
    token::Token,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Floor {
    Echo,
    Database,
}

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Serve a floor instead of generating load (see bench/count.py).
    #[arg(long, value_enum)]
    pub floor: Option<Floor>,
    /// Where the floor listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// The database floor's PostgreSQL, with Tessera's schema migrated.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Serves `floor` until SIGTERM or Ctrl-C, then returns (so that a
/// profiler wrapping the process sees it exit normally).
pub async fn serve(floor: Floor, args: FloorArgs) -> anyhow::Result<()> {
    let pool = match floor {
        Floor::Echo => None,
        Floor::Database => {
            let url = args
                .database_url
                .context("--floor database needs --database-url")?;
            Some(
                PgPool::connect(&url)
                    .await
                    .context("connecting to PostgreSQL")?,
            )
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(TokenAuthorityServer::new(Server { pool }))
        .serve_with_shutdown(args.listen, stop)
        .await?;
    Ok(())
}

struct Server {
    pool: Option<PgPool>,
}

const SELECT: &str = "SELECT grant_id, token_hint, subject, run_id, scopes, max_uses, use_count, \
    issued_by, issued_at, expires_at FROM grants WHERE token_hash = $1";
const INSERT: &str = "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, \
    run_id, scopes, labels, sealed_payload, max_uses, issued_by, issued_at, expires_at) \
    VALUES ($1, $2, $3, $4, '{}', $5, $6, '{}', '\\x', $7, 'dev', tessera_now_us(), \
    tessera_now_us() + $8)";

fn timestamp(unix_us: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: unix_us.div_euclid(1_000_000),
        nanos: (unix_us.rem_euclid(1_000_000) * 1000) as i32,
    })
}

/// The floors measure Validate only; every other call is refused.
fn not_a_floor() -> Status {
    Status::unimplemented("a floor answers only Validate (and Mint, to pre-mint)")
}

fn internal(err: sqlx::Error) -> Status {
    Status::internal(err.to_string())
}

#[tonic::async_trait]
impl pb::token_authority_server::TokenAuthority for Server {
    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let token = request.into_inner().token;
        let grant = match &self.pool {
            None => pb::Grant {
                grant_id: "g-echo".into(),
                token_hint: token.chars().take(8).collect(),
                subject: "bench-subject".into(),
                run_id: "bench-run".into(),
                scopes: vec!["bench:*".into(), "tool:search".into()],
                issued_by: "dev".into(),
                issued_at: timestamp(0),
                expires_at: timestamp(3_600_000_000),
                ..Default::default()
            },
            Some(pool) => {
                // The hash the service stores: SHA-256 of the token.
                let hash = Token::parse(&token)
                    .map_err(|_| Status::invalid_argument("token: malformed"))?
                    .hash();
                let row = sqlx::query(SELECT)
                    .bind(hash.0.as_slice())
                    .fetch_optional(pool)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| Status::not_found("no such token"))?;
                pb::Grant {
                    grant_id: row.get(0),
                    token_hint: row.get(1),
                    subject: row.get(2),
                    run_id: row.get(3),
                    scopes: row.get(4),
                    max_uses: row.get::<i64, _>(5) as u32,
                    use_count: row.get::<i64, _>(6) as u32,
                    issued_by: row.get(7),
                    issued_at: timestamp(row.get(8)),
                    expires_at: timestamp(row.get(9)),
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(pb::ValidateResponse {
            valid: true,
            denial: 0,
            grant: Some(grant),
        }))
    }

    async fn mint(
        &self,
        request: Request<pb::MintRequest>,
    ) -> Result<Response<pb::MintResponse>, Status> {
        let m = request.into_inner();
        let token = Token::generate();
        if let Some(pool) = &self.pool {
            let ttl_us = m.ttl.map_or(3_600_000_000, |d| d.seconds * 1_000_000);
            let hash = token.hash().0;
            sqlx::query(INSERT)
                .bind(format!("floor_{}", hex::encode(&hash[..12])))
                .bind(hash.as_slice())
                .bind(token.hint())
                .bind(&m.subject)
                .bind(&m.run_id)
                .bind(&m.scopes)
                .bind(i64::from(m.max_uses))
                .bind(ttl_us)
                .execute(pool)
                .await
                .map_err(internal)?;
        }
        Ok(Response::new(pb::MintResponse {
            token: token.into_plaintext(),
            ..Default::default()
        }))
    }

    async fn claim(
        &self,
        _: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        Err(not_a_floor())
    }
    async fn revoke(
        &self,
        _: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        Err(not_a_floor())
    }
    async fn get_grant(
        &self,
        _: Request<pb::GetGrantRequest>,
    ) -> Result<Response<pb::GetGrantResponse>, Status> {
        Err(not_a_floor())
    }
    async fn list_grants(
        &self,
        _: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        Err(not_a_floor())
    }
    async fn rotate(
        &self,
        _: Request<pb::RotateRequest>,
    ) -> Result<Response<pb::RotateResponse>, Status> {
        Err(not_a_floor())
    }
    async fn delegate(
        &self,
        _: Request<pb::DelegateRequest>,
    ) -> Result<Response<pb::DelegateResponse>, Status> {
        Err(not_a_floor())
    }
}
