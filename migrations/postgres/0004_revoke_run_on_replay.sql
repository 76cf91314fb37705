-- A grant minted with revoke_run_on_replay has its whole run revoked when
-- its token is presented again after being used up or revoked.
ALTER TABLE grants ADD COLUMN revoke_run_on_replay boolean NOT NULL DEFAULT false;
