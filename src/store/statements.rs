//! Every statement both databases run, built once per database from its
//! [`Syntax`]: the same SQL for both, but for the words that differ. Each
//! is written out here, whole, where a reader looks for it; parameters are
//! `$1..$n`, which PostgreSQL and sqlx's SQLite driver both read.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{ListQuery, credentials};

/// What differs between the databases' SQL.
pub struct Syntax {
    /// The database's clock in unix microseconds. Every time column is set
    /// and compared by it, so replicas with skewed clocks agree.
    pub now: &'static str,
    /// Rows `(id)` of the list of grant ids bound as `$1`.
    pub ids: &'static str,
    /// Rows `t(id, at)` of the grant ids bound as `$1` and the times bound
    /// as `$2`, read in step.
    pub touched: &'static str,
    /// The smallest of its arguments.
    pub least: &'static str,
    /// The lock a sweep takes on the rows it deletes (PostgreSQL's replicas
    /// sweeping at once take disjoint rows; SQLite has one writer).
    pub sweep_lock: &'static str,
}

/// Column list of every statement that returns a grant.
pub const GRANT_COLUMNS: &str = "grant_id, token_hint, subject, audience, run_id, scopes, labels, \
     max_uses, use_count, issued_by, issued_at, expires_at, revoked_at, revoke_reason, \
     last_used_at, revoke_run_on_replay, parent_grant_id, depth, rotated_from, rotated_to, \
     credential_bearer_id, credential_name";

/// The columns a minted grant is inserted with (see [`Statements::insert`]).
pub const INSERT_INTO: &str = "INSERT INTO grants (grant_id, token_hash, token_hint, subject, \
     audience, run_id, scopes, labels, sealed_payload, max_uses, issued_by, revoke_run_on_replay, \
     credential_bearer_id, credential_name, issued_at, expires_at)";

/// Usable at `now`: not revoked (a rotated grant's revocation may lie
/// ahead, at the end of its overlap), not expired, a use left. The one
/// definition of "live", for Claim, Revoke, ListGrants and the live count.
pub fn live(now: &str) -> String {
    format!(
        "(revoked_at IS NULL OR revoked_at > {now}) AND expires_at > {now} \
         AND (max_uses = 0 OR use_count < max_uses)"
    )
}

/// The `SET` list of a claim: one use more, when, and when the last was.
pub fn take_use(now: &str) -> String {
    format!(
        "use_count = use_count + 1, last_used_at = {now}, \
         used_up_at = CASE WHEN max_uses > 0 AND use_count + 1 >= max_uses THEN {now} END"
    )
}

/// Reserves a key for a keyed claim run as three statements (see
/// [`Sql::keyed_claim`](super::Sql::keyed_claim)): `$1` grant, `$2`
/// client, `$3` key hash. Inserts nothing if the key is already recorded;
/// waits for a racing insert of the same key to commit or roll back first.
pub const RESERVE_KEY: &str = "INSERT INTO claim_keys (grant_id, client_id, key_hash, use_number, \
     claimed_at) VALUES ($1, $2, $3, 0, 0) ON CONFLICT DO NOTHING";

/// Records the use a reserved key took: `$4` use number, `$5` time.
pub const RECORD_KEY: &str = "UPDATE claim_keys SET use_number = $4, claimed_at = $5 \
     WHERE grant_id = $1 AND client_id = $2 AND key_hash = $3";

/// One statement for each column a revoke may aim at.
pub struct ByTarget {
    pub token_hash: &'static str,
    pub grant_id: &'static str,
    pub run_id: &'static str,
    pub subject: &'static str,
}

impl ByTarget {
    fn new(statement: impl Fn(&str) -> String) -> Self {
        Self {
            token_hash: leak(statement("token_hash")),
            grant_id: leak(statement("grant_id")),
            run_id: leak(statement("run_id")),
            subject: leak(statement("subject")),
        }
    }
}

/// The statements of one database.
pub struct Statements {
    /// One grant, minted: `$12` its time to live.
    pub insert: &'static str,
    /// A grant by token hash, whatever its state, and the database's time.
    pub find: &'static str,
    /// [`Self::find`], plus the claim client `$2` made on the grant with
    /// the key whose hash is `$3`, if any (`prior_use`, `prior_at`), and the
    /// sealed payload: a keyed claim learns whether it is a retry in the
    /// same single statement that every other claim runs.
    pub find_keyed: &'static str,
    /// Records Validate's uses in bulk: `$3` is the coalescing interval, so
    /// racing replicas write a grant at most once per interval.
    pub touch: &'static str,
    /// The compare-and-set of a claim. A racing UPDATE waits for the row
    /// lock and re-checks the WHERE clause on the row as the winner left it
    /// (SQLite has one writer at a time), so only callers that still see a
    /// use left get one.
    pub consume: &'static str,
    /// The claim a recorded key made, with the grant as it is now.
    pub prior_claim: &'static str,
    pub payload: &'static str,
    /// One grant by id, restricted to issuer `$2` unless it is NULL.
    pub get: &'static str,
    /// Counts one more replay of grant `$1`, returning the count.
    pub count_replay: &'static str,
    /// The live-grants gauge: an index range on `expires_at`, every 30 s.
    pub count_live: &'static str,
    /// `$1` retention, `$2` batch size.
    pub sweep: &'static str,
    /// [`live`] in this database's words, for ListGrants.
    pub live: &'static str,
    /// Revokes the live grants whose column is `$1`, with reason `$2`,
    /// issued by `$3` (NULL = any); returns their ids.
    pub revoke: ByTarget,
    /// Every grant a revoke aims at, live or not (`$1` the target value,
    /// `$2` the issuer, NULL = any): a used-up or rotated grant is not
    /// revoked again, but its descendants are.
    pub targets: ByTarget,
    /// Revokes, from now + `$3` with reason `$2`, every live descendant of
    /// the grants listed in `$1`, and their predecessors still in their
    /// overlap with every descendant of those: a successor stands for the
    /// grants it replaced and what was delegated from them. A rotated child
    /// keeps its parent's id, so following `parent_grant_id` down reaches
    /// every rotation inside the tree too. A revocation already set for
    /// earlier is kept: a cascade never lengthens a life. Returns their
    /// hashes.
    pub revoke_descendants: &'static str,
    /// The ids [`Self::revoke_descendants`] walks, of every state, read
    /// afresh: a revoke repeats its cascade until this stops changing (see
    /// `Sql::revoke`).
    pub family: &'static str,
    /// Marks grant `$1` rotated into `$2`: revoked (reason `$4`) from now +
    /// `$3`. Only a live grant not rotated before, and only `$5`'s (NULL =
    /// any).
    pub rotate_out: &'static str,
    /// The successor of grant `$6`: a copy with a new id, token and payload
    /// (`$1`..`$4`) and `$5` to live, no longer than its parent, if
    /// delegated. It carries the uses its predecessor took: a rotation
    /// never gives a grant its uses back.
    pub rotate_in: &'static str,
    /// After a rotation, a predecessor with a use limit has none left: its
    /// remaining uses went to its successor, so the two tokens never take
    /// more than the one grant allowed. (An unlimited one is honoured
    /// through its overlap.) Returns the predecessor as it now is.
    pub spend_rest: &'static str,
    /// Takes `$2` uses from parent `$1` for a child, if the parent is live
    /// and has them (an unlimited parent gives any number and keeps its
    /// own), and locks the parent until the child is inserted, so a revoke
    /// that follows finds the child. The uses a child holds are its
    /// parent's no longer: however a family delegates, it never takes more
    /// uses than its root.
    pub escrow: &'static str,
    /// A grant delegated from `$11` (locked by [`Self::escrow`]): its
    /// subject, run and replay policy, one level deeper, living no longer
    /// than it.
    pub delegate: &'static str,
    pub credentials: credentials::Statements,
}

impl Statements {
    pub fn new(syntax: &Syntax) -> Self {
        let Syntax {
            now,
            ids,
            touched,
            least,
            sweep_lock,
        } = *syntax;
        let live = live(now);
        let c = GRANT_COLUMNS;
        let family = format!(
            "WITH RECURSIVE chain(id) AS ({ids} UNION SELECT g.rotated_from FROM grants g \
             JOIN chain ON g.grant_id = chain.id WHERE g.rotated_from IS NOT NULL), \
             tree(id) AS (SELECT grant_id FROM grants WHERE parent_grant_id IN \
             (SELECT id FROM chain) \
             UNION SELECT g.grant_id FROM grants g JOIN tree ON g.parent_grant_id = tree.id)"
        );
        Self {
            insert: leak(format!(
                "{INSERT_INTO} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, \
                 {now}, {now} + $12) RETURNING {c}"
            )),
            find: leak(format!(
                "SELECT {c}, {now} AS now FROM grants WHERE token_hash = $1"
            )),
            find_keyed: leak(format!(
                "SELECT {c}, {now} AS now, sealed_payload, \
                 (SELECT use_number FROM claim_keys k WHERE k.grant_id = grants.grant_id \
                 AND k.client_id = $2 AND k.key_hash = $3) AS prior_use, \
                 (SELECT claimed_at FROM claim_keys k WHERE k.grant_id = grants.grant_id \
                 AND k.client_id = $2 AND k.key_hash = $3) AS prior_at \
                 FROM grants WHERE token_hash = $1"
            )),
            touch: leak(format!(
                "UPDATE grants SET last_used_at = t.at FROM {touched} \
                 WHERE grants.grant_id = t.id \
                 AND (grants.last_used_at IS NULL OR grants.last_used_at < t.at - $3)"
            )),
            consume: leak(format!(
                "UPDATE grants SET {} WHERE grant_id = $1 AND {live} RETURNING {c}, sealed_payload",
                take_use(now)
            )),
            prior_claim: leak(format!(
                "SELECT {c}, sealed_payload, k.use_number, k.claimed_at FROM grants, \
                 (SELECT use_number, claimed_at FROM claim_keys \
                 WHERE grant_id = $1 AND client_id = $2 AND key_hash = $3) k \
                 WHERE grants.grant_id = $1"
            )),
            payload: "SELECT sealed_payload FROM grants WHERE grant_id = $1",
            get: leak(format!(
                "SELECT {c} FROM grants WHERE grant_id = $1 AND ($2 IS NULL OR issued_by = $2)"
            )),
            count_replay: "UPDATE grants SET replays = replays + 1 WHERE grant_id = $1 \
                 RETURNING replays",
            count_live: leak(format!("SELECT count(*) FROM grants WHERE {live}")),
            sweep: leak(format!(
                "DELETE FROM grants WHERE grant_id IN (SELECT grant_id FROM grants \
                 WHERE expires_at < {now} - $1 OR revoked_at < {now} - $1 \
                 OR (used_up_at < {now} - $1 AND NOT EXISTS (SELECT 1 FROM grants c \
                 WHERE c.parent_grant_id = grants.grant_id)) LIMIT $2{sweep_lock})"
            )),
            revoke: ByTarget::new(|column| {
                format!(
                    "UPDATE grants SET revoked_at = {now}, revoke_reason = $2 \
                     WHERE {column} = $1 AND {live} AND ($3 IS NULL OR issued_by = $3) \
                     RETURNING grant_id"
                )
            }),
            targets: ByTarget::new(|column| {
                format!(
                    "SELECT grant_id FROM grants WHERE {column} = $1 \
                     AND ($2 IS NULL OR issued_by = $2)"
                )
            }),
            revoke_descendants: leak(format!(
                "{family} UPDATE grants SET revoked_at = {now} + $3, revoke_reason = $2 \
                 WHERE grant_id IN (SELECT id FROM tree UNION SELECT id FROM chain) \
                 AND (revoked_at IS NULL OR revoked_at > {now} + $3) AND expires_at > {now} \
                 AND (max_uses = 0 OR use_count < max_uses) RETURNING token_hash"
            )),
            family: leak(format!(
                "{family} SELECT id FROM tree UNION SELECT id FROM chain ORDER BY 1"
            )),
            rotate_out: leak(format!(
                "UPDATE grants SET rotated_to = $2, revoked_at = {now} + $3, revoke_reason = $4 \
                 WHERE grant_id = $1 AND rotated_to IS NULL AND {live} \
                 AND ($5 IS NULL OR issued_by = $5) RETURNING {c}"
            )),
            rotate_in: leak(format!(
                "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
                 scopes, labels, sealed_payload, max_uses, use_count, issued_by, \
                 revoke_run_on_replay, issued_at, expires_at, parent_grant_id, depth, \
                 rotated_from, credential_bearer_id, credential_name) \
                 SELECT $1, $2, $3, p.subject, p.audience, p.run_id, p.scopes, p.labels, $4, \
                 p.max_uses, p.use_count, p.issued_by, p.revoke_run_on_replay, {now}, {}, \
                 p.parent_grant_id, p.depth, p.grant_id, p.credential_bearer_id, \
                 p.credential_name FROM grants p \
                 LEFT JOIN grants parent ON parent.grant_id = p.parent_grant_id \
                 WHERE p.grant_id = $6 RETURNING {c}",
                capped(least, "parent", now, "$5")
            )),
            spend_rest: leak(format!(
                "UPDATE grants SET use_count = max_uses, used_up_at = {now} \
                 WHERE grant_id = $1 AND max_uses > 0 AND use_count < max_uses RETURNING {c}"
            )),
            escrow: leak(format!(
                "UPDATE grants SET use_count = use_count + \
                 CASE WHEN max_uses > 0 THEN $2 ELSE 0 END, \
                 used_up_at = CASE WHEN max_uses > 0 AND use_count + $2 >= max_uses THEN {now} \
                 ELSE used_up_at END WHERE grant_id = $1 AND {live} \
                 AND (max_uses = 0 OR use_count + $2 <= max_uses) RETURNING grant_id"
            )),
            delegate: leak(format!(
                "INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, \
                 scopes, labels, sealed_payload, max_uses, issued_by, revoke_run_on_replay, \
                 issued_at, expires_at, parent_grant_id, depth) \
                 SELECT $1, $2, $3, subject, $4, run_id, $5, $6, $7, $8, $9, \
                 revoke_run_on_replay, {now}, {}, grant_id, depth + 1 FROM grants \
                 WHERE grant_id = $11 RETURNING {c}",
                capped(least, "grants", now, "$10")
            )),
            live: leak(live),
            credentials: credentials::Statements::new(now),
        }
    }
}

/// The latest a grant delegated from row `parent` may live, when it asks
/// for now + `ttl`: no later than the parent expires, nor than its
/// revocation (a rotated parent's lies at the end of its overlap). A
/// missing parent caps nothing.
fn capped(least: &str, parent: &str, now: &str, ttl: &str) -> String {
    format!(
        "{least}({now} + {ttl}, COALESCE({parent}.expires_at, {now} + {ttl}), \
         COALESCE({parent}.revoked_at, {now} + {ttl}))"
    )
}

/// A statement built once, at start-up, kept for the life of the process
/// (sqlx takes `&'static str` as proof that no caller's input is in it).
pub(crate) fn leak(statement: String) -> &'static str {
    statement.leak()
}

/// Builds a ListGrants page query and its live-count query. `live` is the
/// database's [`Statements::live`].
pub(crate) fn list_queries<DB>(
    query: &ListQuery,
    live: &'static str,
) -> (QueryBuilder<DB>, QueryBuilder<DB>)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let filtered = |select: String, only_live: bool| {
        let mut qb = QueryBuilder::new(select);
        qb.push(" WHERE ")
            .push(if only_live { live } else { "TRUE" });
        for (column, value) in [
            (" AND subject = ", &query.subject),
            (" AND run_id = ", &query.run_id),
            (" AND issued_by = ", &query.issued_by),
        ] {
            if let Some(value) = value {
                qb.push(column).push_bind(value.clone());
            }
        }
        qb
    };
    let mut page = filtered(
        format!("SELECT {GRANT_COLUMNS} FROM grants"),
        !query.include_inactive,
    );
    if let Some(after) = &query.after {
        page.push(" AND grant_id > ").push_bind(after.clone());
    }
    page.push(" ORDER BY grant_id LIMIT ")
        .push_bind(i64::from(query.limit));
    (page, filtered("SELECT count(*) FROM grants".into(), true))
}
