//! The credentials and seal key check tables on SQLite (statements in
//! `store::credentials`).

crate::store::credentials::implement!(
    super::SqliteStore,
    sqlx::sqlite::SqliteRow,
    "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
);
crate::store::credentials::implement_checks!(
    super::SqliteStore,
    sqlx::sqlite::SqliteRow,
    "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
);
