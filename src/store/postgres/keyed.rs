//! A keyed claim: the use and its key in one statement, and the claim a
//! racing retry with the same key made, when it won.
//!
//! Keyed claims arriving together share one statement and one commit
//! ([`consume_many`]), formed as the other batches are (see
//! [`super::batch`]): a lone claim runs at once. A claim its batch
//! did not answer runs alone after it ([`keyed_claim`]), which is exact in
//! every case, so a batch only has to be right about the claims it answers.

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, Postgres, Row};
use tracing::warn;

use super::{
    PgStore,
    batch::{Answer, Conn, Taken, lost},
    batch_statements,
};
use crate::store::{Keyed, Result, Sql, StoreError};

/// One keyed claim, as the batcher carries it.
#[derive(Clone)]
pub(super) struct Claim {
    pub(super) grant_id: String,
    pub(super) client_id: String,
    pub(super) key_hash: [u8; 32],
}

impl PgStore {
    /// Takes the use with whatever other keyed claims are waiting; a claim
    /// the batch did not answer runs alone, after it.
    pub(super) async fn claim_keyed(&self, claim: Claim) -> Result<Keyed> {
        match self.batches().keyed.submit(claim.clone()).await {
            Answer::Done((grant, sealed)) => Ok(Keyed::Consumed(grant, sealed)),
            Answer::Failed(err) => Err(err.into()),
            Answer::RunAlone => {
                keyed_claim(
                    &self.sql.pool,
                    &claim.grant_id,
                    &claim.client_id,
                    &claim.key_hash,
                )
                .await
            }
        }
    }
}

/// Takes the uses of many keyed claims in one statement
/// ([`super::BatchStatements::consume_keyed_many`]), one commit. Only the claims that took
/// their use are answered here; every other one runs alone, after it:
/// a grant with no use left, a key recorded before, a row another
/// transaction held (skipped rather than waited for), and any claim of a
/// grant already named in the batch (one `UPDATE` touches a row once). So
/// two keys of one grant take a use each, one after the other, and the
/// same key sent twice takes one: its second claim runs once the first
/// has committed and finds its key. A statement the database refused (a
/// timeout, or a racing claim that recorded one of the keys first) rolled
/// back, so its claims run alone too; a broken connection may have
/// committed, so its claims are UNAVAILABLE and nothing is run again.
pub(super) async fn consume_many(
    mut conn: Conn,
    claims: Vec<Claim>,
) -> (Vec<Answer<Taken>>, Option<Conn>) {
    let mut named = HashSet::with_capacity(claims.len());
    let sent: Vec<&Claim> = claims
        .iter()
        .filter(|claim| named.insert(claim.grant_id.as_str()))
        .collect();
    let rows = sqlx::query(batch_statements().consume_keyed_many)
        .bind(sent.iter().map(|c| c.grant_id.as_str()).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| c.client_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(sent.iter().map(|c| &c.key_hash[..]).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(err)) => {
            warn!(error = %err, claims = claims.len(), "a batch of keyed claims was refused; each runs alone");
            return (claims.iter().map(|_| Answer::RunAlone).collect(), None);
        }
        Err(err) => {
            warn!(error = %err, claims = claims.len(), "a batch of keyed claims failed");
            let lost = claims.iter().map(|_| Answer::Failed(lost()));
            return (lost.collect(), None);
        }
    };
    // By grant: each was sent once. A row that does not read leaves its
    // claim to run alone, which finds the key and reads the claim made.
    let mut taken: HashMap<String, (String, Vec<u8>, Taken)> = HashMap::new();
    for row in &rows {
        let read = || -> std::result::Result<_, sqlx::Error> {
            let (grant, sealed) = Sql::<Postgres>::taken_from_row(row)?;
            let client = row.try_get("wanted_client")?;
            let key = row.try_get("wanted_key")?;
            Ok((grant.grant_id.clone(), (client, key, (grant, sealed))))
        };
        if let Ok((grant_id, use_taken)) = read() {
            taken.insert(grant_id, use_taken);
        }
    }
    let answers = claims
        .iter()
        .map(|claim| match taken.remove(&claim.grant_id) {
            // The first claim of its grant: the one sent.
            Some((client, key, use_taken))
                if client == claim.client_id && key == claim.key_hash =>
            {
                Answer::Done(use_taken)
            }
            _ => Answer::RunAlone,
        })
        .collect();
    (answers, Some(conn))
}

/// One statement ([`super::BatchStatements::consume_keyed`]); only when a racing claim with
/// the same key won does it read the claim that one made.
pub(super) async fn keyed_claim(
    pool: &PgPool,
    grant_id: &str,
    client_id: &str,
    key_hash: &[u8; 32],
) -> Result<Keyed> {
    let used = sqlx::query(batch_statements().consume_keyed)
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .fetch_optional(pool)
        .await;
    match used {
        Ok(Some(row)) => {
            let (grant, sealed) = Sql::<Postgres>::taken_from_row(&row)?;
            Ok(Keyed::Consumed(grant, sealed))
        }
        Ok(None) => match Sql::prior_claim(pool, grant_id, client_id, key_hash).await? {
            Some(prior) => Ok(prior),
            None => Ok(Keyed::Refused),
        },
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            match Sql::prior_claim(pool, grant_id, client_id, key_hash).await? {
                Some(prior) => Ok(prior),
                None => Err(StoreError::Internal(sqlx::Error::Database(err))),
            }
        }
        Err(err) => Err(err.into()),
    }
}
