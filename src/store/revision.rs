//! Revisions: how far the database had got when a write was acknowledged,
//! so that a later read can ask to be at least that fresh (SpiceDB's
//! ZedTokens are the model).
//!
//! On PostgreSQL a revision is a WAL position (an LSN) read from the
//! primary after the write committed: a standby that has replayed past it
//! has the write. Positions only grow, through a failover too (a promoted
//! standby carries on from where it was). On the wire it is an opaque
//! string; SQLite has no standbys and returns none.

use std::{fmt, str::FromStr};

/// A WAL position, `HIGH/LOW` in hexadecimal as PostgreSQL writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Revision(u64);

impl FromStr for Revision {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const BAD: &str = "must be a revision as Mint or Revoke returned it";
        let (high, low) = text.split_once('/').ok_or(BAD)?;
        let part = |hex: &str| match hex.len() {
            1..=8 if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).map_err(|_| BAD)
            }
            _ => Err(BAD),
        };
        Ok(Self((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_read_and_print_as_postgresql_does() {
        for text in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let revision: Revision = text.parse().unwrap();
            assert_eq!(revision.to_string(), text);
        }
        let earlier: Revision = "16/B374D848".parse().unwrap();
        let later: Revision = "17/0".parse().unwrap();
        assert!(earlier < later);
        assert_eq!("0/a".parse::<Revision>().unwrap().to_string(), "0/A");
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "16",
            "/1",
            "1/",
            "1/2/3",
            "G/1",
            "123456789/0",
            "+1/0",
            "-1/0",
            " 1/0",
        ] {
            assert!(text.parse::<Revision>().is_err(), "{text:?}");
        }
    }
}
