//! The seal key checks: one row per `--seal-key` key id, holding a fixed
//! text sealed under the first key that used that id (see
//! [`crate::credentials::keycheck`] for why). A row is written once, by
//! whichever server gets there first, and never changed: racing servers
//! each insert with `ON CONFLICT DO NOTHING` and then read back the one
//! row that won.

use std::future::Future;

use super::{super::Result, Resealable};

/// Persistence for the key checks. Every method is one statement.
pub trait SealChecks: Clone + Send + Sync + 'static {
    /// The check value stored for `key_id`, if any.
    fn key_check(&self, key_id: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Stores `sealed` as `key_id`'s check value unless one is there
    /// already; whether it did.
    fn add_key_check(
        &self,
        key_id: &str,
        sealed: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` credentials sealed under `key_id`, least recently
    /// written first.
    fn sealed_under(
        &self,
        key_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Resealable>>> + Send;
}

/// Writes `impl SealChecks` for a store with a `pool` field, its row type
/// and its clock (`$now`, unix microseconds): the same statements for both
/// databases.
macro_rules! implement_checks {
    ($store:ty, $row:ty, $now:literal) => {
        impl $crate::store::credentials::SealChecks for $store {
            async fn key_check(&self, key_id: &str) -> $crate::store::Result<Option<Vec<u8>>> {
                let sealed =
                    sqlx::query_scalar("SELECT sealed FROM seal_key_checks WHERE key_id = $1")
                        .bind(key_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(sealed)
            }

            async fn add_key_check(
                &self,
                key_id: &str,
                sealed: &[u8],
            ) -> $crate::store::Result<bool> {
                let done = sqlx::query(concat!(
                    "INSERT INTO seal_key_checks (key_id, sealed, created_at) VALUES ($1, $2, ",
                    $now,
                    ") ON CONFLICT (key_id) DO NOTHING"
                ))
                .bind(key_id)
                .bind(sealed)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn sealed_under(
                &self,
                key_id: &str,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::credentials::Resealable>> {
                use sqlx::Row;
                let rows: Vec<$row> = sqlx::query(
                    "SELECT client_id, bearer_id, name, version, sealed FROM credentials \
                     WHERE key_id = $1 ORDER BY updated_at, client_id, bearer_id, name LIMIT $2",
                )
                .bind(key_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let read = |row: &$row| -> std::result::Result<_, sqlx::Error> {
                    Ok($crate::store::credentials::Resealable {
                        slot: $crate::store::credentials::Slot {
                            client_id: row.try_get("client_id")?,
                            bearer_id: row.try_get("bearer_id")?,
                            name: row.try_get("name")?,
                        },
                        version: u64::try_from(row.try_get::<i64, _>("version")?)
                            .unwrap_or_default(),
                        sealed: $crate::store::credentials::Sealed {
                            key_id: key_id.to_owned(),
                            bytes: row.try_get("sealed")?,
                        },
                    })
                };
                rows.iter()
                    .map(read)
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(Into::into)
            }
        }
    };
}

pub(crate) use implement_checks;
