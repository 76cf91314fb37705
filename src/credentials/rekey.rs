//! `tessera rekey`: re-seals every credential under the `--seal-key`
//! file's first key, in batches, so that older keys can be dropped.
//!
//! Each row is rewritten with a compare-and-set on its version and key id:
//! a row written meanwhile (by a Put or a refresh, already under a server's
//! current key) is left as it is, and counted. The version stays: the
//! secret did not change. Safe to run while servers serve, and again.

use tracing::warn;

use super::{Keyring, Slot};
use crate::store::{CredentialStore, StoreError};

/// What a rekey did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Rows now sealed under the current key.
    pub resealed: u64,
    /// Rows written by someone else between read and rewrite: left alone.
    pub changed: u64,
    /// Rows that do not open under any key of the file (their key id is
    /// missing, or they are corrupt): left alone, and logged.
    pub unopenable: u64,
}

pub async fn rekey<S: CredentialStore>(
    store: &S,
    keyring: &Keyring,
    batch: u32,
) -> Result<Report, StoreError> {
    rekey_with_progress(store, keyring, batch, |_| {}).await
}

/// [`rekey`], calling `progress` after each batch with the report so far
/// (a person running `tessera rekey` on many rows wants to see it move).
pub async fn rekey_with_progress<S: CredentialStore>(
    store: &S,
    keyring: &Keyring,
    batch: u32,
    mut progress: impl FnMut(&Report),
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut after = Slot {
        client_id: String::new(),
        bearer_id: String::new(),
        name: String::new(),
    };
    loop {
        let rows = store
            .stale_seals(keyring.current(), &after, batch.max(1))
            .await?;
        let Some(last) = rows.last() else {
            return Ok(report);
        };
        after = last.slot.clone();
        for row in &rows {
            let secret = match keyring.open(&row.slot, row.version, &row.sealed) {
                Ok(secret) => secret,
                Err(err) => {
                    warn!(
                        client = %row.slot.client_id,
                        bearer_id = %row.slot.bearer_id,
                        name = %row.slot.name,
                        error = %err,
                        "credential not resealed"
                    );
                    report.unopenable += 1;
                    continue;
                }
            };
            let sealed = keyring.seal(&row.slot, row.version, &secret);
            if store.reseal(row, &sealed).await? {
                report.resealed += 1;
            } else {
                report.changed += 1;
            }
        }
        progress(&report);
    }
}
