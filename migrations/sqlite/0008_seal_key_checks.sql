-- Seal key checks; see migrations/postgres/0009_seal_key_checks.sql.

CREATE TABLE seal_key_checks (
    key_id     TEXT    PRIMARY KEY,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
