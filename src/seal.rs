//! Payloads at rest are encrypted under a key only the token holder can give.
//!
//! The key is HKDF-SHA256 of the token, so the database (and its backups)
//! hold only ciphertext: reading a payload needs the token, which Tessera
//! never stores. Each key seals exactly one payload (one token, one grant),
//! so ChaCha20-Poly1305's fixed zero nonce never repeats under a key. The
//! grant id is the associated data: a sealed payload copied onto another row
//! does not open.

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::token::Token;

const INFO: &[u8] = b"tessera/v1 payload key";

fn cipher(token: &Token) -> ChaCha20Poly1305 {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, token.expose().as_bytes())
        .expand(INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    ChaCha20Poly1305::new_from_slice(&key).expect("ChaCha20-Poly1305 takes a 32-byte key")
}

/// Encrypts `payload`; an empty payload stays empty (nothing to hide).
pub fn seal(token: &Token, grant_id: &str, payload: &[u8]) -> Vec<u8> {
    if payload.is_empty() {
        return Vec::new();
    }
    cipher(token)
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: payload,
                aad: grant_id.as_bytes(),
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any payload under 256 GiB")
}

/// The corrupt-or-tampered case: the stored bytes do not open under this token.
#[derive(Debug, thiserror::Error)]
#[error("sealed payload does not open under the presented token")]
pub struct Unsealable;

pub fn open(token: &Token, grant_id: &str, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
    if sealed.is_empty() {
        return Ok(Vec::new());
    }
    cipher(token)
        .decrypt(
            &Nonce::default(),
            Payload {
                msg: sealed,
                aad: grant_id.as_bytes(),
            },
        )
        .map_err(|_| Unsealable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let token = Token::generate();
        let sealed = seal(&token, "grt_a", b"secret-id-42");
        assert!(!sealed.windows(12).any(|w| w == b"secret-id-42"));
        assert_eq!(open(&token, "grt_a", &sealed).unwrap(), b"secret-id-42");
        assert!(open(&Token::generate(), "grt_a", &sealed).is_err());
        assert!(open(&token, "grt_b", &sealed).is_err());
        assert!(seal(&token, "grt_a", b"").is_empty());
        assert!(open(&token, "grt_a", b"").unwrap().is_empty());
    }
}
