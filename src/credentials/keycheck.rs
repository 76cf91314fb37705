//! Proving the `--seal-key` keys against the database before anything is
//! sealed with them.
//!
//! A row names the id of the key that sealed it, not the key. A replica
//! given another key under an id in use (a copy-paste slip, a stale
//! secret) would otherwise start, report credentials on, and seal every
//! Put under a key no other server has: those credentials then fail to
//! open everywhere else, silently until someone reads them.
//!
//! So the database keeps a key-check value per key id: a fixed text
//! sealed under the first key that used the id (AEAD: only the same key
//! opens it). At start, and before `tessera rekey` writes, every key of the
//! file is proven: its id's check value is inserted if absent (`ON
//! CONFLICT DO NOTHING`), read back, and must open under the file's key.
//! Two servers racing on an empty database with different keys under one
//! id both insert, one insert wins, and the other reads the winner's value
//! and refuses to start. Keys are read at start only (a changed file takes
//! a restart), so a proof at start covers every write.
//!
//! A database written before the checks existed has credentials under an
//! id but no check value: the first key proven for it must also open one
//! of the id's oldest credentials (those were written before any newer
//! replica joined), so the check value is never set by a wrong key.

use super::Keyring;
use crate::store::{
    StoreError,
    credentials::{Resealable, SealChecks},
};

/// How many of a key id's credentials are tried when it has no check
/// value yet: any one that opens proves the key.
const SAMPLE: u32 = 100;

/// Why the keys were not proven.
#[derive(Debug, thiserror::Error)]
pub enum Unproven {
    #[error(
        "key id {key_id:?} is not the key this database's credentials under {key_id:?} are \
         sealed with (it does not open what that id sealed): this server would seal \
         credentials the others cannot open. Give every server the same KEYID:key lines, and \
         a new key a new key id"
    )]
    WrongKey { key_id: String },
    #[error("checking the keys against the database")]
    Store(#[from] StoreError),
}

/// Proves every key of `keyring` against what its id sealed in `store`,
/// recording a check value for an id the database has not seen.
pub async fn prove<S: SealChecks>(store: &S, keyring: &Keyring) -> Result<(), Unproven> {
    for key_id in keyring.key_ids() {
        let wrong = || Unproven::WrongKey {
            key_id: key_id.clone(),
        };
        let stored = match store.key_check(key_id).await? {
            Some(stored) => stored,
            None => {
                let sealed = store.sealed_under(key_id, SAMPLE).await?;
                let opens = |row: &Resealable| keyring.open(&row.slot, row.version, &row.sealed);
                if !sealed.is_empty() && !sealed.iter().any(|row| opens(row).is_ok()) {
                    return Err(wrong());
                }
                let check = keyring.seal_check(key_id).expect("an id of the file");
                store.add_key_check(key_id, &check).await?;
                // Ours or a racing server's: whichever the database kept.
                store
                    .key_check(key_id)
                    .await?
                    .ok_or(StoreError::Internal(sqlx::Error::RowNotFound))?
            }
        };
        if !keyring.opens_check(key_id, &stored) {
            return Err(wrong());
        }
    }
    Ok(())
}
