-- Lineage: a grant delegated from another names its parent (and sits one
-- level deeper); a rotated grant names its successor, and the successor
-- its predecessor. A rotated grant's revoked_at may lie in the future: the
-- end of its overlap. Revoking a grant walks down parent_grant_id, so it
-- is indexed where set.
ALTER TABLE grants ADD COLUMN parent_grant_id TEXT;
ALTER TABLE grants ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN rotated_from TEXT;
ALTER TABLE grants ADD COLUMN rotated_to TEXT;
CREATE INDEX grants_parent ON grants (parent_grant_id) WHERE parent_grant_id IS NOT NULL;
