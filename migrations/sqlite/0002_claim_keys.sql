-- Retry-safe claims; see migrations/postgres/0003_claim_keys.sql.

CREATE TABLE claim_keys (
    grant_id   TEXT    NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL,
    key_hash   BLOB    NOT NULL,
    use_number INTEGER NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (grant_id, client_id, key_hash)
);
