//! The credentials and seal key check tables on PostgreSQL (statements in
//! `store::credentials`).

crate::store::credentials::implement!(super::PgStore, sqlx::postgres::PgRow, "tessera_now_us()");
crate::store::credentials::implement_checks!(
    super::PgStore,
    sqlx::postgres::PgRow,
    "tessera_now_us()"
);
