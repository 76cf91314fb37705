//! The statements of the credentials and seal key check tables, built once
//! per database from its clock (`now`, unix microseconds).

use crate::store::statements::leak;

pub struct Statements {
    pub read: &'static str,
    pub version: &'static str,
    pub create: &'static str,
    pub replace: &'static str,
    /// A racing UPDATE waits for the row and re-checks the WHERE clause
    /// against the winner's lease (SQLite has one writer at a time): one
    /// lease per period, whoever asks.
    pub take_lease: &'static str,
    pub lease_state: &'static str,
    pub leased: &'static str,
    pub complete: &'static str,
    pub release: &'static str,
    pub delete: &'static str,
    pub list: &'static str,
    pub stale_seals: &'static str,
    pub count_stale_seals: &'static str,
    pub reseal: &'static str,
    pub key_check: &'static str,
    pub add_key_check: &'static str,
    pub sealed_under: &'static str,
}

/// The row of one slot: client `$1`, bearer `$2`, name `$3`.
const SLOT: &str = "client_id = $1 AND bearer_id = $2 AND name = $3";

impl Statements {
    pub fn new(now: &str) -> Self {
        Self {
            read: leak(format!(
                "SELECT version, sealed, key_id, expires_at, {now} AS now FROM credentials \
                 WHERE {SLOT}"
            )),
            version: leak(format!("SELECT version FROM credentials WHERE {SLOT}")),
            create: leak(format!(
                "INSERT INTO credentials (client_id, bearer_id, name, version, sealed, \
                 key_id, expires_at, updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, {now}) \
                 ON CONFLICT DO NOTHING"
            )),
            replace: leak(format!(
                "UPDATE credentials SET version = version + 1, sealed = $5, key_id = $6, \
                 expires_at = $7, lease_id = NULL, lease_expires_at = NULL, updated_at = {now} \
                 WHERE {SLOT} AND version = $4"
            )),
            take_lease: leak(format!(
                "UPDATE credentials SET lease_id = $4, lease_fence = lease_fence + 1, \
                 lease_expires_at = {now} + $5 WHERE {SLOT} \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= {now}) \
                 RETURNING version, lease_fence, lease_expires_at"
            )),
            lease_state: leak(format!(
                "SELECT version, lease_expires_at, {now} AS now FROM credentials WHERE {SLOT}"
            )),
            leased: "SELECT client_id, bearer_id, name, version FROM credentials \
                 WHERE lease_id = $1 AND client_id = $2",
            complete: leak(format!(
                "UPDATE credentials SET version = version + 1, sealed = $4, key_id = $5, \
                 expires_at = $6, lease_id = NULL, lease_expires_at = NULL, updated_at = {now} \
                 WHERE lease_id = $1 AND client_id = $2 AND version = $3 \
                 AND lease_expires_at > {now}"
            )),
            release: leak(format!(
                "UPDATE credentials SET lease_id = NULL, lease_expires_at = NULL \
                 WHERE lease_id = $1 AND client_id = $2 AND lease_expires_at > {now}"
            )),
            delete: leak(format!("DELETE FROM credentials WHERE {SLOT}")),
            list: "SELECT name, version, expires_at FROM credentials \
                 WHERE client_id = $1 AND bearer_id = $2 AND name > $3 ORDER BY name LIMIT $4",
            stale_seals: "SELECT client_id, bearer_id, name, version, sealed, key_id \
                 FROM credentials \
                 WHERE key_id <> $1 AND (client_id, bearer_id, name) > ($2, $3, $4) \
                 ORDER BY client_id, bearer_id, name LIMIT $5",
            count_stale_seals: "SELECT count(*) FROM credentials WHERE key_id <> $1",
            reseal: "UPDATE credentials SET sealed = $6, key_id = $7 \
                 WHERE client_id = $1 AND bearer_id = $2 AND name = $3 \
                 AND version = $4 AND key_id = $5",
            key_check: "SELECT sealed FROM seal_key_checks WHERE key_id = $1",
            add_key_check: leak(format!(
                "INSERT INTO seal_key_checks (key_id, sealed, created_at) VALUES ($1, $2, {now}) \
                 ON CONFLICT (key_id) DO NOTHING"
            )),
            sealed_under: "SELECT client_id, bearer_id, name, version, sealed FROM credentials \
                 WHERE key_id = $1 ORDER BY updated_at, client_id, bearer_id, name LIMIT $2",
        }
    }
}
