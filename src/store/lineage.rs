//! The operations that follow a grant's lineage — revoke (with its
//! descendants), rotate, delegate — written once for both databases. Each
//! store expands [`lineage!`] in its `dialect` module: its clock, how a list of
//! ids becomes rows, how a list is bound, and its smallest-of function.
//!
//! A family (a root, its descendants and their rotations) holds together:
//! a child takes its uses from its parent and lives no longer than it, a
//! successor carries its predecessor's uses, and revoking any member, live
//! or not, revokes every live descendant in the same transaction.

/// Expands to `revoke`, `rotate`, `delegate` and `payload` functions over
/// one database's pool.
macro_rules! lineage {
    (
        db: $db:ty,
        now: $now:literal,
        ids: $ids:literal,
        least: $least:literal,
        list: $list:expr,
        grant_from_row: $from_row:path $(,)?
    ) => {
        /// The live targets, then the descendants of every target, live or
        /// not, in one transaction: a delegation racing the revoke either
        /// commits first (and its child is found by the last statement,
        /// which sees it) or waits on the parent's row lock and then finds
        /// the parent revoked. The write comes first, so SQLite's
        /// transaction holds the write lock from its first statement.
        pub(super) async fn revoke(
            pool: &sqlx::Pool<$db>,
            target: &$crate::store::RevokeTarget,
            issued_by: Option<&str>,
            reason: $crate::store::RevokeReason,
        ) -> $crate::store::Result<$crate::store::Revoked> {
            use $crate::store::RevokeTarget as T;
            use $crate::store::sql::{revoke as live, targets as all};
            let mut tx = pool.begin().await?;
            let (revoke, targets, value): (&str, &str, _) = match target {
                T::Token(hash) => (
                    live!($now, "token_hash"),
                    all!("token_hash"),
                    Value::Hash(&hash.0[..]),
                ),
                T::GrantId(id) => (live!($now, "grant_id"), all!("grant_id"), Value::Text(id)),
                T::RunId(id) => (live!($now, "run_id"), all!("run_id"), Value::Text(id)),
                T::Subject(id) => (live!($now, "subject"), all!("subject"), Value::Text(id)),
            };
            let revoked: Vec<String> = value
                .bind(sqlx::query_scalar(revoke))
                .bind(reason.code())
                .bind(issued_by)
                .fetch_all(&mut *tx)
                .await?;
            let all: Vec<String> = value
                .bind(sqlx::query_scalar(targets))
                .bind(issued_by)
                .fetch_all(&mut *tx)
                .await?;
            let descendants = descendants(&mut tx, &all, reason, 0).await?;
            tx.commit().await?;
            Ok($crate::store::Revoked {
                count: (revoked.len() + descendants.len()) as u64,
                descendants,
            })
        }

        /// A revoke's target value: a token hash or an id.
        enum Value<'a> {
            Hash(&'a [u8]),
            Text(&'a str),
        }

        impl<'a> Value<'a> {
            fn bind<O>(
                &self,
                query: sqlx::query::QueryScalar<'a, $db, O, <$db as sqlx::Database>::Arguments>,
            ) -> sqlx::query::QueryScalar<'a, $db, O, <$db as sqlx::Database>::Arguments> {
                match *self {
                    Value::Hash(hash) => query.bind(hash),
                    Value::Text(text) => query.bind(text),
                }
            }
        }

        async fn descendants(
            tx: &mut sqlx::Transaction<'_, $db>,
            ids: &[String],
            reason: $crate::store::RevokeReason,
            after: $crate::store::Micros,
        ) -> std::result::Result<Vec<$crate::token::TokenHash>, sqlx::Error> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let hashes: Vec<Vec<u8>> =
                sqlx::query_scalar($crate::store::sql::revoke_descendants!($now, $ids))
                    .bind(($list)(ids))
                    .bind(reason.code())
                    .bind(after)
                    .fetch_all(&mut **tx)
                    .await?;
            Ok(hashes
                .iter()
                .filter_map(|hash| <[u8; 32]>::try_from(hash.as_slice()).ok())
                .map($crate::token::TokenHash)
                .collect())
        }

        pub(super) async fn rotate(
            pool: &sqlx::Pool<$db>,
            r: &$crate::store::Rotation,
        ) -> $crate::store::Result<Option<$crate::store::Rotated>> {
            let reason = $crate::store::RevokeReason::Rotated;
            let mut tx = pool.begin().await?;
            let out = sqlx::query($crate::store::sql::rotate_out!($now))
                .bind(&r.grant_id)
                .bind(&r.successor_id)
                .bind(r.overlap)
                .bind(reason.code())
                .bind(r.issued_by.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
            // Dropping the transaction rolls it back.
            let Some(out) = out else { return Ok(None) };
            let predecessor = $from_row(&out)?;
            let successor = sqlx::query($crate::store::sql::rotate_in!($now, $least))
                .bind(&r.successor_id)
                .bind(&r.token_hash.0[..])
                .bind(&r.token_hint)
                .bind(&r.sealed_payload)
                .bind(r.ttl)
                .bind(&r.grant_id)
                .fetch_one(&mut *tx)
                .await?;
            let successor = $from_row(&successor)?;
            let spent = sqlx::query($crate::store::sql::spend_rest!($now))
                .bind(&r.grant_id)
                .fetch_optional(&mut *tx)
                .await?;
            let predecessor = match spent {
                Some(row) => $from_row(&row)?,
                None => predecessor,
            };
            let ids = [r.grant_id.clone()];
            let descendants = descendants(&mut tx, &ids, reason, r.overlap).await?;
            tx.commit().await?;
            Ok(Some($crate::store::Rotated {
                successor,
                predecessor,
                descendants,
            }))
        }

        pub(super) async fn delegate(
            pool: &sqlx::Pool<$db>,
            d: &$crate::store::Delegation,
        ) -> $crate::store::Result<Option<$crate::store::Grant>> {
            let mut tx = pool.begin().await?;
            let parent: Option<String> = sqlx::query_scalar($crate::store::sql::escrow!($now))
                .bind(&d.parent_grant_id)
                .bind(i64::from(d.max_uses))
                .fetch_optional(&mut *tx)
                .await?;
            // Not live, or its uses were taken meanwhile; dropping the
            // transaction rolls it back.
            if parent.is_none() {
                return Ok(None);
            }
            let row = sqlx::query($crate::store::sql::delegate!($now, $least))
                .bind(&d.grant_id)
                .bind(&d.token_hash.0[..])
                .bind(&d.token_hint)
                .bind(($list)(&d.audience))
                .bind(($list)(&d.scopes))
                .bind(sqlx::types::Json(&d.labels))
                .bind(&d.sealed_payload)
                .bind(i64::from(d.max_uses))
                .bind(&d.issued_by)
                .bind(d.ttl)
                .bind(&d.parent_grant_id)
                .fetch_one(&mut *tx)
                .await?;
            let child = $from_row(&row)?;
            tx.commit().await?;
            Ok(Some(child))
        }

        pub(super) async fn payload(
            pool: &sqlx::Pool<$db>,
            grant_id: &str,
        ) -> $crate::store::Result<Option<Vec<u8>>> {
            Ok(sqlx::query_scalar($crate::store::sql::payload!())
                .bind(grant_id)
                .fetch_optional(pool)
                .await?)
        }
    };
}

pub(crate) use lineage;
