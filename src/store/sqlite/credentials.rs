//! The credentials table on SQLite (statements in `store::credentials`).

crate::store::credentials::implement!(
    super::SqliteStore,
    sqlx::sqlite::SqliteRow,
    "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
);
