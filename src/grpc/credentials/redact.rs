//! `Debug` for the `Credentials` messages that carry a secret (build.rs
//! turns off their derived `Debug`): part names and sizes print, values
//! don't.

use std::{collections::HashMap, fmt};

use crate::{credentials::secret::Size, pb};

/// A secret's part names, each with its size.
struct Parts<'a>(&'a HashMap<String, Vec<u8>>);

impl fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.0.iter().collect();
        names.sort();
        f.debug_map()
            .entries(
                names
                    .into_iter()
                    .map(|(name, value)| (name, Size(value.len()))),
            )
            .finish()
    }
}

impl fmt::Debug for pb::PutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutRequest")
            .field("bearer_id", &self.bearer_id)
            .field("name", &self.name)
            .field("secret", &Parts(&self.secret))
            .field("expires_at", &self.expires_at)
            .field("if_version", &self.if_version)
            .finish()
    }
}

impl fmt::Debug for pb::GetResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResponse")
            .field("secret", &Parts(&self.secret))
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("refresh_due", &self.refresh_due)
            .finish()
    }
}

impl fmt::Debug for pb::CompleteRefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompleteRefreshRequest")
            .field("lease_id", &self.lease_id)
            .field("secret", &Parts(&self.secret))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_in_debug() {
        let secret: HashMap<String, Vec<u8>> =
            [("refresh_token".to_owned(), b"rt-UPSTREAM-SECRET".to_vec())].into();
        let printed = [
            format!(
                "{:?}",
                pb::PutRequest {
                    bearer_id: "b".into(),
                    secret: secret.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::GetResponse {
                    secret: secret.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::CompleteRefreshRequest {
                    secret,
                    ..Default::default()
                }
            ),
        ];
        for line in printed {
            assert!(line.contains("refresh_token"), "{line}");
            assert!(line.contains("<18 bytes>"), "{line}");
            assert!(!line.contains("UPSTREAM"), "{line}");
            assert!(!line.contains("114, 116, 45"), "{line}"); // as a byte list
        }
    }
}
