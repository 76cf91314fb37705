//! The sign-in rows, in the store's database but apart from it: plain sqlx
//! statements, the same text for PostgreSQL and SQLite (both read `$n`).
//! Times are unix microseconds from this replica's clock.

use sqlx::{PgPool, SqlitePool};

use super::clients::{ClientAuth, Metadata, OAuthClient};

/// The database the store uses.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs the same statement code on either pool.
macro_rules! on {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite($pool) => $body,
        }
    };
}

/// A flow between `/oauth2/authorize` and its code.
#[derive(Debug, Clone)]
pub struct Flow {
    pub flow_id: String,
    pub binding_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub subject: Option<String>,
    pub expires_at: i64,
}

type FlowRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    i64,
);

macro_rules! flow_columns {
    () => {
        "flow_id, binding_hash, client_id, redirect_uri, state, code_challenge, resource, \
         scopes, subject, expires_at"
    };
}

fn flow_from(row: FlowRow) -> Flow {
    Flow {
        flow_id: row.0,
        binding_hash: row.1,
        client_id: row.2,
        redirect_uri: row.3,
        state: row.4,
        code_challenge: row.5,
        resource: row.6,
        scopes: split(&row.7),
        subject: row.8,
        expires_at: row.9,
    }
}

fn split(scopes: &str) -> Vec<String> {
    scopes
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn insert_flow(db: &Db, flow: &Flow, now: i64) -> sqlx::Result<()> {
    const SQL: &str = concat!(
        "INSERT INTO signin_flows (",
        flow_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    );
    on!(db, |pool| {
        sqlx::query("DELETE FROM signin_flows WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await?;
        sqlx::query(SQL)
            .bind(&flow.flow_id)
            .bind(&flow.binding_hash)
            .bind(&flow.client_id)
            .bind(&flow.redirect_uri)
            .bind(&flow.state)
            .bind(&flow.code_challenge)
            .bind(&flow.resource)
            .bind(flow.scopes.join(" "))
            .bind(&flow.subject)
            .bind(flow.expires_at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The live flow `flow_id` names.
pub async fn flow(db: &Db, flow_id: &str, now: i64) -> sqlx::Result<Option<Flow>> {
    const SQL: &str = concat!(
        "SELECT ",
        flow_columns!(),
        " FROM signin_flows WHERE flow_id = $1 AND expires_at > $2"
    );
    let row: Option<FlowRow> = on!(db, |pool| sqlx::query_as(SQL)
        .bind(flow_id)
        .bind(now)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(flow_from))
}

/// Records who signed in, once: a flow whose subject is set is not signed
/// in again (a replayed provider callback changes nothing).
pub async fn set_subject(db: &Db, flow_id: &str, subject: &str) -> sqlx::Result<bool> {
    let sql = "UPDATE signin_flows SET subject = $2 WHERE flow_id = $1 AND subject IS NULL";
    let done = on!(db, |pool| sqlx::query(sql)
        .bind(flow_id)
        .bind(subject)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(done == 1)
}

/// Ends a flow; `true` if this call ended it (so only one caller issues
/// its code, or refuses it).
pub async fn take_flow(db: &Db, flow_id: &str) -> sqlx::Result<bool> {
    let done = on!(db, |pool| sqlx::query(
        "DELETE FROM signin_flows WHERE flow_id = $1"
    )
    .bind(flow_id)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(done == 1)
}

/// An authorization code's row.
#[derive(Debug, Clone)]
pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub subject: String,
    /// The run id of every grant minted from this code and its refreshes.
    pub family: String,
    pub expires_at: i64,
}

/// How long a used code's row stays, for its replays to be recognised.
const USED_CODE_KEPT_US: i64 = 3600 * 1_000_000;

pub async fn insert_code(db: &Db, code_hash: &str, code: &Code, now: i64) -> sqlx::Result<()> {
    let sql = "INSERT INTO signin_codes (code_hash, client_id, redirect_uri, code_challenge, \
               resource, scopes, subject, family, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    on!(db, |pool| {
        sqlx::query("DELETE FROM signin_codes WHERE expires_at < $1")
            .bind(now - USED_CODE_KEPT_US)
            .execute(pool)
            .await?;
        sqlx::query(sql)
            .bind(code_hash)
            .bind(&code.client_id)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(&code.resource)
            .bind(code.scopes.join(" "))
            .bind(&code.subject)
            .bind(&code.family)
            .bind(code.expires_at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// What presenting a code found.
pub enum Redeemed {
    /// First use: the code, now spent.
    First(Code),
    /// Spent before: the family its first use minted, to revoke.
    Replayed {
        client_id: String,
        family: String,
    },
    Unknown,
}

/// Spends a code in one statement, so of two racing exchanges one wins.
pub async fn redeem_code(db: &Db, code_hash: &str, now: i64) -> sqlx::Result<Redeemed> {
    type Row = (String, String, String, String, String, String, String, i64);
    let spend = "UPDATE signin_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL \
                 RETURNING client_id, redirect_uri, code_challenge, resource, scopes, subject, \
                 family, expires_at";
    let first: Option<Row> = on!(db, |pool| sqlx::query_as(spend)
        .bind(code_hash)
        .bind(now)
        .fetch_optional(pool)
        .await?);
    if let Some(row) = first {
        return Ok(Redeemed::First(Code {
            client_id: row.0,
            redirect_uri: row.1,
            code_challenge: row.2,
            resource: row.3,
            scopes: split(&row.4),
            subject: row.5,
            family: row.6,
            expires_at: row.7,
        }));
    }
    let again = "SELECT client_id, family FROM signin_codes WHERE code_hash = $1";
    let used: Option<(String, String)> = on!(db, |pool| sqlx::query_as(again)
        .bind(code_hash)
        .fetch_optional(pool)
        .await?);
    Ok(match used {
        Some((client_id, family)) => Redeemed::Replayed { client_id, family },
        None => Redeemed::Unknown,
    })
}

/// The scopes a live consent covers for subject, client and resource.
pub async fn consent(
    db: &Db,
    subject: &str,
    client_id: &str,
    resource: &str,
    now: i64,
) -> sqlx::Result<Option<Vec<String>>> {
    let sql = "SELECT scopes FROM signin_consents WHERE subject = $1 AND client_id = $2 \
               AND resource = $3 AND expires_at > $4";
    let row: Option<(String,)> = on!(db, |pool| sqlx::query_as(sql)
        .bind(subject)
        .bind(client_id)
        .bind(resource)
        .bind(now)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(|(scopes,)| split(&scopes)))
}

pub async fn remember_consent(
    db: &Db,
    subject: &str,
    client_id: &str,
    resource: &str,
    scopes: &[String],
    expires_at: i64,
) -> sqlx::Result<()> {
    let sql = "INSERT INTO signin_consents (subject, client_id, resource, scopes, expires_at) \
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, client_id, resource) \
               DO UPDATE SET scopes = excluded.scopes, expires_at = excluded.expires_at";
    on!(db, |pool| {
        sqlx::query(sql)
            .bind(subject)
            .bind(client_id)
            .bind(resource)
            .bind(scopes.join(" "))
            .bind(expires_at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A registered client: `metadata` is the registration answer's JSON.
pub async fn insert_client(
    db: &Db,
    client_id: &str,
    secret_hash: Option<&str>,
    metadata: &str,
    now: i64,
) -> sqlx::Result<()> {
    let sql = "INSERT INTO signin_clients (client_id, secret_hash, metadata, created_at) \
               VALUES ($1, $2, $3, $4)";
    on!(db, |pool| {
        sqlx::query(sql)
            .bind(client_id)
            .bind(secret_hash)
            .bind(metadata)
            .bind(now)
            .execute(pool)
            .await?;
    });
    Ok(())
}

pub async fn client(db: &Db, client_id: &str) -> anyhow::Result<Option<OAuthClient>> {
    let sql = "SELECT secret_hash, metadata FROM signin_clients WHERE client_id = $1";
    let row: Option<(Option<String>, String)> = on!(db, |pool| sqlx::query_as(sql)
        .bind(client_id)
        .fetch_optional(pool)
        .await?);
    let Some((secret_hash, metadata)) = row else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&metadata)?;
    let fields = json
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("stored client metadata is not an object"))?;
    let metadata = Metadata::from_json(fields).map_err(|why| anyhow::anyhow!(why))?;
    let auth = match (secret_hash, metadata.auth_method.as_deref()) {
        (Some(hash), Some("client_secret_post")) => ClientAuth::Secret {
            method: "client_secret_post",
            hash,
        },
        (Some(hash), _) => ClientAuth::Secret {
            method: "client_secret_basic",
            hash,
        },
        (None, _) => ClientAuth::None,
    };
    Ok(Some(OAuthClient {
        client_id: client_id.to_owned(),
        name: metadata.name,
        redirect_uris: metadata.redirect_uris,
        auth,
    }))
}

/// Notes a refresh token's family, for [`refresh_family`].
pub async fn insert_refresh(
    db: &Db,
    token_hash: &str,
    client_id: &str,
    family: &str,
    expires_at: i64,
    now: i64,
) -> sqlx::Result<()> {
    let sql = "INSERT INTO signin_refresh (token_hash, client_id, family, expires_at) \
               VALUES ($1, $2, $3, $4)";
    on!(db, |pool| {
        sqlx::query("DELETE FROM signin_refresh WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await?;
        sqlx::query(sql)
            .bind(token_hash)
            .bind(client_id)
            .bind(family)
            .bind(expires_at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The client and family of a refresh token Tessera issued.
pub async fn refresh_family(db: &Db, token_hash: &str) -> sqlx::Result<Option<(String, String)>> {
    let sql = "SELECT client_id, family FROM signin_refresh WHERE token_hash = $1";
    let row: Option<(String, String)> = on!(db, |pool| sqlx::query_as(sql)
        .bind(token_hash)
        .fetch_optional(pool)
        .await?);
    Ok(row)
}
