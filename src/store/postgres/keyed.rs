//! A keyed claim: the use and its key in one statement, and the claim a
//! racing retry with the same key made, when it won.

use sqlx::{PgPool, Row};

use super::{grant_from_row, replayed_from_row};
use crate::store::{Keyed, Result, StoreError, sql};

/// One statement ([`sql::consume_keyed!`]); only when a racing claim with
/// the same key won does it read the claim that one made.
pub(super) async fn keyed_claim(
    pool: &PgPool,
    grant_id: &str,
    client_id: &str,
    key_hash: &[u8; 32],
) -> Result<Keyed> {
    let used = sqlx::query(pg!(consume_keyed))
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .fetch_optional(pool)
        .await;
    match used {
        Ok(Some(row)) => Ok(Keyed::Consumed(
            grant_from_row(&row)?,
            row.try_get("sealed_payload")?,
        )),
        Ok(None) => match prior_claim(pool, grant_id, client_id, key_hash).await? {
            Some(prior) => Ok(prior),
            None => Ok(Keyed::Refused),
        },
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            match prior_claim(pool, grant_id, client_id, key_hash).await? {
                Some(prior) => Ok(prior),
                None => Err(StoreError::Internal(sqlx::Error::Database(err))),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// The claim `client_id` made on the grant with the key, if it did.
async fn prior_claim(
    pool: &PgPool,
    grant_id: &str,
    client_id: &str,
    key_hash: &[u8; 32],
) -> Result<Option<Keyed>> {
    let row = sqlx::query(sql::prior_claim!())
        .bind(grant_id)
        .bind(client_id)
        .bind(&key_hash[..])
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(replayed_from_row).transpose()?)
}
