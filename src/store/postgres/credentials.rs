//! The credentials table on PostgreSQL (statements in `store::credentials`).

crate::store::credentials::implement!(super::PgStore, sqlx::postgres::PgRow, "tessera_now_us()");
