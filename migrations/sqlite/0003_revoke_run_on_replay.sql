-- See migrations/postgres/0004_revoke_run_on_replay.sql.
ALTER TABLE grants ADD COLUMN revoke_run_on_replay INTEGER NOT NULL DEFAULT 0;
