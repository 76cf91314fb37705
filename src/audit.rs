//! The audit trail: one structured event per Mint, Claim and Revoke, per
//! refused Validate or Claim, and per refused key or role, on the
//! `tessera::audit` log target (route it with `RUST_LOG=tessera::audit=info`).
//!
//! Events name the client, the grant and the real reason; never a token.
//! Where events about one token must be correlated, they carry `token_mac`:
//! an HMAC-SHA256 of the token under a server key, useless to anyone without
//! that key and unrelated to the hash the database stores.
//!
//! Fields are typed: strings as strings, counts as numbers, reasons by
//! name, and labels as compact JSON, which JSON lines write as an object
//! (see [`crate::telemetry::json`]).

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::token::{Token, os_random};

/// Log target of every audit event.
pub const TARGET: &str = "tessera::audit";

pub struct Audit {
    key: [u8; 32],
}

impl Audit {
    /// `key` correlates events across restarts and replicas; without one a
    /// random key correlates them within this process only.
    pub fn new(key: Option<[u8; 32]>) -> Self {
        let key = key.unwrap_or_else(|| {
            let mut key = [0u8; 32];
            os_random(&mut key);
            key
        });
        Self { key }
    }

    /// First 16 bytes of HMAC-SHA256(key, token), hex.
    pub fn token_mac(&self, token: &Token) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(token.expose().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// A grant's labels for the `labels` field: compact JSON, an object in
/// JSON lines.
pub fn labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).expect("a map of strings serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_keyed_and_stable() {
        let token = Token::generate();
        let a = Audit::new(Some([1; 32]));
        let b = Audit::new(Some([2; 32]));
        assert_eq!(a.token_mac(&token), a.token_mac(&token));
        assert_ne!(a.token_mac(&token), b.token_mac(&token));
        assert_eq!(a.token_mac(&token).len(), 32);
        assert!(!a.token_mac(&token).contains(&token.expose()[4..12]));
    }
}
