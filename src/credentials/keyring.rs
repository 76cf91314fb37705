//! Sealing credentials at rest under the server's keys.
//!
//! The `--seal-key` file holds one key per line, `KEYID:64hexdigits`. The
//! first line's key seals every write; the others only open rows sealed
//! before it took over, which is how a key is rotated: add the new key as a
//! second line everywhere, move it to the first line, run `tessera rekey`,
//! then drop the old line. Each row keeps the id of the key that sealed it.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per write (random nonces
//! that never collide in practice, however many writes a key sees). The
//! associated data binds the ciphertext to its row — client, bearer, name
//! and version — so a sealed secret copied onto another row, or an older
//! version put back, does not open.

use std::{collections::HashMap, fmt, path::Path};

use anyhow::{Context, bail};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};

use super::{Secret, Slot};
use crate::store::credentials::Sealed;

/// Format of the sealed bytes: `1 || nonce (24) || ciphertext`.
const FORMAT: u8 = 1;
const NONCE: usize = 24;
const DOMAIN: &[u8] = b"tessera/v1 credential";
/// Associated data of a key-check value (see [`Keyring::seal_check`]).
const CHECK_DOMAIN: &[u8] = b"tessera/v1 seal key check";
/// What a key-check value seals: fixed, since only the key matters.
const CHECK: &[u8] = b"this database's key under this id";
/// Bytes in a key id.
const MAX_KEY_ID: usize = 32;

/// The keys of the `--seal-key` file. `Debug` shows key ids only.
pub struct Keyring {
    current: String,
    keys: HashMap<String, XChaCha20Poly1305>,
    order: Vec<String>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("key_ids", &self.order)
            .finish()
    }
}

/// A sealed secret that does not open: the wrong key, or tampered bytes.
#[derive(Debug, thiserror::Error)]
pub enum Unsealable {
    #[error("sealed under key id {0:?}, which the --seal-key file does not hold")]
    UnknownKey(String),
    #[error("sealed credential does not open under key id {0:?} (tampered or moved)")]
    Corrupt(String),
}

impl Keyring {
    /// Reads the `--seal-key` file. Errors name the line, never its content.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        warn_if_shared(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the --seal-key file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the --seal-key file {}", path.display()))
    }

    /// `KEYID:64hexdigits` per line; blank lines and `#` comments skipped.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        let mut order = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((id, hex_key)) = line.split_once(':') else {
                bail!("line {at}: expected KEYID:64hexdigits");
            };
            if id.is_empty()
                || id.len() > MAX_KEY_ID
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                bail!("line {at}: the key id must be 1 to {MAX_KEY_ID} of A-Z a-z 0-9 . _ -");
            }
            let mut key = [0u8; 32];
            if hex::decode_to_slice(hex_key.trim(), &mut key).is_err() {
                bail!("line {at}: the key must be 64 hex digits (32 bytes)");
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key");
            if keys.insert(id.to_owned(), cipher).is_some() {
                bail!("line {at}: key id {id:?} appears twice");
            }
            order.push(id.to_owned());
        }
        let Some(current) = order.first().cloned() else {
            bail!("no key: write one line KEYID:64hexdigits (e.g. `openssl rand -hex 32`)");
        };
        Ok(Self {
            current,
            keys,
            order,
        })
    }

    /// The id of the key that seals new writes.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Every key id of the file, the current one first.
    pub fn key_ids(&self) -> &[String] {
        &self.order
    }

    /// Seals `secret` for `slot` at `version` under the current key.
    pub fn seal(&self, slot: &Slot, version: u64, secret: &Secret) -> Sealed {
        let cipher = &self.keys[&self.current];
        Sealed {
            key_id: self.current.clone(),
            bytes: seal_bytes(cipher, &secret.encode(), &aad(slot, version)),
        }
    }

    /// Opens what [`Self::seal`] sealed for the same slot and version.
    pub fn open(&self, slot: &Slot, version: u64, sealed: &Sealed) -> Result<Secret, Unsealable> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| Unsealable::UnknownKey(sealed.key_id.clone()))?;
        let corrupt = || Unsealable::Corrupt(sealed.key_id.clone());
        let plaintext =
            open_bytes(cipher, &sealed.bytes, &aad(slot, version)).ok_or_else(corrupt)?;
        Secret::decode(&plaintext).ok_or_else(corrupt)
    }

    /// A key-check value for `key_id`: a fixed text sealed under that key
    /// and bound to its id. The database keeps the first one written for
    /// each id, and only the same key opens it: see
    /// [`crate::credentials::keycheck`]. `None` if the file lacks the id.
    pub fn seal_check(&self, key_id: &str) -> Option<Vec<u8>> {
        let cipher = self.keys.get(key_id)?;
        Some(seal_bytes(cipher, CHECK, &check_aad(key_id)))
    }

    /// Whether this file's key `key_id` opens `sealed` as that id's
    /// key-check value.
    pub fn opens_check(&self, key_id: &str, sealed: &[u8]) -> bool {
        self.keys.get(key_id).is_some_and(|cipher| {
            open_bytes(cipher, sealed, &check_aad(key_id)).is_some_and(|text| text == CHECK)
        })
    }
}

/// `FORMAT || nonce || ciphertext` of `msg` under `cipher`, bound to `aad`.
fn seal_bytes(cipher: &XChaCha20Poly1305, msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    crate::token::os_random(&mut nonce);
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encrypts any secret under 256 GiB");
    let mut bytes = Vec::with_capacity(1 + NONCE + ciphertext.len());
    bytes.push(FORMAT);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&ciphertext);
    bytes
}

/// What [`seal_bytes`] sealed, if `cipher` and `aad` are the ones it used.
fn open_bytes(cipher: &XChaCha20Poly1305, bytes: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let rest = match bytes.split_first() {
        Some((&FORMAT, rest)) if rest.len() >= NONCE => rest,
        _ => return None,
    };
    let (nonce, msg) = rest.split_at(NONCE);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, Payload { msg, aad }).ok()
}

fn check_aad(key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(CHECK_DOMAIN.len() + 8 + key_id.len());
    aad.extend_from_slice(CHECK_DOMAIN);
    aad.extend_from_slice(&(key_id.len() as u64).to_be_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// The row a ciphertext belongs to, each part length-prefixed so that no
/// two rows share associated data.
fn aad(slot: &Slot, version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + slot.bearer_id.len() + slot.name.len());
    aad.extend_from_slice(DOMAIN);
    for part in [&slot.client_id, &slot.bearer_id, &slot.name] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// The seal keys open every stored secret: a file that group or others
/// may read is worth a warning (as the SQLite file gets one), not a
/// refusal, since a container's mounted Secret may be group-readable by
/// design.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the --seal-key file may be read by group or others: chmod 600 it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(client: &str, bearer: &str, name: &str) -> Slot {
        Slot {
            client_id: client.into(),
            bearer_id: bearer.into(),
            name: name.into(),
        }
    }

    fn secret() -> Secret {
        Secret::parse(
            "secret",
            [("access_token".to_owned(), b"at-SECRET".to_vec())],
        )
        .unwrap()
    }

    const K1: &str = "k1:0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "k2:0202020202020202020202020202020202020202020202020202020202020202";

    #[test]
    fn seals_under_the_first_key_and_opens_under_any() {
        let old = Keyring::parse(K1).unwrap();
        let both = Keyring::parse(&format!("# rotated\n{K2}\n\n{K1}\n")).unwrap();
        assert_eq!(both.current(), "k2");
        let s = slot("c", "b", "n");
        let sealed = old.seal(&s, 1, &secret());
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.bytes.windows(9).any(|w| w == b"at-SECRET"));
        assert_eq!(both.open(&s, 1, &sealed).unwrap(), secret());
        let resealed = both.seal(&s, 1, &secret());
        assert_eq!(resealed.key_id, "k2");
        assert!(matches!(
            old.open(&s, 1, &resealed),
            Err(Unsealable::UnknownKey(id)) if id == "k2"
        ));
        // A fresh nonce per write.
        assert_ne!(both.seal(&s, 1, &secret()).bytes, resealed.bytes);
    }

    #[test]
    fn a_sealed_secret_opens_only_on_its_own_row_and_version() {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal(&slot("c", "b", "n"), 3, &secret());
        for (other, version) in [
            (slot("c", "b", "n"), 2),
            (slot("d", "b", "n"), 3),
            (slot("c", "x", "n"), 3),
            (slot("c", "b", "m"), 3),
            (slot("cb", "", "n"), 3),
        ] {
            assert!(ring.open(&other, version, &sealed).is_err(), "{other:?}");
        }
        let mut tampered = sealed.clone();
        *tampered.bytes.last_mut().unwrap() ^= 1;
        assert!(ring.open(&slot("c", "b", "n"), 3, &tampered).is_err());
    }

    #[test]
    fn a_key_check_opens_only_under_the_same_key_and_id() {
        let ring = Keyring::parse(&format!("{K1}\n{K2}")).unwrap();
        assert_eq!(ring.key_ids(), ["k1", "k2"]);
        let check = ring.seal_check("k1").unwrap();
        assert!(ring.opens_check("k1", &check));
        assert!(!ring.opens_check("k2", &check), "bound to its id");
        let impostor = Keyring::parse(&format!("k1:{}", "03".repeat(32))).unwrap();
        assert!(!impostor.opens_check("k1", &check), "another key under k1");
        assert!(!ring.opens_check("k1", &impostor.seal_check("k1").unwrap()));
        assert!(!ring.opens_check("k3", &check) && ring.seal_check("k3").is_none());
        let mut tampered = check.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(!ring.opens_check("k1", &tampered));
        // A credential's bytes are not a check value, nor the reverse.
        let sealed = ring.seal(&slot("c", "b", "n"), 1, &secret());
        assert!(!ring.opens_check("k1", &sealed.bytes));
    }

    #[test]
    fn bad_files_name_the_line_never_the_key() {
        let secret_hex = "ab".repeat(31);
        for (text, expected) in [
            (String::new(), "no key"),
            ("# only a comment".to_owned(), "no key"),
            (
                format!("k1:{secret_hex}"),
                "line 1: the key must be 64 hex digits",
            ),
            (
                format!("{K1}\nnocolon{secret_hex}"),
                "line 2: expected KEYID",
            ),
            (format!("bad id:{}", "00".repeat(32)), "line 1: the key id"),
            (format!("{K1}\n{K1}"), "line 2: key id \"k1\" appears twice"),
        ] {
            let err = Keyring::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains(&secret_hex[..16]), "{err}");
        }
        let printed = format!("{:?}", Keyring::parse(&format!("{K1}\n{K2}")).unwrap());
        assert!(
            printed.contains("k2") && !printed.contains("0101"),
            "{printed}"
        );
    }
}
