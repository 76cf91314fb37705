-- Credentials: upstream secrets a client keeps per bearer (an OAuth access
-- and refresh token, say), sealed under the server's --seal-key. Only
-- ciphertext is stored, with the id of the key that sealed it; the
-- associated data binds it to (client_id, bearer_id, name, version).
-- Times are unix microseconds; lease times from the database's clock.

CREATE TABLE credentials (
    client_id        text   NOT NULL,
    bearer_id        text   NOT NULL,
    name             text   NOT NULL,
    -- 1 on create, +1 on every replace and every completed refresh.
    version          bigint NOT NULL,
    sealed           bytea  NOT NULL,
    key_id           text   NOT NULL,
    -- When the access token expires, as the client said; NULL: unknown.
    expires_at       bigint,
    updated_at       bigint NOT NULL,
    -- The refresh lease: its holder, when it lapses, and the fence (+1 on
    -- every lease granted). A lease is free when lease_expires_at is NULL
    -- or past.
    lease_id         text   UNIQUE,
    lease_expires_at bigint,
    lease_fence      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, bearer_id, name)
);
