-- Seal key checks: one row per --seal-key key id, holding a fixed text
-- sealed under the first key that used that id. Every server opens the
-- rows of its key ids at start and refuses to start if one does not open:
-- a replica given another key under an id in use would otherwise seal
-- credentials that no other server can open. The primary key makes the
-- first writer win when servers race on an empty database.

CREATE TABLE seal_key_checks (
    key_id     text   PRIMARY KEY,
    sealed     bytea  NOT NULL,
    created_at bigint NOT NULL
);
