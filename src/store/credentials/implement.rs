//! The credential statements, written once for both databases.

/// Writes `impl CredentialStore` for a store with a `pool` field, its row
/// type and its clock (`$now`, unix microseconds): the same statements for
/// both databases.
macro_rules! implement {
    ($store:ty, $row:ty, $now:literal) => {
        use std::time::Duration;

        use sqlx::Row;

        use $crate::store::{
            Micros, Result, micros,
            credentials::{
                CredentialStore, Granted, LeaseState, Leased, Listed, Resealable, Sealed, Slot,
                Stored,
            },
        };

        fn version(row: &$row, column: &str) -> std::result::Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or_default())
        }

        fn signed(version: u64) -> i64 {
            i64::try_from(version).unwrap_or(i64::MAX)
        }

        fn slot_from_row(row: &$row) -> std::result::Result<Slot, sqlx::Error> {
            Ok(Slot {
                client_id: row.try_get("client_id")?,
                bearer_id: row.try_get("bearer_id")?,
                name: row.try_get("name")?,
            })
        }

        fn sealed_from_row(row: &$row) -> std::result::Result<Sealed, sqlx::Error> {
            Ok(Sealed {
                key_id: row.try_get("key_id")?,
                bytes: row.try_get("sealed")?,
            })
        }

        impl CredentialStore for $store {
            async fn read(&self, slot: &Slot) -> Result<Option<Stored>> {
                let row = sqlx::query(concat!(
                    "SELECT version, sealed, key_id, expires_at, ",
                    $now,
                    " AS now FROM credentials \
                     WHERE client_id = $1 AND bearer_id = $2 AND name = $3"
                ))
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(Stored {
                    version: version(&row, "version")?,
                    sealed: sealed_from_row(&row)?,
                    expires_at: row.try_get("expires_at")?,
                    now: row.try_get("now")?,
                }))
            }

            async fn version(&self, slot: &Slot) -> Result<Option<u64>> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM credentials \
                     WHERE client_id = $1 AND bearer_id = $2 AND name = $3",
                )
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.map(|v| u64::try_from(v).unwrap_or_default()))
            }

            async fn create(
                &self,
                slot: &Slot,
                sealed: &Sealed,
                expires_at: Option<Micros>,
            ) -> Result<bool> {
                let done = sqlx::query(concat!(
                    "INSERT INTO credentials (client_id, bearer_id, name, version, sealed, \
                     key_id, expires_at, updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, ",
                    $now,
                    ") ON CONFLICT DO NOTHING"
                ))
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .bind(&sealed.bytes)
                .bind(&sealed.key_id)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace(
                &self,
                slot: &Slot,
                version: u64,
                sealed: &Sealed,
                expires_at: Option<Micros>,
            ) -> Result<bool> {
                let done = sqlx::query(concat!(
                    "UPDATE credentials SET version = version + 1, sealed = $5, key_id = $6, \
                     expires_at = $7, lease_id = NULL, lease_expires_at = NULL, updated_at = ",
                    $now,
                    " WHERE client_id = $1 AND bearer_id = $2 AND name = $3 AND version = $4"
                ))
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .bind(signed(version))
                .bind(&sealed.bytes)
                .bind(&sealed.key_id)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn take_lease(
                &self,
                slot: &Slot,
                lease_id: &str,
                ttl: Duration,
            ) -> Result<Option<Granted>> {
                // A racing UPDATE waits for the row and re-checks the WHERE
                // clause against the winner's lease (SQLite has one writer
                // at a time): one lease per period, whoever asks.
                let row = sqlx::query(concat!(
                    "UPDATE credentials SET lease_id = $4, lease_fence = lease_fence + 1, \
                     lease_expires_at = ",
                    $now,
                    " + $5 WHERE client_id = $1 AND bearer_id = $2 AND name = $3 \
                     AND (lease_expires_at IS NULL OR lease_expires_at <= ",
                    $now,
                    ") RETURNING version, lease_fence, lease_expires_at"
                ))
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .bind(lease_id)
                .bind(micros(ttl))
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(Granted {
                    version: version(&row, "version")?,
                    fence: version(&row, "lease_fence")?,
                    expires_at: row.try_get("lease_expires_at")?,
                }))
            }

            async fn lease_state(&self, slot: &Slot) -> Result<Option<LeaseState>> {
                let row = sqlx::query(concat!(
                    "SELECT version, lease_expires_at, ",
                    $now,
                    " AS now FROM credentials \
                     WHERE client_id = $1 AND bearer_id = $2 AND name = $3"
                ))
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(LeaseState {
                    version: version(&row, "version")?,
                    lease_expires_at: row.try_get("lease_expires_at")?,
                    now: row.try_get("now")?,
                }))
            }

            async fn leased(&self, client_id: &str, lease_id: &str) -> Result<Option<Leased>> {
                let row = sqlx::query(
                    "SELECT client_id, bearer_id, name, version FROM credentials \
                     WHERE lease_id = $1 AND client_id = $2",
                )
                .bind(lease_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(Leased {
                    slot: slot_from_row(&row)?,
                    version: version(&row, "version")?,
                }))
            }

            async fn complete(
                &self,
                client_id: &str,
                lease_id: &str,
                version: u64,
                sealed: &Sealed,
                expires_at: Option<Micros>,
            ) -> Result<bool> {
                let done = sqlx::query(concat!(
                    "UPDATE credentials SET version = version + 1, sealed = $4, key_id = $5, \
                     expires_at = $6, lease_id = NULL, lease_expires_at = NULL, updated_at = ",
                    $now,
                    " WHERE lease_id = $1 AND client_id = $2 AND version = $3 \
                     AND lease_expires_at > ",
                    $now
                ))
                .bind(lease_id)
                .bind(client_id)
                .bind(signed(version))
                .bind(&sealed.bytes)
                .bind(&sealed.key_id)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release(&self, client_id: &str, lease_id: &str) -> Result<bool> {
                let done = sqlx::query(concat!(
                    "UPDATE credentials SET lease_id = NULL, lease_expires_at = NULL \
                     WHERE lease_id = $1 AND client_id = $2 AND lease_expires_at > ",
                    $now
                ))
                .bind(lease_id)
                .bind(client_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete(&self, slot: &Slot) -> Result<bool> {
                let done = sqlx::query(
                    "DELETE FROM credentials \
                     WHERE client_id = $1 AND bearer_id = $2 AND name = $3",
                )
                .bind(&slot.client_id)
                .bind(&slot.bearer_id)
                .bind(&slot.name)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn list(
                &self,
                client_id: &str,
                bearer_id: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<Listed>> {
                let rows = sqlx::query(
                    "SELECT name, version, expires_at FROM credentials \
                     WHERE client_id = $1 AND bearer_id = $2 AND name > $3 \
                     ORDER BY name LIMIT $4",
                )
                .bind(client_id)
                .bind(bearer_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Listed {
                            name: row.try_get("name")?,
                            version: version(row, "version")?,
                            expires_at: row.try_get("expires_at")?,
                        })
                    })
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(Into::into)
            }

            async fn stale_seals(
                &self,
                current_key_id: &str,
                after: &Slot,
                limit: u32,
            ) -> Result<Vec<Resealable>> {
                let rows = sqlx::query(
                    "SELECT client_id, bearer_id, name, version, sealed, key_id FROM credentials \
                     WHERE key_id <> $1 AND (client_id, bearer_id, name) > ($2, $3, $4) \
                     ORDER BY client_id, bearer_id, name LIMIT $5",
                )
                .bind(current_key_id)
                .bind(&after.client_id)
                .bind(&after.bearer_id)
                .bind(&after.name)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Resealable {
                            slot: slot_from_row(row)?,
                            version: version(row, "version")?,
                            sealed: sealed_from_row(row)?,
                        })
                    })
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(Into::into)
            }

            async fn count_stale_seals(&self, current_key_id: &str) -> Result<u64> {
                let count: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM credentials WHERE key_id <> $1")
                        .bind(current_key_id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(u64::try_from(count).unwrap_or_default())
            }

            async fn reseal(&self, row: &Resealable, sealed: &Sealed) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE credentials SET sealed = $6, key_id = $7 \
                     WHERE client_id = $1 AND bearer_id = $2 AND name = $3 \
                     AND version = $4 AND key_id = $5",
                )
                .bind(&row.slot.client_id)
                .bind(&row.slot.bearer_id)
                .bind(&row.slot.name)
                .bind(signed(row.version))
                .bind(&row.sealed.key_id)
                .bind(&sealed.bytes)
                .bind(&sealed.key_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use implement;
