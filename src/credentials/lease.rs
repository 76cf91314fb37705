//! The refresh lease: its id, and how BeginRefresh decides.
//!
//! One conditional UPDATE takes the lease if it is free or expired by the
//! database's clock, raising the fence; racing callers, in any process, are
//! serialised on the row and all but one find it held. A holder that died
//! loses the lease when its TTL runs out, and the next caller takes it.

use std::time::Duration;

use super::{Error, Result, Slot};
use crate::{grant::Micros, input::InvalidInput, store::CredentialStore};

const PREFIX: &str = "lse_";
const RANDOM: usize = 16;

/// A lease id: `lse_` and 32 lowercase hex digits (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseId(String);

impl LeaseId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; RANDOM];
        crate::token::os_random(&mut bytes);
        Self(format!("{PREFIX}{}", hex::encode(bytes)))
    }

    /// A lease id as a caller sent it; anything not shaped like one is
    /// INVALID_ARGUMENT (its value is not repeated).
    pub fn parse(text: String) -> crate::input::Result<Self> {
        if text.is_empty() {
            return Err(InvalidInput::new("lease_id", "is required"));
        }
        let well_formed = text.strip_prefix(PREFIX).is_some_and(|hex| {
            hex.len() == 2 * RANDOM && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !well_formed {
            return Err(InvalidInput::new(
                "lease_id",
                "is not a lease id (BeginRefresh's lease_id)",
            ));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// What BeginRefresh answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// This caller holds the lease until `expires_at`.
    Granted {
        lease_id: LeaseId,
        version: u64,
        fence: u64,
        expires_at: Micros,
    },
    /// Another caller holds it, until `holder_expires_at` at the latest.
    Held {
        version: u64,
        holder_expires_at: Micros,
    },
}

/// How often BeginRefresh tries again when a lease it found held was
/// released before it could say by whom.
const ATTEMPTS: usize = 3;

pub(super) async fn begin<S: CredentialStore>(
    store: &S,
    slot: &Slot,
    ttl: Duration,
) -> Result<Refresh> {
    for _ in 0..ATTEMPTS {
        let lease_id = LeaseId::generate();
        if let Some(granted) = store.take_lease(slot, lease_id.as_str(), ttl).await? {
            return Ok(Refresh::Granted {
                lease_id,
                version: granted.version,
                fence: granted.fence,
                expires_at: granted.expires_at,
            });
        }
        let state = store.lease_state(slot).await?.ok_or(Error::NotFound)?;
        match state.lease_expires_at {
            Some(at) if at > state.now => {
                return Ok(Refresh::Held {
                    version: state.version,
                    holder_expires_at: at,
                });
            }
            // Released (or lapsed) between the two statements: try again.
            _ => {}
        }
    }
    Err(Error::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_round_trip_and_refuse_anything_else() {
        let id = LeaseId::generate();
        assert_eq!(LeaseId::parse(id.as_str().to_owned()), Ok(id.clone()));
        assert_ne!(LeaseId::generate(), id);
        for bad in [
            "",
            "lse_",
            "lse_XYZ",
            "grt_0123456789abcdef0123456789abcdef",
            "lse_0123456789ABCDEF0123456789ABCDEF",
            "lse_0123456789abcdef0123456789abcdef0",
        ] {
            let err = LeaseId::parse(bad.to_owned()).unwrap_err().to_string();
            assert!(err.starts_with("lease_id:"), "{err}");
        }
    }
}
