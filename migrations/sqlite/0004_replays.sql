-- See migrations/postgres/0005_replays.sql.
ALTER TABLE grants ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
