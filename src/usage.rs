//! Validate's record of use (`last_used_at`), written off the reply path.
//!
//! A Validate only reads. The grants it found in use are noted here, and a
//! background task writes them every second in one statement for the whole
//! batch, so a first Validate costs no commit and no fsync on its reply,
//! and a thousand grants in use cost one write, not a thousand. The store
//! keeps the contract: at most one write per grant per
//! [`TOUCH_INTERVAL`](crate::store::TOUCH_INTERVAL), however many replicas.

use std::{collections::HashMap, sync::Mutex};

use crate::grant::Micros;

/// Grants used since the last flush, with their first time of use in it:
/// the time the first Validate's reply showed, and the one the coalescing
/// rule keeps.
#[derive(Default)]
pub struct Usage {
    /// A std mutex: held for a map insert or a swap, never across an await.
    pending: Mutex<HashMap<String, Micros>>,
}

impl Usage {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Micros>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn note(&self, grant_id: &str, at: Micros) {
        let mut pending = self.pending();
        match pending.get_mut(grant_id) {
            Some(first) => *first = (*first).min(at),
            None => {
                pending.insert(grant_id.to_owned(), at);
            }
        }
    }

    /// Everything noted so far, leaving nothing behind.
    pub fn take(&self) -> Vec<(String, Micros)> {
        std::mem::take(&mut *self.pending()).into_iter().collect()
    }

    /// Puts back a batch whose write failed, to be tried with the next.
    pub fn restore(&self, batch: Vec<(String, Micros)>) {
        for (id, at) in batch {
            self.note(&id, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_use_per_grant() {
        let usage = Usage::default();
        usage.note("a", 5);
        usage.note("a", 3);
        usage.note("b", 1);
        let mut batch = usage.take();
        batch.sort();
        assert_eq!(batch, [("a".to_owned(), 3), ("b".to_owned(), 1)]);
        assert!(usage.take().is_empty());
        usage.restore(batch);
        assert_eq!(usage.take().len(), 2);
    }
}
