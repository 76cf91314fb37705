-- Retry-safe claims: the idempotency key a client sent with a claim,
-- recorded in the same transaction as the use it made, and deleted with its
-- grant. Only the key's SHA-256 is kept: a client may put anything in it.

CREATE TABLE claim_keys (
    grant_id   text   NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id  text   NOT NULL,
    key_hash   bytea  NOT NULL,
    -- The use this claim took (use_count after it), and when.
    use_number bigint NOT NULL,
    claimed_at bigint NOT NULL,
    PRIMARY KEY (grant_id, client_id, key_hash)
);
