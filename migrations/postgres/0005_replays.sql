-- How many times each grant's token was replayed (presented again after it
-- was used up or revoked, by a client it was made for), counted by every
-- replica in the row. Not indexed: a replay's update stays a HOT update,
-- and changes no column the grants_ended trigger watches.
ALTER TABLE grants ADD COLUMN replays bigint NOT NULL DEFAULT 0;
