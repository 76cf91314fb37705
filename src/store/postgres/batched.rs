//! What each batch of PostgreSQL calls runs (see [`super::batch`] for how
//! a batch forms): many lookups, uses or inserts in one statement
//! ([`super::statements`]), and the answer each call gets.
//!
//! A batch that fails is not retried as a batch. When no connection could
//! be had in time, every call in it gets that answer (UNAVAILABLE, after one
//! acquire timeout, as alone). Otherwise a lookup runs alone, with its own
//! error handling and retries; an insert is never run again (its batch may
//! have committed before the connection broke): its Mint is UNAVAILABLE,
//! as a lone insert's would be.

use std::collections::{BTreeMap, HashMap};

use sqlx::{Postgres, Row, postgres::PgRow, types::Json};
use tracing::warn;

use super::{
    batch::{Answer, Conn, Taken, failed, lost},
    batch_statements,
};
use crate::{
    grant::{Grant, micros},
    store::{Dialect, Lookup, NewGrant, Sql},
    token::TokenHash,
};

/// Looks up many token hashes in one statement. A lone call runs the plain
/// lookup: the cheapest plan there is.
pub(super) async fn find(
    mut conn: Conn,
    hashes: Vec<TokenHash>,
) -> (Vec<Answer<Option<Lookup>>>, Option<Conn>) {
    let keys: Vec<&[u8]> = hashes.iter().map(|hash| &hash.0[..]).collect();
    let statement = match keys.len() {
        1 => sqlx::query(Postgres::statements().find).bind(keys[0]),
        _ => sqlx::query(batch_statements().find_many).bind(keys.clone()),
    };
    let rows = match statement.fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(err) => return (failed(&err, hashes.len()), None),
    };
    let found = rows
        .iter()
        .map(|row| {
            let hash = match keys.len() {
                1 => keys[0].to_vec(),
                _ => row.try_get("token_hash").ok()?,
            };
            Some((hash, Sql::<Postgres>::lookup_from_row(row).ok()?))
        })
        .collect::<Option<HashMap<Vec<u8>, Lookup>>>();
    let Some(found) = found else {
        return (failed(&sqlx::Error::RowNotFound, hashes.len()), Some(conn));
    };
    let answers = keys
        .iter()
        .map(|key| Answer::Done(found.get(*key).cloned()))
        .collect();
    (answers, Some(conn))
}

/// Takes one use of each grant in one statement, one commit. Only grants
/// the statement updated are answered here; every other call runs alone,
/// after it, and gets its answer from the plain compare-and-set: a grant
/// with no use left, a row another transaction held (skipped rather than
/// waited for), and the second claim of a grant named twice (one `UPDATE`
/// touches a row once). A statement the database refused (a timeout)
/// rolled back, so its calls run alone too; a broken connection may have
/// committed, so its calls are UNAVAILABLE and nothing is run again.
pub(super) async fn consume(
    mut conn: Conn,
    ids: Vec<String>,
) -> (Vec<Answer<Option<Taken>>>, Option<Conn>) {
    let mut distinct: Vec<&str> = Vec::with_capacity(ids.len());
    for id in &ids {
        if !distinct.contains(&id.as_str()) {
            distinct.push(id);
        }
    }
    let rows = sqlx::query(batch_statements().consume_many)
        .bind(distinct)
        .fetch_all(&mut *conn)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(err)) => {
            warn!(error = %err, claims = ids.len(), "a batch of claims was refused; each runs alone");
            return (ids.iter().map(|_| Answer::RunAlone).collect(), None);
        }
        Err(err) => {
            warn!(error = %err, claims = ids.len(), "a batch of claims failed");
            return (ids.iter().map(|_| Answer::Failed(lost())).collect(), None);
        }
    };
    let mut taken: HashMap<String, Taken> = HashMap::new();
    for row in &rows {
        if let Ok((grant, sealed)) = Sql::<Postgres>::taken_from_row(row) {
            taken.insert(grant.grant_id.clone(), (grant, sealed));
        }
    }
    let answers = ids
        .iter()
        .map(|id| match taken.remove(id.as_str()) {
            Some(use_taken) => Answer::Done(Some(use_taken)),
            None => Answer::RunAlone,
        })
        .collect();
    (answers, Some(conn))
}

/// One grant of a batch insert, as `jsonb_to_recordset` reads it.
#[derive(serde::Serialize)]
struct Record<'a> {
    grant_id: &'a str,
    token_hash: String,
    token_hint: &'a str,
    subject: &'a str,
    audience: &'a [String],
    run_id: &'a str,
    scopes: &'a [String],
    labels: &'a BTreeMap<String, String>,
    sealed_payload: String,
    max_uses: i64,
    issued_by: &'a str,
    revoke_run_on_replay: bool,
    credential_bearer_id: Option<&'a str>,
    credential_name: Option<&'a str>,
    ttl: i64,
}

/// Inserts many grants in one statement, one commit. A lone call runs the
/// plain insert (in its slot, so that calls arriving meanwhile batch up).
pub(super) async fn insert(
    mut conn: Conn,
    grants: Vec<NewGrant>,
) -> (Vec<Answer<Grant>>, Option<Conn>) {
    if grants.len() == 1 {
        return match Sql::insert_on(&mut *conn, &grants[0]).await {
            Ok(grant) => (vec![Answer::Done(grant)], Some(conn)),
            Err(err) => (vec![Answer::Failed(err)], None),
        };
    }
    let rows: Vec<Record<'_>> = grants
        .iter()
        .map(|g| Record {
            grant_id: &g.grant_id,
            token_hash: hex::encode(g.token_hash.0),
            token_hint: &g.token_hint,
            subject: &g.subject,
            audience: &g.audience,
            run_id: &g.run_id,
            scopes: &g.scopes,
            labels: &g.labels,
            sealed_payload: hex::encode(&g.sealed_payload),
            max_uses: i64::from(g.max_uses),
            issued_by: &g.issued_by,
            revoke_run_on_replay: g.revoke_run_on_replay,
            credential_bearer_id: g.payload_credential.as_ref().map(|c| c.bearer_id.as_str()),
            credential_name: g.payload_credential.as_ref().map(|c| c.name.as_str()),
            ttl: micros(g.ttl),
        })
        .collect();
    let inserted = sqlx::query(batch_statements().insert_many)
        .bind(Json(&rows))
        .fetch_all(&mut *conn)
        .await;
    let inserted: Vec<PgRow> = match inserted {
        Ok(rows) => rows,
        Err(err) => {
            warn!(error = %err, mints = grants.len(), "a batch of mints failed");
            return ((0..grants.len()).map(|_| unwritten()).collect(), None);
        }
    };
    let mut by_id: HashMap<String, Grant> = inserted
        .iter()
        .filter_map(|row| Sql::<Postgres>::grant_from_row(row).ok())
        .map(|grant| (grant.grant_id.clone(), grant))
        .collect();
    let answers = grants
        .iter()
        .map(|g| match by_id.remove(&g.grant_id) {
            Some(grant) => Answer::Done(grant),
            None => unwritten(),
        })
        .collect();
    (answers, Some(conn))
}

/// A mint whose batch failed, or whose row did not come back.
fn unwritten() -> Answer<Grant> {
    Answer::Failed(lost())
}
