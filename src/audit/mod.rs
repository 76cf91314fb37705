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
//!
//! Each kind of event is a variant of [`Event`], whose fields are typed
//! too (reasons as their enums, a token as its [`TokenMac`]), and
//! [`Event::write`] is the only code that logs one: the field names and
//! the shape of each line are defined there, once.

use std::{collections::BTreeMap, fmt};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::token::{Token, os_random};

mod event;
mod write;

pub use event::{AuthFailure, ClaimOutcome, Event, Operation, RevokeCause, Uncounted};

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
    pub fn token_mac(&self, token: &Token) -> TokenMac {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(token.expose().as_bytes());
        TokenMac(hex::encode(&mac.finalize().into_bytes()[..16]))
    }
}

/// A token as events name it (see [`Audit::token_mac`]). Its own type so
/// that an event's token field cannot be given the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMac(String);

impl TokenMac {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A grant's labels for the `labels` field: compact JSON, an object in
/// JSON lines.
fn labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).expect("a map of strings serializes")
}

#[cfg(test)]
mod tests;
