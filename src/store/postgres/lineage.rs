//! Revoke, rotate and delegate (see [`crate::store::lineage`]) in
//! PostgreSQL's dialect: ids as a `text[]`, and a delegation share-locks its
//! parent's row.

use super::grant_from_row;

crate::store::lineage::lineage!(
    db: sqlx::Postgres,
    now: "tessera_now_us()",
    ids: "SELECT unnest($1::text[])",
    lock: " FOR SHARE",
    list: |ids: &[String]| ids.to_vec(),
    grant_from_row: grant_from_row,
);
