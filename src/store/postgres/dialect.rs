//! PostgreSQL's dialect of the statements both stores share (see
//! [`crate::store::lineage`] and [`crate::store::shared`]): its clock
//! function, lists as arrays, reads retried on another connection when a
//! pooled one turns out dead, a delegation share-locks its parent's row,
//! and replicas sweeping at once skip each other's rows.

use super::{grant_from_row, lookup_from_row, prior_from_row, retry::read};

/// A list is bound as an array (`text[]`, `bigint[]`).
fn as_list<T>(items: &[T]) -> &[T] {
    items
}

crate::store::lineage::lineage!(
    db: sqlx::Postgres,
    now: "tessera_now_us()",
    ids: "SELECT unnest($1::text[])",
    least: "LEAST",
    list: as_list,
    grant_from_row: grant_from_row,
);

crate::store::shared::shared!(
    db: sqlx::Postgres,
    now: "tessera_now_us()",
    list: as_list,
    read: read,
    touched: "unnest($1::text[], $2::bigint[]) AS t(id, at)",
    sweep_lock: " FOR UPDATE SKIP LOCKED",
    grant_from_row: grant_from_row,
    lookup_from_row: lookup_from_row,
    prior_from_row: prior_from_row,
);
