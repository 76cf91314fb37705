//! Values that must never be printed: tokens, client keys, payloads and
//! stored secrets. Their `Debug` says what they are, never what they hold.

use std::fmt;

/// A Tessera token (`tsr_…`). `Debug` prints `Token(<redacted>)`; the
/// plaintext is reachable only through [`Token::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// Wraps a token received from elsewhere (an `Authorization` header, an
    /// agent's environment). Nothing is checked here: Tessera judges it.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The plaintext token, to hand to whoever must present it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The plaintext token, consuming the wrapper.
    pub fn into_plaintext(self) -> String {
        self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl From<String> for Token {
    fn from(token: String) -> Self {
        Self(token)
    }
}

impl From<&str> for Token {
    fn from(token: &str) -> Self {
        Self(token.to_owned())
    }
}

impl From<&Token> for Token {
    fn from(token: &Token) -> Self {
        token.clone()
    }
}

/// Secret bytes (a claim's payload, a part of a stored credential).
/// `Debug` prints only their length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes themselves.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.0.len())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// A Tessera client key (`tsk_…`), sent as `authorization: Bearer <key>`.
#[derive(Clone)]
pub(crate) struct ClientKey(pub(crate) String);

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_secret() {
        let token = Token::new("tsr_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ");
        let printed = format!("{token:?} {:?}", SecretBytes::new(b"upstream".to_vec()));
        assert!(!printed.contains("0123456789"), "{printed}");
        assert!(
            !printed.contains("upstream") && !printed.contains("117"),
            "{printed}"
        );
        let key = format!("{:?}", ClientKey("tsk_secret".into()));
        assert!(!key.contains("secret"), "{key}");
    }
}
