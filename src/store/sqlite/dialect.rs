//! SQLite's dialect of the statements both stores share (see
//! [`crate::store::lineage`] and [`crate::store::shared`]): its clock
//! expression, lists as JSON text, reads run once (a local file does not
//! drop connections), and no row locks (one writer at a time needs none).

use std::future::Future;

use super::{grant_from_row, lookup_from_row, prior_from_row};

/// A list is bound as a JSON array, which `json_each` reads back.
fn as_list<T>(items: &[T]) -> sqlx::types::Json<&[T]> {
    sqlx::types::Json(items)
}

/// Runs a read once: unlike PostgreSQL's pooled connections (see
/// `PgStore`'s retry), a connection to a local file does not die idle.
fn once<T, F>(query: impl Fn() -> F) -> F
where
    F: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    query()
}

crate::store::lineage::lineage!(
    db: sqlx::Sqlite,
    now: "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
    ids: "SELECT value FROM json_each($1)",
    least: "MIN",
    list: as_list,
    grant_from_row: grant_from_row,
);

crate::store::shared::shared!(
    db: sqlx::Sqlite,
    now: "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
    list: as_list,
    read: once,
    touched: "(SELECT i.value AS id, a.value AS at FROM json_each($1) i \
              JOIN json_each($2) a ON a.key = i.key) AS t",
    sweep_lock: "",
    grant_from_row: grant_from_row,
    lookup_from_row: lookup_from_row,
    prior_from_row: prior_from_row,
);
