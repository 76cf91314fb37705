//! A credential's secret: named parts (`access_token`, `refresh_token`…)
//! of bytes. It never prints, and is encoded for sealing in a fixed,
//! self-delimiting form.

use std::{collections::BTreeMap, fmt};

use crate::input::{InvalidInput, Result};

/// Parts in one secret.
pub const MAX_PARTS: usize = 32;
/// Bytes in a part's name.
pub const MAX_PART_NAME: usize = 64;
/// Bytes in one part's value.
pub const MAX_PART: usize = 64 * 1024;
/// Bytes in all values together (the request itself is at most 1 MiB).
pub const MAX_SECRET: usize = 256 * 1024;

/// The parts of a secret, by name. `Debug` shows the names and sizes only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(BTreeMap<String, Vec<u8>>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| (name, Size(value.len()))))
            .finish()
    }
}

/// A value's size in place of the value.
struct Size(usize);

impl fmt::Debug for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl Secret {
    /// Checks a secret as a caller sent it in `field`: 1 to 32 parts, each
    /// named by 1 to 64 bytes without control characters, each at most
    /// 64 KiB, all together at most 256 KiB. Errors name the part, never a
    /// value.
    pub fn parse(field: &str, parts: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<Self> {
        let parts: BTreeMap<String, Vec<u8>> = parts.into_iter().collect();
        if parts.is_empty() {
            return Err(InvalidInput::new(field, "must have at least one part"));
        }
        if parts.len() > MAX_PARTS {
            return Err(InvalidInput::new(
                field,
                format!("must have at most {MAX_PARTS} parts"),
            ));
        }
        let mut total = 0;
        for (name, value) in &parts {
            if name.is_empty() {
                return Err(InvalidInput::new(field, "part names must not be empty"));
            }
            if name.len() > MAX_PART_NAME
                || name
                    .chars()
                    .any(|c| c.is_control() || crate::input::is_invisible(c))
            {
                return Err(InvalidInput::new(
                    field,
                    format!(
                        "part names must be at most {MAX_PART_NAME} bytes, without control or \
                         invisible characters"
                    ),
                ));
            }
            let named = format!("{field}[{name}]");
            if value.len() > MAX_PART {
                return Err(InvalidInput::new(
                    named,
                    format!("must be at most {MAX_PART} bytes"),
                ));
            }
            total += value.len();
        }
        if total > MAX_SECRET {
            return Err(InvalidInput::new(
                field,
                format!("must be at most {MAX_SECRET} bytes in all"),
            ));
        }
        Ok(Self(parts))
    }

    pub fn parts(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.0
    }

    pub fn into_parts(self) -> BTreeMap<String, Vec<u8>> {
        self.0
    }

    /// `count, then (name length, name, value length, value)` per part,
    /// lengths as 4-byte big-endian, names in order.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let size = 4 + self
            .0
            .iter()
            .map(|(name, value)| 8 + name.len() + value.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&len(self.0.len()));
        for (name, value) in &self.0 {
            out.extend_from_slice(&len(name.len()));
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&len(value.len()));
            out.extend_from_slice(value);
        }
        out
    }

    /// The inverse of [`Self::encode`]; `None` for anything it did not write.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Self> {
        let count = take_len(&mut bytes)?;
        let mut parts = BTreeMap::new();
        for _ in 0..count {
            let n = take_len(&mut bytes)?;
            let name = String::from_utf8(take(&mut bytes, n)?.to_vec()).ok()?;
            let n = take_len(&mut bytes)?;
            let value = take(&mut bytes, n)?.to_vec();
            parts.insert(name, value);
        }
        (bytes.is_empty() && parts.len() == count).then_some(Self(parts))
    }
}

fn len(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("secrets are far smaller than 4 GiB")
        .to_be_bytes()
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Some(head)
}

fn take_len(bytes: &mut &[u8]) -> Option<usize> {
    let head: [u8; 4] = take(bytes, 4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(head)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(parts: &[(&str, &[u8])]) -> Result<Secret> {
        Secret::parse(
            "secret",
            parts.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())),
        )
    }

    #[test]
    fn round_trips_and_never_prints() {
        let s = secret(&[("access_token", b"at-SECRET"), ("refresh_token", b"")]).unwrap();
        assert_eq!(Secret::decode(&s.encode()), Some(s.clone()));
        let printed = format!("{s:?}");
        assert!(printed.contains("access_token") && printed.contains("<9 bytes>"));
        assert!(!printed.contains("at-SECRET"), "{printed}");
        assert_eq!(Secret::decode(&s.encode()[..10]), None);
        let mut longer = s.encode();
        longer.push(0);
        assert_eq!(Secret::decode(&longer), None);
    }

    #[test]
    fn limits_name_the_field() {
        let big = vec![0u8; MAX_PART + 1];
        for (parts, expected) in [
            (vec![], "secret: must have at least one part"),
            (
                vec![("", &b"x"[..])],
                "secret: part names must not be empty",
            ),
            (vec![("a\nb", &b"x"[..])], "secret: part names"),
            (
                vec![("a", &big[..])],
                "secret[a]: must be at most 65536 bytes",
            ),
        ] {
            let err = secret(&parts).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
        let many: Vec<(String, Vec<u8>)> = (0..33).map(|i| (i.to_string(), vec![])).collect();
        assert!(Secret::parse("secret", many).is_err());
        let heavy: Vec<(String, Vec<u8>)> =
            (0..5).map(|i| (i.to_string(), vec![0; MAX_PART])).collect();
        let err = Secret::parse("secret", heavy).unwrap_err().to_string();
        assert!(err.contains("in all"), "{err}");
    }
}
