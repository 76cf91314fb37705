-- The invalidation channel is named by the grants table's schema, so that
-- deployments in different schemas of one database no longer empty each
-- other's caches (it was `tessera_grants` for the whole database). Channel
-- names are limited to 63 bytes and schema names are not short, so the name
-- carries a digest of the schema: `tessera_grants_` and 16 hex digits.
-- Replicas still listening on the old channel (during a rolling upgrade) hear
-- nothing and fall back on the cache's age bound (--cache-max-age).

CREATE OR REPLACE FUNCTION tessera_grant_ended() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('tessera_grants_' || left(md5(TG_TABLE_SCHEMA), 16),
                      encode(NEW.token_hash, 'hex'));
    RETURN NULL;
END
$$;
