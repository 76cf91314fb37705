//! Revoke, rotate and delegate (see [`crate::store::lineage`]) in SQLite's
//! dialect: lists as JSON text; one writer at a time needs no row lock.

use super::grant_from_row;

crate::store::lineage::lineage!(
    db: sqlx::Sqlite,
    now: "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
    ids: "SELECT value FROM json_each($1)",
    lock: "",
    list: |ids: &[String]| sqlx::types::Json(ids.to_vec()),
    grant_from_row: grant_from_row,
);
