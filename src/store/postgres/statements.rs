//! The statements only PostgreSQL runs: a batch of calls in one statement
//! ([`super::batched`], [`super::keyed`]), and a keyed claim in one
//! statement (SQLite, which has no writes inside `WITH`, runs three).
//! Built once, in the words of the statements both databases share.

use std::sync::LazyLock;

use sqlx::Postgres;

use crate::store::{
    Dialect,
    statements::{GRANT_COLUMNS, INSERT_INTO, leak, live, take_use},
};

pub struct BatchStatements {
    /// Many grants in one statement: `$1` is a JSON array of records
    /// (hashes and payloads in hex, lists as JSON arrays, `ttl` in
    /// microseconds).
    pub insert_many: &'static str,
    /// A lookup of many token hashes at once (`$1` an array), each row
    /// naming its hash. A join with the unnested array, not `= ANY($1)`:
    /// its generic plan is one unique-index probe per hash, where `ANY`'s
    /// is a bitmap scan (and a custom plan per execution would cost more to
    /// plan than to run).
    pub find_many: &'static str,
    /// A claim of many grants at once (`$1` an array of distinct grant
    /// ids): each row is re-checked and takes one use, exactly as alone.
    /// Rows another transaction holds are skipped, not waited for, so that
    /// one locked row never holds up a batch (its claim then runs alone,
    /// and waits alone); the others are locked in grant id order, so
    /// batches never deadlock.
    pub consume_many: &'static str,
    /// A keyed claim in one statement: takes a use unless this client
    /// already claimed the grant with this key (`$1` grant, `$2` client,
    /// `$3` key hash), and records the key with the use it took. Two racing
    /// claims with one key both see no key; the second's insert of the key
    /// then fails on the primary key once the first commits, which undoes
    /// its whole statement, use included: exactly one use per key.
    pub consume_keyed: &'static str,
    /// [`Self::consume_keyed`] for many keyed claims at once: `$1` grant
    /// ids (each at most once), `$2` their clients, `$3` their key hashes.
    /// Rows are locked as in [`Self::consume_many`]; each claim whose key
    /// is not recorded yet takes one use and records its key with it. Each
    /// row names its claim (`wanted_client`, `wanted_key`). A key a racing
    /// claim recorded after this statement began fails on the primary key
    /// and undoes the whole statement, every use of it included.
    pub consume_keyed_many: &'static str,
}

pub fn batch_statements() -> &'static BatchStatements {
    static STATEMENTS: LazyLock<BatchStatements> = LazyLock::new(|| {
        let now = Postgres::SYNTAX.now;
        let (live, take_use, c) = (live(now), take_use(now), GRANT_COLUMNS);
        BatchStatements {
            insert_many: leak(format!(
                "{INSERT_INTO} SELECT r.grant_id, decode(r.token_hash, 'hex'), r.token_hint, \
                 r.subject, ARRAY(SELECT jsonb_array_elements_text(r.audience)), r.run_id, \
                 ARRAY(SELECT jsonb_array_elements_text(r.scopes)), r.labels, \
                 decode(r.sealed_payload, 'hex'), r.max_uses, r.issued_by, \
                 r.revoke_run_on_replay, r.credential_bearer_id, r.credential_name, \
                 {now}, {now} + r.ttl FROM jsonb_to_recordset($1) AS r(grant_id text, \
                 token_hash text, token_hint text, subject text, audience jsonb, run_id text, \
                 scopes jsonb, labels jsonb, sealed_payload text, max_uses bigint, \
                 issued_by text, revoke_run_on_replay boolean, credential_bearer_id text, \
                 credential_name text, ttl bigint) RETURNING {c}"
            )),
            find_many: leak(format!(
                "SELECT {c}, token_hash, {now} AS now FROM unnest($1::bytea[]) AS wanted(hash) \
                 JOIN grants ON grants.token_hash = wanted.hash"
            )),
            consume_many: leak(format!(
                "WITH locked AS (SELECT g.grant_id AS locked_id FROM grants g \
                 JOIN unnest($1::text[]) AS wanted(id) ON g.grant_id = wanted.id \
                 ORDER BY g.grant_id FOR UPDATE OF g SKIP LOCKED) \
                 UPDATE grants SET {take_use} FROM locked \
                 WHERE grants.grant_id = locked.locked_id AND {live} \
                 RETURNING {c}, sealed_payload"
            )),
            consume_keyed: leak(format!(
                "WITH used AS (UPDATE grants SET {take_use} WHERE grant_id = $1 AND {live} \
                 AND NOT EXISTS (SELECT 1 FROM claim_keys k WHERE k.grant_id = $1 \
                 AND k.client_id = $2 AND k.key_hash = $3) RETURNING {c}, sealed_payload), \
                 recorded AS (INSERT INTO claim_keys \
                 (grant_id, client_id, key_hash, use_number, claimed_at) \
                 SELECT grant_id, $2, $3, use_count, last_used_at FROM used) \
                 SELECT * FROM used"
            )),
            consume_keyed_many: leak(format!(
                "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
                 AS w(wanted_id, wanted_client, wanted_key)), \
                 locked AS (SELECT g.grant_id AS locked_id FROM grants g \
                 JOIN wanted ON g.grant_id = wanted.wanted_id \
                 ORDER BY g.grant_id FOR UPDATE OF g SKIP LOCKED), \
                 used AS (UPDATE grants SET {take_use} \
                 FROM locked JOIN wanted ON wanted.wanted_id = locked.locked_id \
                 WHERE grants.grant_id = locked.locked_id AND {live} \
                 AND NOT EXISTS (SELECT 1 FROM claim_keys k WHERE k.grant_id = wanted.wanted_id \
                 AND k.client_id = wanted.wanted_client AND k.key_hash = wanted.wanted_key) \
                 RETURNING {c}, sealed_payload, wanted_client, wanted_key), \
                 recorded AS (INSERT INTO claim_keys \
                 (grant_id, client_id, key_hash, use_number, claimed_at) \
                 SELECT grant_id, wanted_client, wanted_key, use_count, last_used_at FROM used) \
                 SELECT * FROM used"
            )),
        }
    });
    &STATEMENTS
}
