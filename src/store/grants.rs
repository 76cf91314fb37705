//! The grant operations both databases run with the same statements
//! ([`Statements`]), written once over a [`Dialect`]: insert, the lookups,
//! touch, a claim's compare-and-set, get, list, payload, the replay count,
//! and the database's own sweep, gauge, ping and pool figures. The lineage
//! (revoke, rotate, delegate) is in [`super::lineage`].

use std::{collections::BTreeMap, time::Duration};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type, types::Json};

use super::{
    Keyed, ListPage, ListQuery, Lookup, NewGrant, Prior, Result, StoreError, TOUCH_INTERVAL,
    dialect::Dialect,
    statements::{RECORD_KEY, RESERVE_KEY, Statements, list_queries},
    to_u32,
};
use crate::{
    grant::{CredentialRef, Grant, Micros, RevokeReason, micros},
    token::TokenHash,
};

/// A grant's labels, as stored (JSON).
type Labels = BTreeMap<String, String>;

/// One database's pools: the one serving calls, and one connection of its
/// own for readiness checks, so that a pool busy with calls does not read
/// as a database that is down.
pub struct Sql<DB: sqlx::Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) health: Pool<DB>,
}

impl<DB: sqlx::Database> Sql<DB> {
    /// The pool, for the sign-in rows kept beside the grants
    /// ([`crate::signin::store`]).
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }
}

impl<DB: sqlx::Database> Clone for Sql<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            health: self.health.clone(),
        }
    }
}

impl<DB: sqlx::Database> Sql<DB> {
    fn statements() -> &'static Statements
    where
        DB: Dialect,
    {
        DB::statements()
    }
}

impl<DB> Sql<DB>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Decode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Labels>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<Labels>: Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i16: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Inserts one grant on `db` (the pool, or a batch's connection) and
    /// returns it as stored.
    pub async fn insert_on<'e>(
        db: impl Executor<'e, Database = DB>,
        grant: &NewGrant,
    ) -> sqlx::Result<Grant> {
        let credential = grant.payload_credential.as_ref();
        let row = sqlx::query(Self::statements().insert)
            .bind(grant.grant_id.as_str())
            .bind(&grant.token_hash.0[..])
            .bind(grant.token_hint.as_str())
            .bind(grant.subject.as_str())
            .bind(DB::texts(&grant.audience))
            .bind(grant.run_id.as_str())
            .bind(DB::texts(&grant.scopes))
            .bind(Json(&grant.labels))
            .bind(grant.sealed_payload.as_slice())
            .bind(i64::from(grant.max_uses))
            .bind(grant.issued_by.as_str())
            .bind(micros(grant.ttl))
            .bind(grant.revoke_run_on_replay)
            .bind(credential.map(|c| c.bearer_id.as_str()))
            .bind(credential.map(|c| c.name.as_str()))
            .fetch_one(db)
            .await?;
        Self::grant_from_row(&row)
    }

    pub async fn insert(pool: &Pool<DB>, grant: &NewGrant) -> sqlx::Result<Grant> {
        Self::insert_on(pool, grant).await
    }

    pub async fn find(pool: &Pool<DB>, hash: &TokenHash) -> sqlx::Result<Option<Lookup>> {
        let row = sqlx::query(Self::statements().find)
            .bind(&hash.0[..])
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::lookup_from_row).transpose()
    }

    /// The grant and, in the same statement, the claim `client_id` made on
    /// it with the key hashed to `key_hash`, if any.
    pub async fn find_keyed(
        pool: &Pool<DB>,
        hash: &TokenHash,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> sqlx::Result<Option<(Lookup, Option<Prior>)>> {
        let row = sqlx::query(Self::statements().find_keyed)
            .bind(&hash.0[..])
            .bind(client_id)
            .bind(&key_hash[..])
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            Self::lookup_from_row(&row)?,
            Self::prior_from_row(&row)?,
        )))
    }

    /// The ids and times are bound as two lists, read in step.
    pub async fn touch(pool: &Pool<DB>, touches: &[(String, Micros)]) -> sqlx::Result<()> {
        let (ids, ats): (Vec<String>, Vec<Micros>) = touches.iter().cloned().unzip();
        sqlx::query(Self::statements().touch)
            .bind(DB::texts(&ids))
            .bind(DB::times(&ats))
            .bind(micros(TOUCH_INTERVAL))
            .execute(pool)
            .await?;
        Ok(())
    }

    /// One use, if the grant is live: the grant after it and its sealed
    /// payload.
    pub async fn consume(
        pool: &Pool<DB>,
        grant_id: &str,
    ) -> sqlx::Result<Option<(Grant, Vec<u8>)>> {
        let row = sqlx::query(Self::statements().consume)
            .bind(grant_id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::taken_from_row).transpose()
    }

    /// A keyed claim as a transaction of three statements (SQLite has no
    /// writes inside `WITH`; PostgreSQL runs one): reserve the key, take
    /// the use, record it. A key already recorded returns its claim; a
    /// racing insert of the same key waits for the writer lock first.
    pub(crate) async fn keyed_claim(
        pool: &Pool<DB>,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> Result<Keyed> {
        let mut tx = pool.begin().await?;
        let reserved = sqlx::query(RESERVE_KEY)
            .bind(grant_id)
            .bind(client_id)
            .bind(&key_hash[..])
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&reserved) == 0 {
            let prior = Self::prior_claim(&mut *tx, grant_id, client_id, key_hash).await?;
            tx.commit().await?;
            // Reserved before, so recorded: its claim is there.
            return prior.ok_or(StoreError::Internal(sqlx::Error::RowNotFound));
        }
        let Some(row) = sqlx::query(DB::statements().consume)
            .bind(grant_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(Keyed::Refused);
        };
        let (grant, sealed) = Self::taken_from_row(&row)?;
        sqlx::query(RECORD_KEY)
            .bind(grant_id)
            .bind(client_id)
            .bind(&key_hash[..])
            .bind(i64::from(grant.use_count))
            .bind(grant.last_used_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Keyed::Consumed(grant, sealed))
    }

    /// The claim `client_id` made on the grant with the key, if it did.
    pub async fn prior_claim<'e>(
        db: impl Executor<'e, Database = DB>,
        grant_id: &str,
        client_id: &str,
        key_hash: &[u8; 32],
    ) -> sqlx::Result<Option<Keyed>> {
        let row = sqlx::query(Self::statements().prior_claim)
            .bind(grant_id)
            .bind(client_id)
            .bind(&key_hash[..])
            .fetch_optional(db)
            .await?;
        row.as_ref().map(Self::replayed_from_row).transpose()
    }

    pub async fn count_replay(pool: &Pool<DB>, grant_id: &str) -> sqlx::Result<Option<u64>> {
        let replays: Option<i64> = sqlx::query_scalar(Self::statements().count_replay)
            .bind(grant_id)
            .fetch_optional(pool)
            .await?;
        Ok(replays.map(|n| u64::try_from(n).unwrap_or_default()))
    }

    pub async fn get(
        pool: &Pool<DB>,
        grant_id: &str,
        issued_by: Option<&str>,
    ) -> sqlx::Result<Option<Grant>> {
        let row = sqlx::query(Self::statements().get)
            .bind(grant_id)
            .bind(issued_by)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::grant_from_row).transpose()
    }

    /// A page of grants plus the live count (two statements).
    pub async fn list(pool: &Pool<DB>, query: &ListQuery) -> sqlx::Result<ListPage> {
        let (mut page, mut count) = list_queries::<DB>(query, Self::statements().live);
        let rows = page.build().fetch_all(pool).await?;
        let active: i64 = count.build().fetch_one(pool).await?.try_get(0)?;
        Ok(ListPage {
            grants: rows
                .iter()
                .map(Self::grant_from_row)
                .collect::<sqlx::Result<_>>()?,
            active_count: u64::try_from(active).unwrap_or_default(),
        })
    }

    pub async fn payload(pool: &Pool<DB>, grant_id: &str) -> sqlx::Result<Option<Vec<u8>>> {
        sqlx::query_scalar(Self::statements().payload)
            .bind(grant_id)
            .fetch_optional(pool)
            .await
    }

    pub async fn sweep(pool: &Pool<DB>, retention: Duration, batch: u32) -> sqlx::Result<u64> {
        let done = sqlx::query(Self::statements().sweep)
            .bind(micros(retention))
            .bind(i64::from(batch))
            .execute(pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    pub async fn count_live(pool: &Pool<DB>) -> sqlx::Result<u64> {
        let count: i64 = sqlx::query_scalar(Self::statements().count_live)
            .fetch_one(pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// On the readiness pool, not the one serving calls.
    pub async fn ping(health: &Pool<DB>) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(health).await?;
        Ok(())
    }

    /// The migrations this binary carries that the database has not applied.
    pub async fn unapplied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        let applied: Vec<i64> =
            sqlx::query_scalar::<DB, i64>("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(DB::migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| m.version)
            .collect())
    }

    /// A row of any statement that returns [`GRANT_COLUMNS`](super::statements::GRANT_COLUMNS).
    pub fn grant_from_row(row: &DB::Row) -> sqlx::Result<Grant> {
        Ok(Grant {
            grant_id: row.try_get("grant_id")?,
            token_hint: row.try_get("token_hint")?,
            subject: row.try_get("subject")?,
            audience: DB::read_texts(row, "audience")?,
            run_id: row.try_get("run_id")?,
            scopes: DB::read_texts(row, "scopes")?,
            labels: row.try_get::<Json<Labels>, _>("labels")?.0,
            max_uses: to_u32(row.try_get("max_uses")?),
            use_count: to_u32(row.try_get("use_count")?),
            issued_by: row.try_get("issued_by")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            revoke_reason: RevokeReason::from_code(row.try_get::<i16, _>("revoke_reason")?.into()),
            last_used_at: row.try_get("last_used_at")?,
            revoke_run_on_replay: row.try_get("revoke_run_on_replay")?,
            parent_grant_id: row.try_get("parent_grant_id")?,
            depth: to_u32(row.try_get("depth")?),
            rotated_from: row.try_get("rotated_from")?,
            rotated_to: row.try_get("rotated_to")?,
            payload_credential: CredentialRef::from_columns(
                row.try_get("credential_bearer_id")?,
                row.try_get("credential_name")?,
            ),
        })
    }

    /// A row of a claim: the grant after the use, and its sealed payload.
    pub fn taken_from_row(row: &DB::Row) -> sqlx::Result<(Grant, Vec<u8>)> {
        Ok((Self::grant_from_row(row)?, row.try_get("sealed_payload")?))
    }

    /// A row of [`Statements::find`] or [`Statements::find_keyed`].
    pub fn lookup_from_row(row: &DB::Row) -> sqlx::Result<Lookup> {
        let grant = Self::grant_from_row(row)?;
        let now: i64 = row.try_get("now")?;
        Ok(Lookup {
            expired: grant.expires_at <= now,
            grant,
            now,
        })
    }

    /// The prior claim in a row of [`Statements::find_keyed`], if there is one.
    fn prior_from_row(row: &DB::Row) -> sqlx::Result<Option<Prior>> {
        let Some(use_number) = row.try_get::<Option<i64>, _>("prior_use")? else {
            return Ok(None);
        };
        Ok(Some(Prior {
            use_count: to_u32(use_number),
            claimed_at: row.try_get("prior_at")?,
            sealed_payload: row.try_get("sealed_payload")?,
        }))
    }

    /// A row of [`Statements::prior_claim`]: the grant as that claim left it.
    fn replayed_from_row(row: &DB::Row) -> sqlx::Result<Keyed> {
        let mut grant = Self::grant_from_row(row)?;
        grant.use_count = to_u32(row.try_get("use_number")?);
        grant.last_used_at = Some(row.try_get("claimed_at")?);
        Ok(Keyed::Replayed(grant, row.try_get("sealed_payload")?))
    }
}
