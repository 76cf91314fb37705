//! The operations that follow a grant's lineage — revoke (with its
//! descendants), rotate, delegate — written once for both databases.
//!
//! A family (a root, its descendants and their rotations) holds together:
//! a child takes its uses from its parent and lives no longer than it, a
//! successor carries its predecessor's uses, and revoking any member, live
//! or not, revokes every live descendant in the same transaction.

use std::collections::BTreeMap;

use sqlx::{
    ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type,
    query::QueryScalar, types::Json,
};

use super::{
    Delegation, RevokeTarget, Revoked, Rotated, Rotation, Sql, dialect::Dialect,
    statements::Statements,
};
use crate::{
    grant::{Grant, Micros, RevokeReason},
    token::TokenHash,
};

type Labels = BTreeMap<String, String>;

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
    /// The live targets, then the descendants of every target, live or
    /// not, in one transaction. A delegation racing the revoke either
    /// waits on its parent's row lock and then finds the parent revoked,
    /// or holds that lock first and commits while the cascade waits for
    /// it; its child is then missing from the cascade's snapshot
    /// (PostgreSQL's READ COMMITTED reads the rows a statement began
    /// with). So the cascade repeats until the family, read afresh after
    /// it, has not grown: every delegation that got a parent's lock first
    /// had committed by then. The write comes first, so SQLite's
    /// transaction holds the write lock from its first statement (its
    /// family never grows: one more read).
    pub async fn revoke(
        pool: &Pool<DB>,
        target: &RevokeTarget,
        issued_by: Option<&str>,
        reason: RevokeReason,
    ) -> sqlx::Result<Revoked> {
        let statements = DB::statements();
        let (live, all) = (&statements.revoke, &statements.targets);
        let (revoke, targets) = match target {
            RevokeTarget::Token(_) => (live.token_hash, all.token_hash),
            RevokeTarget::GrantId(_) => (live.grant_id, all.grant_id),
            RevokeTarget::RunId(_) => (live.run_id, all.run_id),
            RevokeTarget::Subject(_) => (live.subject, all.subject),
        };
        let mut tx = pool.begin().await?;
        let revoked: Vec<String> = Self::bind_target(sqlx::query_scalar(revoke), target)
            .bind(reason.code())
            .bind(issued_by)
            .fetch_all(&mut *tx)
            .await?;
        let all: Vec<String> = Self::bind_target(sqlx::query_scalar(targets), target)
            .bind(issued_by)
            .fetch_all(&mut *tx)
            .await?;
        let mut family = Self::family(&mut tx, &all).await?;
        let mut descendants = Vec::new();
        loop {
            descendants.extend(Self::descendants(&mut tx, &all, reason, 0).await?);
            let now = Self::family(&mut tx, &all).await?;
            if now == family {
                break;
            }
            family = now;
        }
        tx.commit().await?;
        Ok(Revoked {
            count: (revoked.len() + descendants.len()) as u64,
            descendants,
        })
    }

    /// A revoke's target value: a token hash as bytes, an id as text.
    fn bind_target<'q, O>(
        query: QueryScalar<'q, DB, O, DB::Arguments>,
        target: &'q RevokeTarget,
    ) -> QueryScalar<'q, DB, O, DB::Arguments> {
        match target {
            RevokeTarget::Token(hash) => query.bind(&hash.0[..]),
            RevokeTarget::GrantId(id) | RevokeTarget::RunId(id) | RevokeTarget::Subject(id) => {
                query.bind(id.as_str())
            }
        }
    }

    /// The ids the cascade from `ids` walks, in order (see
    /// [`Statements::family`]).
    async fn family(
        tx: &mut Transaction<'static, DB>,
        ids: &[String],
    ) -> sqlx::Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(DB::statements().family)
            .bind(DB::texts(ids))
            .fetch_all(&mut **tx)
            .await
    }

    /// Revokes the live descendants of `ids` (see
    /// [`Statements::revoke_descendants`]) from now + `after`.
    async fn descendants(
        tx: &mut Transaction<'static, DB>,
        ids: &[String],
        reason: RevokeReason,
        after: Micros,
    ) -> sqlx::Result<Vec<TokenHash>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(DB::statements().revoke_descendants)
            .bind(DB::texts(ids))
            .bind(reason.code())
            .bind(after)
            .fetch_all(&mut **tx)
            .await?;
        Ok(hashes
            .iter()
            .filter_map(|hash| <[u8; 32]>::try_from(hash.as_slice()).ok())
            .map(TokenHash)
            .collect())
    }

    /// Rotates a live grant not rotated before, in one transaction (see
    /// [`Statements::rotate_out`], [`Statements::rotate_in`],
    /// [`Statements::spend_rest`]); `None` if it may not be rotated.
    pub async fn rotate(pool: &Pool<DB>, r: &Rotation) -> sqlx::Result<Option<Rotated>> {
        let statements: &Statements = DB::statements();
        let reason = RevokeReason::Rotated;
        let mut tx = pool.begin().await?;
        let out = sqlx::query(statements.rotate_out)
            .bind(r.grant_id.as_str())
            .bind(r.successor_id.as_str())
            .bind(r.overlap)
            .bind(reason.code())
            .bind(r.issued_by.as_deref())
            .fetch_optional(&mut *tx)
            .await?;
        // Dropping the transaction rolls it back.
        let Some(out) = out else { return Ok(None) };
        let predecessor = Self::grant_from_row(&out)?;
        let successor = sqlx::query(statements.rotate_in)
            .bind(r.successor_id.as_str())
            .bind(&r.token_hash.0[..])
            .bind(r.token_hint.as_str())
            .bind(r.sealed_payload.as_slice())
            .bind(r.ttl)
            .bind(r.grant_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let successor = Self::grant_from_row(&successor)?;
        let spent = sqlx::query(statements.spend_rest)
            .bind(r.grant_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let predecessor = match spent {
            Some(row) => Self::grant_from_row(&row)?,
            None => predecessor,
        };
        let ids = [r.grant_id.clone()];
        let descendants = Self::descendants(&mut tx, &ids, reason, r.overlap).await?;
        tx.commit().await?;
        Ok(Some(Rotated {
            successor,
            predecessor,
            descendants,
        }))
    }

    /// Takes the child's uses from its parent ([`Statements::escrow`]) and
    /// inserts it, in one transaction; `None` if the parent is not live or
    /// its uses were taken meanwhile.
    pub async fn delegate(pool: &Pool<DB>, d: &Delegation) -> sqlx::Result<Option<Grant>> {
        let statements = DB::statements();
        let mut tx = pool.begin().await?;
        let parent: Option<String> = sqlx::query_scalar(statements.escrow)
            .bind(d.parent_grant_id.as_str())
            .bind(i64::from(d.max_uses))
            .fetch_optional(&mut *tx)
            .await?;
        // Dropping the transaction rolls it back.
        if parent.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(statements.delegate)
            .bind(d.grant_id.as_str())
            .bind(&d.token_hash.0[..])
            .bind(d.token_hint.as_str())
            .bind(DB::texts(&d.audience))
            .bind(DB::texts(&d.scopes))
            .bind(Json(&d.labels))
            .bind(d.sealed_payload.as_slice())
            .bind(i64::from(d.max_uses))
            .bind(d.issued_by.as_str())
            .bind(d.ttl)
            .bind(d.parent_grant_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let child = Self::grant_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(child))
    }
}
