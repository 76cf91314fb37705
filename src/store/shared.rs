//! The grant operations both databases run with the same statements,
//! written once. Like [`super::lineage`], each store expands [`shared!`]
//! in its `dialect` module, with what differs between the databases as the
//! macro's arguments: its clock, how a list is bound, how a read is
//! retried, the rows `touch` reads its pairs from, and the lock a sweep
//! takes. A store's `impl Store` then only chooses which of these it runs
//! (and what it does first, such as PostgreSQL's batches).

/// Expands to `insert`, `find`, `find_keyed`, `touch`, `consume`,
/// `count_replay`, `get`, `list`, `sweep`, `count_live`, `ping`,
/// `pool_probe` and `close` functions over one database's pool.
macro_rules! shared {
    (
        db: $db:ty,
        now: $now:literal,
        list: $list:expr,
        read: $read:path,
        touched: $touched:literal,
        sweep_lock: $sweep_lock:literal,
        grant_from_row: $grant:path,
        lookup_from_row: $lookup:path,
        prior_from_row: $prior:path $(,)?
    ) => {
        /// One grant, alone (not batched).
        pub(super) async fn insert<'e>(
            db: impl sqlx::Executor<'e, Database = $db>,
            grant: &$crate::store::NewGrant,
        ) -> std::result::Result<$crate::store::Grant, sqlx::Error> {
            let row = sqlx::query($crate::store::sql::insert!($now))
                .bind(&grant.grant_id)
                .bind(&grant.token_hash.0[..])
                .bind(&grant.token_hint)
                .bind(&grant.subject)
                .bind(($list)(&grant.audience))
                .bind(&grant.run_id)
                .bind(($list)(&grant.scopes))
                .bind(sqlx::types::Json(&grant.labels))
                .bind(&grant.sealed_payload)
                .bind(i64::from(grant.max_uses))
                .bind(&grant.issued_by)
                .bind($crate::store::micros(grant.ttl))
                .bind(grant.revoke_run_on_replay)
                .bind(
                    grant
                        .payload_credential
                        .as_ref()
                        .map(|c| c.bearer_id.as_str()),
                )
                .bind(grant.payload_credential.as_ref().map(|c| c.name.as_str()))
                .fetch_one(db)
                .await?;
            $grant(&row)
        }

        /// One lookup, alone (not batched).
        pub(super) async fn find(
            pool: &sqlx::Pool<$db>,
            hash: &$crate::token::TokenHash,
        ) -> $crate::store::Result<Option<$crate::store::Lookup>> {
            let row = $read(|| {
                sqlx::query($crate::store::sql::find!($now))
                    .bind(&hash.0[..])
                    .fetch_optional(pool)
            })
            .await?;
            Ok(row.as_ref().map($lookup).transpose()?)
        }

        pub(super) async fn find_keyed(
            pool: &sqlx::Pool<$db>,
            hash: &$crate::token::TokenHash,
            client_id: &str,
            key_hash: &[u8; 32],
        ) -> $crate::store::Result<Option<($crate::store::Lookup, Option<$crate::store::Prior>)>> {
            let row = $read(|| {
                sqlx::query($crate::store::sql::find_keyed!($now))
                    .bind(&hash.0[..])
                    .bind(client_id)
                    .bind(&key_hash[..])
                    .fetch_optional(pool)
            })
            .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(($lookup(&row)?, $prior(&row)?)))
        }

        /// The ids and times are bound as two lists, read in step.
        pub(super) async fn touch(
            pool: &sqlx::Pool<$db>,
            touches: &[(String, $crate::store::Micros)],
        ) -> $crate::store::Result<()> {
            let (ids, ats): (Vec<&str>, Vec<$crate::store::Micros>) =
                touches.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
            sqlx::query($crate::store::sql::touch!($touched))
                .bind(($list)(&ids))
                .bind(($list)(&ats))
                .bind($crate::store::micros($crate::store::TOUCH_INTERVAL))
                .execute(pool)
                .await?;
            Ok(())
        }

        /// One use, alone (not batched). A write: never retried.
        pub(super) async fn consume(
            pool: &sqlx::Pool<$db>,
            grant_id: &str,
        ) -> $crate::store::Result<Option<($crate::store::Grant, Vec<u8>)>> {
            use sqlx::Row as _;
            let row = sqlx::query($crate::store::sql::consume!($now))
                .bind(grant_id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(($grant(&row)?, row.try_get("sealed_payload")?))),
                None => Ok(None),
            }
        }

        pub(super) async fn count_replay(
            pool: &sqlx::Pool<$db>,
            grant_id: &str,
        ) -> $crate::store::Result<Option<u64>> {
            let replays: Option<i64> = sqlx::query_scalar($crate::store::sql::count_replay!())
                .bind(grant_id)
                .fetch_optional(pool)
                .await?;
            Ok(replays.map(|n| u64::try_from(n).unwrap_or_default()))
        }

        pub(super) async fn get(
            pool: &sqlx::Pool<$db>,
            grant_id: &str,
            issued_by: Option<&str>,
        ) -> $crate::store::Result<Option<$crate::store::Grant>> {
            let row = sqlx::query($crate::store::sql::get!())
                .bind(grant_id)
                .bind(issued_by)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map($grant).transpose()?)
        }

        pub(super) async fn list(
            pool: &sqlx::Pool<$db>,
            query: &$crate::store::ListQuery,
        ) -> $crate::store::Result<$crate::store::ListPage> {
            use sqlx::Row as _;
            let (mut page, mut count) =
                $crate::store::sql::list_queries(query, $crate::store::sql::live!($now));
            let rows = page.build().fetch_all(pool).await?;
            let active: i64 = count.build().fetch_one(pool).await?.try_get(0)?;
            Ok($crate::store::ListPage {
                grants: rows
                    .iter()
                    .map($grant)
                    .collect::<std::result::Result<_, _>>()?,
                active_count: u64::try_from(active).unwrap_or_default(),
            })
        }

        pub(super) async fn sweep(
            pool: &sqlx::Pool<$db>,
            retention: std::time::Duration,
            batch: u32,
        ) -> $crate::store::Result<u64> {
            let done = sqlx::query($crate::store::sql::sweep!($now, $sweep_lock))
                .bind($crate::store::micros(retention))
                .bind(i64::from(batch))
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        }

        pub(super) async fn count_live(pool: &sqlx::Pool<$db>) -> $crate::store::Result<u64> {
            let count: i64 = sqlx::query_scalar($crate::store::sql::count_live!($now))
                .fetch_one(pool)
                .await?;
            Ok(u64::try_from(count).unwrap_or(0))
        }

        /// On the store's readiness pool, not the one serving calls.
        pub(super) async fn ping(health: &sqlx::Pool<$db>) -> $crate::store::Result<()> {
            sqlx::query("SELECT 1").execute(health).await?;
            Ok(())
        }

        pub(super) fn pool_probe(pool: &sqlx::Pool<$db>) -> $crate::metrics::PoolProbe {
            let pool = pool.clone();
            Box::new(move || $crate::metrics::PoolState {
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            })
        }

        pub(super) async fn close(pool: &sqlx::Pool<$db>, health: &sqlx::Pool<$db>) {
            health.close().await;
            pool.close().await;
        }
    };
}

pub(crate) use shared;
