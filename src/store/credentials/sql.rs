//! [`CredentialStore`] and [`SealChecks`] for every [`SqlStore`]: the same
//! statements ([`super::statements`]) on both databases.

use std::time::Duration;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{
    CredentialStore, Granted, LeaseState, Leased, Listed, Resealable, SealChecks, Sealed, Slot,
    Statements, Stored,
};
use crate::{
    grant::{Micros, micros},
    store::{Result, SqlStore, dialect::Dialect},
};

fn statements<DB: Dialect>() -> &'static Statements {
    &DB::statements().credentials
}

/// A version as stored (a signed column).
fn signed(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn unsigned(version: i64) -> u64 {
    u64::try_from(version).unwrap_or_default()
}

fn slot_from_row<R: Row>(row: &R) -> sqlx::Result<Slot>
where
    for<'q> &'q str: ColumnIndex<R>,
    for<'q> String: Decode<'q, R::Database> + Type<R::Database>,
{
    Ok(Slot {
        client_id: row.try_get("client_id")?,
        bearer_id: row.try_get("bearer_id")?,
        name: row.try_get("name")?,
    })
}

impl<S> CredentialStore for S
where
    S: SqlStore,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db> + ColumnIndex<<S::Db as sqlx::Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Decode<'q, S::Db> + Type<S::Db>,
    usize: ColumnIndex<<S::Db as sqlx::Database>::Row>,
{
    async fn read(&self, slot: &Slot) -> Result<Option<Stored>> {
        let row = sqlx::query(statements::<S::Db>().read)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .fetch_optional(&self.sql().pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Stored {
            version: unsigned(row.try_get("version")?),
            sealed: Sealed {
                key_id: row.try_get("key_id")?,
                bytes: row.try_get("sealed")?,
            },
            expires_at: row.try_get("expires_at")?,
            now: row.try_get("now")?,
        }))
    }

    async fn version(&self, slot: &Slot) -> Result<Option<u64>> {
        let found: Option<i64> = sqlx::query_scalar(statements::<S::Db>().version)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .fetch_optional(&self.sql().pool)
            .await?;
        Ok(found.map(unsigned))
    }

    async fn create(
        &self,
        slot: &Slot,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> Result<bool> {
        let done = sqlx::query(statements::<S::Db>().create)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .bind(sealed.bytes.as_slice())
            .bind(sealed.key_id.as_str())
            .bind(expires_at)
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn replace(
        &self,
        slot: &Slot,
        version: u64,
        sealed: &Sealed,
        expires_at: Option<Micros>,
    ) -> Result<bool> {
        let done = sqlx::query(statements::<S::Db>().replace)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .bind(signed(version))
            .bind(sealed.bytes.as_slice())
            .bind(sealed.key_id.as_str())
            .bind(expires_at)
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn take_lease(
        &self,
        slot: &Slot,
        lease_id: &str,
        ttl: Duration,
    ) -> Result<Option<Granted>> {
        let row = sqlx::query(statements::<S::Db>().take_lease)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .bind(lease_id)
            .bind(micros(ttl))
            .fetch_optional(&self.sql().pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Granted {
            version: unsigned(row.try_get("version")?),
            fence: unsigned(row.try_get("lease_fence")?),
            expires_at: row.try_get("lease_expires_at")?,
        }))
    }

    async fn lease_state(&self, slot: &Slot) -> Result<Option<LeaseState>> {
        let row = sqlx::query(statements::<S::Db>().lease_state)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .fetch_optional(&self.sql().pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LeaseState {
            version: unsigned(row.try_get("version")?),
            lease_expires_at: row.try_get("lease_expires_at")?,
            now: row.try_get("now")?,
        }))
    }

    async fn leased(&self, client_id: &str, lease_id: &str) -> Result<Option<Leased>> {
        let row = sqlx::query(statements::<S::Db>().leased)
            .bind(lease_id)
            .bind(client_id)
            .fetch_optional(&self.sql().pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Leased {
            slot: slot_from_row(&row)?,
            version: unsigned(row.try_get("version")?),
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
        let done = sqlx::query(statements::<S::Db>().complete)
            .bind(lease_id)
            .bind(client_id)
            .bind(signed(version))
            .bind(sealed.bytes.as_slice())
            .bind(sealed.key_id.as_str())
            .bind(expires_at)
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn release(&self, client_id: &str, lease_id: &str) -> Result<bool> {
        let done = sqlx::query(statements::<S::Db>().release)
            .bind(lease_id)
            .bind(client_id)
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn delete(&self, slot: &Slot) -> Result<bool> {
        let done = sqlx::query(statements::<S::Db>().delete)
            .bind(slot.client_id.as_str())
            .bind(slot.bearer_id.as_str())
            .bind(slot.name.as_str())
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn list(
        &self,
        client_id: &str,
        bearer_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Listed>> {
        let rows = sqlx::query(statements::<S::Db>().list)
            .bind(client_id)
            .bind(bearer_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.sql().pool)
            .await?;
        let listed = rows.iter().map(|row| {
            Ok(Listed {
                name: row.try_get("name")?,
                version: unsigned(row.try_get("version")?),
                expires_at: row.try_get("expires_at")?,
            })
        });
        Ok(listed.collect::<sqlx::Result<_>>()?)
    }

    async fn stale_seals(
        &self,
        current_key_id: &str,
        after: &Slot,
        limit: u32,
    ) -> Result<Vec<Resealable>> {
        let rows = sqlx::query(statements::<S::Db>().stale_seals)
            .bind(current_key_id)
            .bind(after.client_id.as_str())
            .bind(after.bearer_id.as_str())
            .bind(after.name.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.sql().pool)
            .await?;
        let stale = rows.iter().map(|row| {
            Ok(Resealable {
                slot: slot_from_row(row)?,
                version: unsigned(row.try_get("version")?),
                sealed: Sealed {
                    key_id: row.try_get("key_id")?,
                    bytes: row.try_get("sealed")?,
                },
            })
        });
        Ok(stale.collect::<sqlx::Result<_>>()?)
    }

    async fn count_stale_seals(&self, current_key_id: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(statements::<S::Db>().count_stale_seals)
            .bind(current_key_id)
            .fetch_one(&self.sql().pool)
            .await?;
        Ok(unsigned(count))
    }

    async fn reseal(&self, row: &Resealable, sealed: &Sealed) -> Result<bool> {
        let done = sqlx::query(statements::<S::Db>().reseal)
            .bind(row.slot.client_id.as_str())
            .bind(row.slot.bearer_id.as_str())
            .bind(row.slot.name.as_str())
            .bind(signed(row.version))
            .bind(row.sealed.key_id.as_str())
            .bind(sealed.bytes.as_slice())
            .bind(sealed.key_id.as_str())
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }
}

impl<S> SealChecks for S
where
    S: SqlStore,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db> + ColumnIndex<<S::Db as sqlx::Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Decode<'q, S::Db> + Type<S::Db>,
    usize: ColumnIndex<<S::Db as sqlx::Database>::Row>,
{
    async fn key_check(&self, key_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(statements::<S::Db>().key_check)
            .bind(key_id)
            .fetch_optional(&self.sql().pool)
            .await?)
    }

    async fn add_key_check(&self, key_id: &str, sealed: &[u8]) -> Result<bool> {
        let done = sqlx::query(statements::<S::Db>().add_key_check)
            .bind(key_id)
            .bind(sealed)
            .execute(&self.sql().pool)
            .await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn sealed_under(&self, key_id: &str, limit: u32) -> Result<Vec<Resealable>> {
        let rows = sqlx::query(statements::<S::Db>().sealed_under)
            .bind(key_id)
            .bind(i64::from(limit))
            .fetch_all(&self.sql().pool)
            .await?;
        let sealed = rows.iter().map(|row| {
            Ok(Resealable {
                slot: slot_from_row(row)?,
                version: unsigned(row.try_get("version")?),
                sealed: Sealed {
                    key_id: key_id.to_owned(),
                    bytes: row.try_get("sealed")?,
                },
            })
        });
        Ok(sealed.collect::<sqlx::Result<_>>()?)
    }
}
