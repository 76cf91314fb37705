//! The statements of claims made with a `claim_key`: the lookup that also
//! finds this client's earlier claim with the key, the key's reservation
//! and record, and the claim that takes its use and records its key in one
//! statement, alone or for a batch.

/// [`find!`], plus the claim client `$2` made on the grant with the key
/// whose hash is `$3`, if any (`prior_use`, `prior_at`), and the sealed
/// payload: a keyed claim learns whether it is a retry in the same single
/// statement that every other claim runs.
macro_rules! find_keyed {
    ($now:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::grant_columns!(),
            ", ",
            $now,
            " AS now, sealed_payload, \
             (SELECT use_number FROM claim_keys k WHERE k.grant_id = grants.grant_id \
              AND k.client_id = $2 AND k.key_hash = $3) AS prior_use, \
             (SELECT claimed_at FROM claim_keys k WHERE k.grant_id = grants.grant_id \
              AND k.client_id = $2 AND k.key_hash = $3) AS prior_at \
             FROM grants WHERE token_hash = $1"
        )
    };
}

/// Claims a key for a use: `$1` grant, `$2` client, `$3` key hash. Inserts
/// nothing if the key is already recorded; waits for a racing insert of the
/// same key to commit or roll back first.
macro_rules! reserve_key {
    () => {
        "INSERT INTO claim_keys (grant_id, client_id, key_hash, use_number, claimed_at) \
         VALUES ($1, $2, $3, 0, 0) ON CONFLICT DO NOTHING"
    };
}

/// Records the use a reserved key took: `$4` use number, `$5` time.
macro_rules! record_key {
    () => {
        "UPDATE claim_keys SET use_number = $4, claimed_at = $5 \
         WHERE grant_id = $1 AND client_id = $2 AND key_hash = $3"
    };
}

/// The claim a recorded key made, with the grant as it is now.
macro_rules! prior_claim {
    () => {
        concat!(
            "SELECT ",
            $crate::store::sql::grant_columns!(),
            ", sealed_payload, k.use_number, k.claimed_at FROM grants, \
             (SELECT use_number, claimed_at FROM claim_keys \
              WHERE grant_id = $1 AND client_id = $2 AND key_hash = $3) k \
             WHERE grants.grant_id = $1"
        )
    };
}

/// A keyed claim in one statement (PostgreSQL): takes a use unless this
/// client already claimed the grant with this key (`$1` grant, `$2`
/// client, `$3` key hash), and records the key with the use it took. Two
/// racing claims with one key both see no key; the second's insert of the
/// key then fails on the primary key once the first commits, which undoes
/// its whole statement, use included: exactly one use per key.
macro_rules! consume_keyed {
    ($now:literal) => {
        concat!(
            "WITH used AS (UPDATE grants SET use_count = use_count + 1, last_used_at = ",
            $now,
            ", used_up_at = CASE WHEN max_uses > 0 AND use_count + 1 >= max_uses THEN ",
            $now,
            " END WHERE grant_id = $1 AND ",
            $crate::store::sql::live!($now),
            " AND NOT EXISTS (SELECT 1 FROM claim_keys k WHERE k.grant_id = $1 \
             AND k.client_id = $2 AND k.key_hash = $3) RETURNING ",
            $crate::store::sql::grant_columns!(),
            ", sealed_payload), recorded AS (INSERT INTO claim_keys \
             (grant_id, client_id, key_hash, use_number, claimed_at) \
             SELECT grant_id, $2, $3, use_count, last_used_at FROM used) \
             SELECT * FROM used"
        )
    };
}

/// [`consume_keyed!`] for many keyed claims at once: `$1` grant ids (each
/// at most once), `$2` their clients, `$3` their key hashes. Rows are locked
/// as in [`consume_many!`] (grant id order; rows another transaction holds
/// skipped, never waited for); each claim whose key is not recorded yet
/// takes one use and records its key with it. Each row names its claim
/// (`wanted_client`, `wanted_key`). A key a racing claim recorded after
/// this statement began fails on the primary key and undoes the whole
/// statement, every use of it included.
macro_rules! consume_keyed_many {
    ($now:literal) => {
        concat!(
            "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
             AS w(wanted_id, wanted_client, wanted_key)), \
             locked AS (SELECT g.grant_id AS locked_id FROM grants g \
             JOIN wanted ON g.grant_id = wanted.wanted_id \
             ORDER BY g.grant_id FOR UPDATE OF g SKIP LOCKED), \
             used AS (UPDATE grants SET use_count = use_count + 1, last_used_at = ",
            $now,
            ", used_up_at = CASE WHEN max_uses > 0 AND use_count + 1 >= max_uses THEN ",
            $now,
            " END FROM locked JOIN wanted ON wanted.wanted_id = locked.locked_id \
             WHERE grants.grant_id = locked.locked_id AND ",
            $crate::store::sql::live!($now),
            " AND NOT EXISTS (SELECT 1 FROM claim_keys k WHERE k.grant_id = wanted.wanted_id \
             AND k.client_id = wanted.wanted_client AND k.key_hash = wanted.wanted_key) \
             RETURNING ",
            $crate::store::sql::grant_columns!(),
            ", sealed_payload, wanted_client, wanted_key), \
             recorded AS (INSERT INTO claim_keys \
             (grant_id, client_id, key_hash, use_number, claimed_at) \
             SELECT grant_id, wanted_client, wanted_key, use_count, last_used_at FROM used) \
             SELECT * FROM used"
        )
    };
}

pub(crate) use {
    consume_keyed, consume_keyed_many, find_keyed, prior_claim, record_key, reserve_key,
};
