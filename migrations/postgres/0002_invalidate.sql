-- Every replica caches recently validated grants for BOUNDED Validate. A
-- change that ends a grant early (revoke, the claim that takes the last
-- use) is announced on the `tessera_grants` channel with the grant's token
-- hash, whoever made it, even by hand in SQL. Ordinary claims change
-- neither column and fire nothing.

CREATE FUNCTION tessera_grant_ended() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('tessera_grants', encode(NEW.token_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_ended
    AFTER UPDATE ON grants
    FOR EACH ROW
    WHEN (NEW.revoked_at IS DISTINCT FROM OLD.revoked_at
          OR NEW.used_up_at IS DISTINCT FROM OLD.used_up_at)
    EXECUTE FUNCTION tessera_grant_ended();
