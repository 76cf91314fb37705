-- Sign-in (issue 20): what an authorization-code flow needs between its
-- steps, so that any replica can finish a flow another began. Nothing here
-- is a secret in the clear: codes and client secrets as their SHA-256 (hex),
-- a flow's browser binding as the SHA-256 of its cookie. Times are unix
-- microseconds.

-- Clients registered by RFC 7591 dynamic registration (client ID metadata
-- documents are fetched, not stored). `metadata` is the JSON Tessera
-- answered the registration with, minus the secret.
CREATE TABLE signin_clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT,
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A flow from /oauth2/authorize until its code is issued or refused.
-- `flow_id` is also the upstream provider's `state`.
CREATE TABLE signin_flows (
    flow_id        TEXT PRIMARY KEY,
    binding_hash   TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    state          TEXT,
    code_challenge TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    subject        TEXT,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX signin_flows_expiry ON signin_flows (expires_at);

-- Authorization codes, single use: `used_at` is set by the exchange, and a
-- second exchange finds it set and revokes the run (`family`) the first
-- one minted.
CREATE TABLE signin_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    family         TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX signin_codes_expiry ON signin_codes (expires_at);

-- Consent remembered per subject, client and resource, for the scopes given.
CREATE TABLE signin_consents (
    subject    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (subject, client_id, resource)
);

-- Refresh tokens issued, by the SHA-256 of the token: a spent one
-- presented again names its family, which is revoked before the answer.
CREATE TABLE signin_refresh (
    token_hash TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    family     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX signin_refresh_expiry ON signin_refresh (expires_at);
