-- Grants: one row per minted token. The token itself is never stored, only
-- its SHA-256; the payload only as ciphertext under a key derived from the
-- token. Times are unix microseconds from the database's clock, so replicas
-- with skewed clocks agree on expiry.

CREATE FUNCTION tessera_now_us() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (extract(epoch FROM now()) * 1000000)::bigint $$;

CREATE TABLE grants (
    grant_id       text     PRIMARY KEY,
    token_hash     bytea    NOT NULL UNIQUE,
    token_hint     text     NOT NULL,
    subject        text     NOT NULL,
    audience       text[]   NOT NULL,
    run_id         text     NOT NULL,
    scopes         text[]   NOT NULL,
    labels         jsonb    NOT NULL,
    sealed_payload bytea    NOT NULL,
    max_uses       bigint   NOT NULL,
    use_count      bigint   NOT NULL DEFAULT 0,
    issued_by      text     NOT NULL,
    issued_at      bigint   NOT NULL,
    expires_at     bigint   NOT NULL,
    revoked_at     bigint,
    revoke_reason  smallint NOT NULL DEFAULT 0,
    last_used_at   bigint,
    -- Set by the claim that takes the last use. Kept apart from use_count so
    -- the sweeper has an index to follow while ordinary claims, which change
    -- only unindexed columns, stay HOT updates (hence the fillfactor).
    used_up_at     bigint
) WITH (fillfactor = 80);

CREATE INDEX grants_run ON grants (run_id, grant_id);
CREATE INDEX grants_subject ON grants (subject, grant_id);
CREATE INDEX grants_issuer ON grants (issued_by, grant_id);
CREATE INDEX grants_expires ON grants (expires_at);
CREATE INDEX grants_revoked ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX grants_used_up ON grants (used_up_at) WHERE used_up_at IS NOT NULL;
