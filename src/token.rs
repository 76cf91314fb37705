//! Secrets and handles: tokens, client keys and grant ids.
//!
//! A token is `tsr_` + 43 base62 characters carrying 32 bytes from the OS
//! CSPRNG + a 6-character base62 CRC32 of everything before it. The prefix
//! and checksum let secret scanners find leaked tokens and let Tessera reject
//! typos and garbage without touching the database. Only the SHA-256 of a
//! token is ever stored; lookups go by that hash, so no comparison of the
//! secret itself can exit early on a matching prefix.
//!
//! Client keys have the same shape with the prefix `tsk_`. Grant ids
//! (`grt_` + 22 base62 characters) are public: 48 bits of milliseconds then
//! 80 random bits, so that ordering by id is ordering by mint time.

use std::fmt;

use rand::{TryRng, rngs::SysRng};
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43; // 62^43 > 2^256
const CHECKSUM_CHARS: usize = 6; // 62^6 > 2^32
const PREFIX_LEN: usize = 4;

/// Length of every token and client key.
pub const SECRET_LEN: usize = PREFIX_LEN + SECRET_CHARS + CHECKSUM_CHARS;
/// Characters of a token shown in a grant (`token_hint`).
pub const HINT_LEN: usize = 8;

/// 62^5, the largest power of 62 below 2^32: each pass of the long
/// division takes five digits at once.
const BASE62_CHUNK: u64 = 62u64.pow(5);

/// Encodes a big-endian number of at most 32 bytes as exactly `width`
/// base62 digits (its lowest `width` digits, most significant first).
///
/// Long division by 62^5 over 32-bit limbs: every mint encodes a token, a
/// grant id and a checksum, and every parse a checksum; dividing a byte at
/// a time by 62 cost a Mint about 25 000 instructions (bench/count.py).
fn base62(bytes: &[u8], width: usize, out: &mut String) {
    assert!(
        bytes.len() <= 32 && width <= 64,
        "base62 of at most 32 bytes"
    );
    // The number as big-endian 32-bit limbs, zero-padded on the left.
    let mut limbs = [0u32; 8];
    let first = limbs.len() - bytes.len().div_ceil(4);
    let mut padded = [0u8; 32];
    padded[32 - bytes.len()..].copy_from_slice(bytes);
    for (limb, chunk) in limbs.iter_mut().zip(padded.chunks_exact(4)) {
        *limb = u32::from_be_bytes(chunk.try_into().expect("four bytes"));
    }
    let mut digits = [0u8; 64];
    let mut filled = 0;
    while filled < width {
        let mut rem = 0u64;
        for limb in &mut limbs[first..] {
            let acc = (rem << 32) | u64::from(*limb);
            *limb = (acc / BASE62_CHUNK) as u32;
            rem = acc % BASE62_CHUNK;
        }
        for _ in 0..5 {
            if filled == width {
                break;
            }
            digits[width - 1 - filled] = ALPHABET[(rem % 62) as usize];
            rem /= 62;
            filled += 1;
        }
    }
    out.push_str(std::str::from_utf8(&digits[..width]).expect("the alphabet is ASCII"));
}

fn checksum(text: &str) -> String {
    let mut out = String::with_capacity(CHECKSUM_CHARS);
    base62(
        &crc32fast::hash(text.as_bytes()).to_be_bytes(),
        CHECKSUM_CHARS,
        &mut out,
    );
    out
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// Failing to get entropy is not recoverable for a token authority: minting
/// a guessable token would be worse than stopping.
pub fn os_random(buf: &mut [u8]) {
    SysRng
        .try_fill_bytes(buf)
        .expect("the operating system's random number generator failed");
}

fn generate_secret(prefix: &str) -> String {
    debug_assert_eq!(prefix.len(), PREFIX_LEN);
    let mut bytes = [0u8; SECRET_BYTES];
    os_random(&mut bytes);
    let mut text = String::with_capacity(SECRET_LEN);
    text.push_str(prefix);
    base62(&bytes, SECRET_CHARS, &mut text);
    let sum = checksum(&text);
    text.push_str(&sum);
    text
}

fn well_formed_secret(prefix: &str, text: &str) -> bool {
    text.len() == SECRET_LEN
        && text.starts_with(prefix)
        && text[PREFIX_LEN..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        && checksum(&text[..SECRET_LEN - CHECKSUM_CHARS]) == text[SECRET_LEN - CHECKSUM_CHARS..]
}

/// A presented string that is not a Tessera token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A bearer token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub const PREFIX: &'static str = "tsr_";

    pub fn generate() -> Self {
        Self(generate_secret(Self::PREFIX))
    }

    /// Checks prefix, length, alphabet and checksum; touches no database.
    pub fn parse(text: &str) -> Result<Self, Malformed> {
        if well_formed_secret(Self::PREFIX, text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(Malformed)
        }
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    pub fn hint(&self) -> &str {
        &self.0[..HINT_LEN]
    }

    /// The plaintext, for the one response that hands it to the minting caller.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_plaintext(self) -> String {
        self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a token: what the database stores and looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// A client's API key, as `tessera client-key` prints it.
pub struct ClientKey(String);

impl ClientKey {
    pub const PREFIX: &'static str = "tsk_";

    pub fn generate() -> Self {
        Self(generate_secret(Self::PREFIX))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256, the form the clients file holds.
    pub fn sha256_hex(&self) -> String {
        hex::encode(key_digest(&self.0))
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

/// SHA-256 of a presented client key, the form clients are looked up by.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Public handle of a grant: `grt_` + 22 base62 characters, time-ordered.
pub struct GrantId;

impl GrantId {
    pub const PREFIX: &'static str = "grt_";
    pub const LEN: usize = PREFIX_LEN + 22;

    pub fn generate(unix_millis: u64) -> String {
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&unix_millis.to_be_bytes()[2..]);
        os_random(&mut bytes[6..]);
        let mut id = String::with_capacity(Self::LEN);
        id.push_str(Self::PREFIX);
        base62(&bytes, 22, &mut id);
        id
    }

    pub fn is_well_formed(text: &str) -> bool {
        text.len() == Self::LEN
            && text.starts_with(Self::PREFIX)
            && text[PREFIX_LEN..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.expose().len(), SECRET_LEN);
        assert!(a.expose().starts_with("tsr_"));
        assert_ne!(a, b);
        assert_eq!(Token::parse(a.expose()), Ok(a.clone()));
        assert_eq!(a.hint(), &a.expose()[..8]);
    }

    #[test]
    fn any_single_character_change_is_malformed() {
        let token = Token::generate();
        let text = token.expose();
        for i in PREFIX_LEN..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(Token::parse(&changed), Err(Malformed), "position {i}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let good = Token::generate();
        let text = good.expose();
        for bad in [
            "",
            "tsr_",
            &text[..text.len() - 1],
            &format!("{text}x"),
            &text.replacen("tsr_", "tsk_", 1),
            &text.replacen("tsr_", "TSR_", 1),
            &format!("tsr_{}", "é".repeat(24)),
        ] {
            assert_eq!(Token::parse(bad), Err(Malformed), "{bad:?}");
        }
        // A client key is not a token, even though it is well formed.
        assert_eq!(Token::parse(ClientKey::generate().expose()), Err(Malformed));
    }

    #[test]
    fn base62_is_fixed_width_and_order_preserving() {
        let mut zero = String::new();
        base62(&[0; 32], 43, &mut zero);
        assert_eq!(zero, "0".repeat(43));
        let mut max = String::new();
        base62(&[0xff; 32], 43, &mut max);
        assert_eq!(max.len(), 43);
        let mut small = String::new();
        base62(&[0, 0, 0, 61], 6, &mut small);
        assert_eq!(small, "00000z");
        let mut big = String::new();
        base62(&[0, 0, 0, 62], 6, &mut big);
        assert_eq!(big, "000010");
        assert!(small < big);
    }

    /// The encoding tokens, keys and grant ids were first minted with, one
    /// digit per pass: every string it ever produced must come out the same.
    fn base62_by_digit(bytes: &[u8], width: usize) -> String {
        let mut num = bytes.to_vec();
        let mut digits = vec![0u8; width];
        for slot in digits.iter_mut().rev() {
            let mut rem = 0u32;
            for byte in num.iter_mut() {
                let acc = (rem << 8) | u32::from(*byte);
                *byte = (acc / 62) as u8;
                rem = acc % 62;
            }
            *slot = ALPHABET[rem as usize];
        }
        String::from_utf8(digits).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn base62_matches_the_digit_by_digit_encoding(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..=32),
            width in 0usize..=48,
        ) {
            let mut fast = String::new();
            base62(&bytes, width, &mut fast);
            proptest::prop_assert_eq!(fast, base62_by_digit(&bytes, width));
        }
    }

    #[test]
    fn base62_matches_at_the_edges() {
        for (bytes, width) in [
            (&[0xff; 32][..], 43),
            (&[0xff; 16][..], 22),
            (&[0xff; 4][..], 6),
            (&[0xff; 4][..], 3),
            (&[1, 2, 3][..], 5),
            (&[][..], 4),
        ] {
            let mut fast = String::new();
            base62(bytes, width, &mut fast);
            assert_eq!(fast, base62_by_digit(bytes, width), "{bytes:?} {width}");
        }
    }

    #[test]
    fn grant_ids_sort_by_time() {
        let early = GrantId::generate(1_700_000_000_000);
        let late = GrantId::generate(1_700_000_000_001);
        assert!(early < late);
        assert!(GrantId::is_well_formed(&early));
        assert!(!GrantId::is_well_formed("grt_short"));
        assert!(!GrantId::is_well_formed(&early.replacen("grt_", "tsr_", 1)));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let token = Token::generate();
        let key = ClientKey::generate();
        for printed in [
            format!("{token:?}"),
            format!("{:?}", token.hash()),
            format!("{key:?}"),
        ] {
            assert!(!printed.contains(&token.expose()[4..]));
            assert!(!printed.contains(&key.expose()[4..]));
        }
    }
}
