-- A grant may name one of its issuer's stored credentials (bearer id and
-- name, never the secret): a successful claim returns that credential's
-- current secret, so an egress proxy receives the upstream key itself.
ALTER TABLE grants ADD COLUMN credential_bearer_id TEXT;
ALTER TABLE grants ADD COLUMN credential_name TEXT;
