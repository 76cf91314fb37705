-- Credentials; see migrations/postgres/0006_credentials.sql.

CREATE TABLE credentials (
    client_id        TEXT    NOT NULL,
    bearer_id        TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    sealed           BLOB    NOT NULL,
    key_id           TEXT    NOT NULL,
    expires_at       INTEGER,
    updated_at       INTEGER NOT NULL,
    lease_id         TEXT    UNIQUE,
    lease_expires_at INTEGER,
    lease_fence      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, bearer_id, name)
);
