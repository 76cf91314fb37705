-- Grants: one row per minted token; see migrations/postgres for the why of
-- each column. Lists and maps are JSON text; times are unix microseconds.

CREATE TABLE grants (
    grant_id       TEXT    PRIMARY KEY NOT NULL,
    token_hash     BLOB    NOT NULL UNIQUE,
    token_hint     TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    audience       TEXT    NOT NULL,
    run_id         TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    labels         TEXT    NOT NULL,
    sealed_payload BLOB    NOT NULL,
    max_uses       INTEGER NOT NULL,
    use_count      INTEGER NOT NULL DEFAULT 0,
    issued_by      TEXT    NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoke_reason  INTEGER NOT NULL DEFAULT 0,
    last_used_at   INTEGER,
    used_up_at     INTEGER
);

CREATE INDEX grants_run ON grants (run_id, grant_id);
CREATE INDEX grants_subject ON grants (subject, grant_id);
CREATE INDEX grants_issuer ON grants (issued_by, grant_id);
CREATE INDEX grants_expires ON grants (expires_at);
CREATE INDEX grants_revoked ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX grants_used_up ON grants (used_up_at) WHERE used_up_at IS NOT NULL;
