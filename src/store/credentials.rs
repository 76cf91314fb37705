//! Storage for the Credentials service: one table, `credentials`, behind a
//! trait of its own that both stores implement with the same SQL.
//!
//! A row is a sealed secret per (client, bearer, name), its version (1 on
//! create, +1 on every replace or refresh), and its refresh lease: the
//! holder's lease id, when the lease expires, and the fence (+1 on every
//! lease granted). Every change is one conditional statement, so the
//! database decides each race: which Put-if-version wins, which caller gets
//! a free or expired lease, whether a lease is still held when its refresh
//! is committed. Times are unix microseconds of the database's clock.

use std::{future::Future, time::Duration};

use super::{Micros, Result};

/// Where a credential lives: the client that put it, the bearer, the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub client_id: String,
    pub bearer_id: String,
    pub name: String,
}

/// A secret as stored: the id of the key that sealed it, and the sealed
/// bytes. `Debug` shows their size only.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// A credential as read, with the database's time of the read.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: u64,
    pub sealed: Sealed,
    pub expires_at: Option<Micros>,
    pub now: Micros,
}

/// A lease just granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub version: u64,
    pub fence: u64,
    pub expires_at: Micros,
}

/// A credential's lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    pub version: u64,
    /// When the lease expires, if one was granted and not released.
    pub lease_expires_at: Option<Micros>,
    pub now: Micros,
}

/// The credential a lease id names (for its client), expired or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub slot: Slot,
    pub version: u64,
}

/// One line of a List.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub version: u64,
    pub expires_at: Option<Micros>,
}

/// A row sealed under a key other than the current one (for `rekey`).
#[derive(Debug, Clone)]
pub struct Resealable {
    pub slot: Slot,
    pub version: u64,
    pub sealed: Sealed,
}

/// Persistence for credentials. Every method is one statement.
pub trait CredentialStore: Clone + Send + Sync + 'static {
    /// The credential in `slot`, and the database's time.
    fn read(&self, slot: &Slot) -> impl Future<Output = Result<Option<Stored>>> + Send;

    /// The version in `slot`, if there is a credential.
    fn version(&self, slot: &Slot) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Inserts version 1 unless the slot is taken; whether it did.
    fn create(
        &self,
        slot: &Slot,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Replaces version `version` with `version + 1` (sealed for it),
    /// releasing any lease: a refresh in progress is superseded. Whether
    /// the slot held that version.
    fn replace(
        &self,
        slot: &Slot,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Takes the lease as `lease_id` for `ttl` if it is free or expired,
    /// raising the fence. `None` if it is held (or there is no credential).
    fn take_lease(
        &self,
        slot: &Slot,
        lease_id: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Granted>>> + Send;

    /// The lease of `slot` as it stands; `None` if there is no credential.
    fn lease_state(&self, slot: &Slot) -> impl Future<Output = Result<Option<LeaseState>>> + Send;

    /// The credential `client_id`'s lease `lease_id` is on, expired or not.
    fn leased(
        &self,
        client_id: &str,
        lease_id: &str,
    ) -> impl Future<Output = Result<Option<Leased>>> + Send;

    /// Commits a refresh: if `client_id` still holds `lease_id` (not
    /// expired) on version `version`, writes `version + 1` and releases
    /// the lease. Whether it did.
    fn complete(
        &self,
        client_id: &str,
        lease_id: &str,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Releases `client_id`'s lease `lease_id` if still held (not expired).
    fn release(&self, client_id: &str, lease_id: &str)
    -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the credential in `slot`, lease and all; whether there was one.
    fn delete(&self, slot: &Slot) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` of a bearer's credentials with names after `after`,
    /// in name order.
    fn list(
        &self,
        client_id: &str,
        bearer_id: &str,
        after: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Listed>>> + Send;

    /// Up to `limit` rows not sealed under `current_key_id`, after `after`
    /// in (client, bearer, name) order.
    fn stale_seals(
        &self,
        current_key_id: &str,
        after: &Slot,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Resealable>>> + Send;

    /// Writes `sealed` over `row` if it is unchanged since read (same
    /// version, same key); whether it did. The version stays.
    fn reseal(
        &self,
        row: &Resealable,
        sealed: &Sealed,
    ) -> impl Future<Output = Result<bool>> + Send;
}

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
