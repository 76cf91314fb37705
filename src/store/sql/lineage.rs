//! The statements of a grant's lineage: revoke with its descendants, the
//! two halves of a rotation, and a delegation that takes its uses from its
//! parent (see [`crate::store::lineage`] for the transactions around them).

/// `$1` the target value, `$2` the reason, `$3` the issuer (NULL = any).
macro_rules! revoke {
    ($now:literal, $column:literal) => {
        concat!(
            "UPDATE grants SET revoked_at = ",
            $now,
            ", revoke_reason = $2 WHERE ",
            $column,
            " = $1 AND ",
            $crate::store::sql::live!($now),
            " AND ($3 IS NULL OR issued_by = $3) RETURNING grant_id"
        )
    };
}

/// Every grant a revoke aims at, live or not (`$1` the target value, `$2`
/// the issuer, NULL = any): a used-up or rotated grant is not revoked
/// again, but its descendants are.
macro_rules! targets {
    ($column:literal) => {
        concat!(
            "SELECT grant_id FROM grants WHERE ",
            $column,
            " = $1 AND ($2 IS NULL OR issued_by = $2)"
        )
    };
}

/// Revokes, from now + `$3` with reason `$2`, every live descendant of the
/// grants `$ids` lists (the dialect's rows of `$1`), and their
/// predecessors still in their overlap with every descendant of those: a
/// successor stands for the grants it replaced and what was delegated from
/// them. A rotated child keeps its parent's id, so following
/// `parent_grant_id` down reaches every rotation inside the tree too. A
/// revocation already set for earlier is kept: a cascade never lengthens a
/// life. Returns their hashes.
macro_rules! revoke_descendants {
    ($now:literal, $ids:literal) => {
        concat!(
            "WITH RECURSIVE chain(id) AS (",
            $ids,
            " UNION SELECT g.rotated_from FROM grants g JOIN chain ON g.grant_id = chain.id \
             WHERE g.rotated_from IS NOT NULL), \
             tree(id) AS (SELECT grant_id FROM grants WHERE parent_grant_id IN \
             (SELECT id FROM chain) \
             UNION SELECT g.grant_id FROM grants g JOIN tree ON g.parent_grant_id = tree.id) \
             UPDATE grants SET revoked_at = ",
            $now,
            " + $3, revoke_reason = $2 \
             WHERE grant_id IN (SELECT id FROM tree UNION SELECT id FROM chain) \
             AND (revoked_at IS NULL OR revoked_at > ",
            $now,
            " + $3) AND expires_at > ",
            $now,
            " AND (max_uses = 0 OR use_count < max_uses) RETURNING token_hash"
        )
    };
}

/// Marks grant `$1` rotated into `$2`: revoked (reason `$4`) from now +
/// `$3`. Only a live grant not rotated before, and only `$5`'s (NULL = any).
macro_rules! rotate_out {
    ($now:literal) => {
        concat!(
            "UPDATE grants SET rotated_to = $2, revoked_at = ",
            $now,
            " + $3, revoke_reason = $4 WHERE grant_id = $1 AND rotated_to IS NULL AND ",
            $crate::store::sql::live!($now),
            " AND ($5 IS NULL OR issued_by = $5) RETURNING ",
            $crate::store::sql::grant_columns!()
        )
    };
}

/// The latest a grant delegated from row `$parent` may live, when it asks
/// for now + `$ttl`:
/// no later than the parent expires, nor than its revocation (a rotated
/// parent's lies at the end of its overlap). `$least` is the dialect's
/// smallest-of function; a missing parent caps nothing.
macro_rules! capped {
    ($least:literal, $parent:literal, $now:literal, $ttl:literal) => {
        concat!(
            $least,
            "(",
            $now,
            " + ",
            $ttl,
            ", COALESCE(",
            $parent,
            ".expires_at, ",
            $now,
            " + ",
            $ttl,
            "), COALESCE(",
            $parent,
            ".revoked_at, ",
            $now,
            " + ",
            $ttl,
            "))"
        )
    };
}

/// The successor of grant `$6`: a copy with a new id, token and payload
/// (`$1`..`$4`) and `$5` to live, no longer than its parent, if delegated.
/// It carries the uses its predecessor took: a rotation never gives a
/// grant its uses back.
macro_rules! rotate_in {
    ($now:literal, $least:literal) => {
        concat!(
            "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
             scopes, labels, sealed_payload, max_uses, use_count, issued_by, \
             revoke_run_on_replay, issued_at, expires_at, parent_grant_id, depth, rotated_from, \
             credential_bearer_id, credential_name) \
             SELECT $1, $2, $3, p.subject, p.audience, p.run_id, p.scopes, p.labels, $4, \
             p.max_uses, p.use_count, p.issued_by, p.revoke_run_on_replay, ",
            $now,
            ", ",
            $crate::store::sql::capped!($least, "parent", $now, "$5"),
            ", p.parent_grant_id, p.depth, p.grant_id, p.credential_bearer_id, \
             p.credential_name FROM grants p \
             LEFT JOIN grants parent ON parent.grant_id = p.parent_grant_id \
             WHERE p.grant_id = $6 RETURNING ",
            $crate::store::sql::grant_columns!()
        )
    };
}

/// After a rotation, a predecessor with a use limit has none left: its
/// remaining uses went to its successor, so the two tokens never take more
/// than the one grant allowed. (An unlimited one is honoured through its
/// overlap.) Returns the predecessor as it now is.
macro_rules! spend_rest {
    ($now:literal) => {
        concat!(
            "UPDATE grants SET use_count = max_uses, used_up_at = ",
            $now,
            " WHERE grant_id = $1 AND max_uses > 0 AND use_count < max_uses RETURNING ",
            $crate::store::sql::grant_columns!()
        )
    };
}

/// Takes `$2` uses from parent `$1` for a child, if the parent is live and
/// has them (an unlimited parent gives any number and keeps its own), and
/// locks the parent until the child is inserted, so a revoke that follows
/// finds the child. The uses a child holds are its parent's no longer:
/// however a family delegates, it never takes more uses than its root.
macro_rules! escrow {
    ($now:literal) => {
        concat!(
            "UPDATE grants SET use_count = use_count + CASE WHEN max_uses > 0 THEN $2 ELSE 0 END, \
             used_up_at = CASE WHEN max_uses > 0 AND use_count + $2 >= max_uses THEN ",
            $now,
            " ELSE used_up_at END WHERE grant_id = $1 AND ",
            $crate::store::sql::live!($now),
            " AND (max_uses = 0 OR use_count + $2 <= max_uses) RETURNING grant_id"
        )
    };
}

/// A grant delegated from `$11` (locked by [`escrow!`]): its subject, run
/// and replay policy, one level deeper, living no longer than it.
macro_rules! delegate {
    ($now:literal, $least:literal) => {
        concat!(
            "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
             scopes, labels, sealed_payload, max_uses, issued_by, revoke_run_on_replay, \
             issued_at, expires_at, parent_grant_id, depth) \
             SELECT $1, $2, $3, subject, $4, run_id, $5, $6, $7, $8, $9, revoke_run_on_replay, ",
            $now,
            ", ",
            $crate::store::sql::capped!($least, "grants", $now, "$10"),
            ", grant_id, depth + 1 FROM grants WHERE grant_id = $11 RETURNING ",
            $crate::store::sql::grant_columns!()
        )
    };
}

pub(crate) use {
    capped, delegate, escrow, revoke, revoke_descendants, rotate_in, rotate_out, spend_rest,
    targets,
};
