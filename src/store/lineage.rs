//! The operations that follow a grant's lineage — revoke (with its
//! descendants), rotate, delegate — written once for both databases. Each
//! store expands [`lineage!`] in its `dialect` module: its clock, how a list of
//! ids becomes rows, how a list is bound, and the lock a delegation takes
//! on its parent.

/// Expands to `revoke`, `rotate`, `delegate` and `payload` functions over
/// one database's pool.
macro_rules! lineage {
    (
        db: $db:ty,
        now: $now:literal,
        ids: $ids:literal,
        lock: $lock:literal,
        list: $list:expr,
        grant_from_row: $from_row:path $(,)?
    ) => {
        /// The targets, then their descendants, in one transaction: a
        /// delegation racing the revoke either commits first (and its child
        /// is found by the second statement, which sees it) or waits on
        /// the parent's row lock and then finds the parent revoked.
        pub(super) async fn revoke(
            pool: &sqlx::Pool<$db>,
            target: &$crate::store::RevokeTarget,
            issued_by: Option<&str>,
            reason: $crate::store::RevokeReason,
        ) -> $crate::store::Result<$crate::store::Revoked> {
            use $crate::store::RevokeTarget as T;
            let mut tx = pool.begin().await?;
            let query = match target {
                T::Token(hash) => {
                    sqlx::query_scalar($crate::store::sql::revoke!($now, "token_hash"))
                        .bind(&hash.0[..])
                }
                T::GrantId(id) => sqlx::query_scalar($crate::store::sql::revoke!($now, "grant_id"))
                    .bind(id.as_str()),
                T::RunId(id) => sqlx::query_scalar($crate::store::sql::revoke!($now, "run_id"))
                    .bind(id.as_str()),
                T::Subject(id) => sqlx::query_scalar($crate::store::sql::revoke!($now, "subject"))
                    .bind(id.as_str()),
            };
            let revoked: Vec<String> = query
                .bind(reason.code())
                .bind(issued_by)
                .fetch_all(&mut *tx)
                .await?;
            let descendants = descendants(&mut tx, &revoked, reason, 0).await?;
            tx.commit().await?;
            Ok($crate::store::Revoked {
                count: (revoked.len() + descendants.len()) as u64,
                descendants,
            })
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
            let successor = sqlx::query($crate::store::sql::rotate_in!($now))
                .bind(&r.successor_id)
                .bind(&r.token_hash.0[..])
                .bind(&r.token_hint)
                .bind(&r.sealed_payload)
                .bind(r.ttl)
                .bind(&r.grant_id)
                .fetch_one(&mut *tx)
                .await?;
            let successor = $from_row(&successor)?;
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
            let row = sqlx::query($crate::store::sql::delegate!($now, $lock))
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
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map($from_row).transpose()?)
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
