//! The statements, shared by both dialects so both stores run the same SQL.
//!
//! Each macro takes the dialect's clock expression (`$now`, unix
//! microseconds) and expands to a `&'static str`. Parameters are `$1..$n`,
//! which PostgreSQL and sqlx's SQLite driver both read.

/// Column list of every statement that returns a grant.
macro_rules! grant_columns {
    () => {
        "grant_id, token_hint, subject, audience, run_id, scopes, labels, max_uses, use_count, \
         issued_by, issued_at, expires_at, revoked_at, revoke_reason, last_used_at, \
         revoke_run_on_replay, parent_grant_id, depth, rotated_from, rotated_to, \
         credential_bearer_id, credential_name"
    };
}

/// Usable now: not revoked (a rotated grant's revocation may lie ahead, at
/// the end of its overlap), not expired, a use left. The one definition of
/// "live", for Claim, Revoke, ListGrants and the live count.
macro_rules! live {
    ($now:literal) => {
        concat!(
            "(revoked_at IS NULL OR revoked_at > ",
            $now,
            ") AND expires_at > ",
            $now,
            " AND (max_uses = 0 OR use_count < max_uses)"
        )
    };
}

macro_rules! insert {
    ($now:literal) => {
        concat!(
            "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
             scopes, labels, sealed_payload, max_uses, issued_by, revoke_run_on_replay, \
             credential_bearer_id, credential_name, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, ",
            $now,
            ", ",
            $now,
            " + $12) RETURNING ",
            $crate::store::sql::grant_columns!()
        )
    };
}

/// [`insert!`] for many grants in one statement: `$1` is a JSON array of
/// records (hashes and payloads in hex, lists as JSON arrays, `ttl` in
/// microseconds).
macro_rules! insert_many {
    ($now:literal) => {
        concat!(
            "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
             scopes, labels, sealed_payload, max_uses, issued_by, revoke_run_on_replay, \
             credential_bearer_id, credential_name, issued_at, expires_at) \
             SELECT r.grant_id, decode(r.token_hash, 'hex'), r.token_hint, r.subject, \
             ARRAY(SELECT jsonb_array_elements_text(r.audience)), r.run_id, \
             ARRAY(SELECT jsonb_array_elements_text(r.scopes)), r.labels, \
             decode(r.sealed_payload, 'hex'), r.max_uses, r.issued_by, r.revoke_run_on_replay, \
             r.credential_bearer_id, r.credential_name, ",
            $now,
            ", ",
            $now,
            " + r.ttl FROM jsonb_to_recordset($1) AS r(grant_id text, token_hash text, \
             token_hint text, subject text, audience jsonb, run_id text, scopes jsonb, \
             labels jsonb, sealed_payload text, max_uses bigint, issued_by text, \
             revoke_run_on_replay boolean, credential_bearer_id text, credential_name text, \
             ttl bigint) RETURNING ",
            $crate::store::sql::grant_columns!()
        )
    };
}

macro_rules! find {
    ($now:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::grant_columns!(),
            ", ",
            $now,
            " AS now FROM grants WHERE token_hash = $1"
        )
    };
}

/// [`find!`] for many token hashes at once (`$1` an array), each row naming
/// its hash. A join with the unnested array, not `= ANY($1)`: its generic
/// plan is one unique-index probe per hash, where `ANY`'s is a bitmap scan
/// (and a custom plan per execution would cost more to plan than to run).
macro_rules! find_many {
    ($now:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::grant_columns!(),
            ", token_hash, ",
            $now,
            " AS now FROM unnest($1::bytea[]) AS wanted(hash) \
             JOIN grants ON grants.token_hash = wanted.hash"
        )
    };
}

/// Writes `lookup_from_row` and `prior_from_row` for one store's row type,
/// over the store module's `grant_from_row`.
macro_rules! row_readers {
    ($row:ty) => {
        /// A row of [`sql::find!`] or [`sql::find_keyed!`].
        pub(super) fn lookup_from_row(row: &$row) -> std::result::Result<Lookup, sqlx::Error> {
            let grant = grant_from_row(row)?;
            let now: i64 = row.try_get("now")?;
            Ok(Lookup {
                expired: grant.expires_at <= now,
                grant,
                now,
            })
        }

        /// A row of [`sql::prior_claim!`]: the grant as that claim left it.
        fn replayed_from_row(row: &$row) -> std::result::Result<Keyed, sqlx::Error> {
            let mut grant = grant_from_row(row)?;
            grant.use_count = to_u32(row.try_get("use_number")?);
            grant.last_used_at = Some(row.try_get("claimed_at")?);
            Ok(Keyed::Replayed(grant, row.try_get("sealed_payload")?))
        }

        /// The prior claim in a row of [`sql::find_keyed!`], if there is one.
        fn prior_from_row(row: &$row) -> std::result::Result<Option<Prior>, sqlx::Error> {
            let Some(use_number) = row.try_get::<Option<i64>, _>("prior_use")? else {
                return Ok(None);
            };
            Ok(Some(Prior {
                use_count: to_u32(use_number),
                claimed_at: row.try_get("prior_at")?,
                sealed_payload: row.try_get("sealed_payload")?,
            }))
        }
    };
}

/// Records Validate's uses in bulk: `$touched` yields rows `(id, at)` of
/// grant ids and times of use, `$3` is the coalescing interval, so racing
/// replicas write a grant at most once per interval.
macro_rules! touch {
    ($touched:literal) => {
        concat!(
            "UPDATE grants SET last_used_at = t.at FROM ",
            $touched,
            " WHERE grants.grant_id = t.id \
             AND (grants.last_used_at IS NULL OR grants.last_used_at < t.at - $3)"
        )
    };
}

/// The compare-and-set of a claim. A racing UPDATE waits for the row lock
/// and re-checks the WHERE clause on the row as the winner left it (SQLite
/// has one writer at a time), so only callers that still see a use left get
/// one.
macro_rules! consume {
    ($now:literal) => {
        concat!(
            "UPDATE grants SET use_count = use_count + 1, last_used_at = ",
            $now,
            ", used_up_at = CASE WHEN max_uses > 0 AND use_count + 1 >= max_uses THEN ",
            $now,
            " END WHERE grant_id = $1 AND ",
            $crate::store::sql::live!($now),
            " RETURNING ",
            $crate::store::sql::grant_columns!(),
            ", sealed_payload"
        )
    };
}

/// [`consume!`] for many grants at once (`$1` an array of distinct grant
/// ids): each row is re-checked and takes one use, exactly as alone. Rows
/// another transaction holds are skipped, not waited for, so that one
/// locked row never holds up a batch (its claim then runs alone, and waits
/// alone); the others are locked in grant id order, so batches never
/// deadlock.
macro_rules! consume_many {
    ($now:literal) => {
        concat!(
            "WITH locked AS (SELECT g.grant_id AS locked_id FROM grants g \
             JOIN unnest($1::text[]) AS wanted(id) ON g.grant_id = wanted.id \
             ORDER BY g.grant_id FOR UPDATE OF g SKIP LOCKED) \
             UPDATE grants SET use_count = use_count + 1, last_used_at = ",
            $now,
            ", used_up_at = CASE WHEN max_uses > 0 AND use_count + 1 >= max_uses THEN ",
            $now,
            " END FROM locked WHERE grants.grant_id = locked.locked_id AND ",
            $crate::store::sql::live!($now),
            " RETURNING ",
            $crate::store::sql::grant_columns!(),
            ", sealed_payload"
        )
    };
}

macro_rules! payload {
    () => {
        "SELECT sealed_payload FROM grants WHERE grant_id = $1"
    };
}

macro_rules! get {
    () => {
        concat!(
            "SELECT ",
            $crate::store::sql::grant_columns!(),
            " FROM grants WHERE grant_id = $1 AND ($2 IS NULL OR issued_by = $2)"
        )
    };
}

/// Counts one more replay of grant `$1`, returning the count.
macro_rules! count_replay {
    () => {
        "UPDATE grants SET replays = replays + 1 WHERE grant_id = $1 RETURNING replays"
    };
}

/// `$1` retention, `$2` batch size; `$lock` is PostgreSQL's `FOR UPDATE SKIP
/// LOCKED` (replicas sweeping at once take disjoint rows) or nothing.
/// The live-grants gauge: an index range on `expires_at`, every 30 s.
macro_rules! count_live {
    ($now:literal) => {
        concat!(
            "SELECT count(*) FROM grants WHERE ",
            $crate::store::sql::live!($now)
        )
    };
}

macro_rules! sweep {
    ($now:literal, $lock:literal) => {
        concat!(
            "DELETE FROM grants WHERE grant_id IN (SELECT grant_id FROM grants WHERE expires_at < ",
            $now,
            " - $1 OR revoked_at < ",
            $now,
            " - $1 OR (used_up_at < ",
            $now,
            " - $1 AND NOT EXISTS (SELECT 1 FROM grants c \
             WHERE c.parent_grant_id = grants.grant_id)) LIMIT $2",
            $lock,
            ")"
        )
    };
}

mod keyed;
mod lineage;

pub(crate) use keyed::{
    consume_keyed, consume_keyed_many, find_keyed, prior_claim, record_key, reserve_key,
};
pub(crate) use lineage::{
    capped, delegate, escrow, revoke, revoke_descendants, rotate_in, rotate_out, spend_rest,
    targets,
};
pub(crate) use {
    consume, consume_many, count_live, count_replay, find, find_many, get, grant_columns, insert,
    insert_many, live, payload, row_readers, sweep, touch,
};

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::ListQuery;

/// Builds a ListGrants page query and its live-count query. `live` is the
/// dialect's [`live!`] clause.
pub(crate) fn list_queries<DB>(
    query: &ListQuery,
    live: &'static str,
) -> (QueryBuilder<DB>, QueryBuilder<DB>)
where
    DB: Database,
    DB::Arguments: Default,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let filtered = |select: &'static str, only_live: bool| {
        let mut qb = QueryBuilder::new(select);
        qb.push(" WHERE ")
            .push(if only_live { live } else { "TRUE" });
        for (column, value) in [
            (" AND subject = ", &query.subject),
            (" AND run_id = ", &query.run_id),
            (" AND issued_by = ", &query.issued_by),
        ] {
            if let Some(value) = value {
                qb.push(column).push_bind(value.clone());
            }
        }
        qb
    };
    let mut page = filtered(
        concat!("SELECT ", grant_columns!(), " FROM grants"),
        !query.include_inactive,
    );
    if let Some(after) = &query.after {
        page.push(" AND grant_id > ").push_bind(after.clone());
    }
    page.push(" ORDER BY grant_id LIMIT ")
        .push_bind(i64::from(query.limit));
    (page, filtered("SELECT count(*) FROM grants", true))
}
