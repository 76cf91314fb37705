//! What differs between the two databases, as a small trait: the words of
//! their SQL ([`Syntax`]: the clock, how a list becomes rows, the
//! smallest-of function, a sweep's lock), how a list is bound, and how a
//! list column reads back. Everything else the stores run is written once,
//! generic over it, as the methods of [`Sql`](super::Sql) (the grant
//! statements in [`super::grants`] and [`super::lineage`], the credential
//! ones in [`super::credentials`]).
//!
//! Generic code over a [`Dialect`] also needs the database to encode and
//! decode the few types the statements use; Rust does not carry a trait's
//! `where` clauses to its users, so each generic block states them again
//! (they are the same list each time, and concrete types meet them).

use sqlx::{Encode, Type};

use super::statements::{Statements, Syntax};

pub trait Dialect: sqlx::Database {
    /// Its words.
    const SYNTAX: Syntax;

    /// The migrations of its schema (`migrations/<database>/`).
    fn migrator() -> &'static sqlx::migrate::Migrator;

    /// Its statements, built from [`Self::SYNTAX`] on first use.
    fn statements() -> &'static Statements;

    /// A list of texts (audiences, scopes, grant ids), as bound: an array
    /// on PostgreSQL, JSON text that `json_each` reads on SQLite.
    type Texts<'q>: Encode<'q, Self> + Type<Self> + Send + 'q;

    /// A list of times, bound as [`Self::Texts`] are.
    type Times<'q>: Encode<'q, Self> + Type<Self> + Send + 'q;

    fn texts(items: &[String]) -> Self::Texts<'_>;

    fn times(items: &[i64]) -> Self::Times<'_>;

    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// A list column (`audience`, `scopes`) of a grant row.
    fn read_texts(row: &Self::Row, column: &str) -> Result<Vec<String>, sqlx::Error>;
}
