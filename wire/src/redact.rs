//! `Debug` for the wire messages that carry a token, a claim key, a payload
//! or a stored secret (build.rs turns off their derived `Debug`), written
//! once for the server and the client: every other field prints, secrets
//! don't (tokens and keys print as `<redacted>`, byte strings as their
//! length, secret parts as their names and lengths, a named credential as
//! whether there is one).

use std::{collections::HashMap, fmt};

use crate::pb;

const REDACTED: &str = "<redacted>";

struct Bytes(usize);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for pb::MintRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintRequest")
            .field("subject", &self.subject)
            .field("audience", &self.audience)
            .field("run_id", &self.run_id)
            .field("scopes", &self.scopes)
            .field("labels", &self.labels)
            .field("ttl", &self.ttl)
            .field("max_uses", &self.max_uses)
            .field("payload", &Bytes(self.payload.len()))
            .field("revoke_run_on_replay", &self.revoke_run_on_replay)
            .field(
                "payload_credential",
                &self.payload_credential.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl fmt::Debug for pb::MintResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintResponse")
            .field("token", &REDACTED)
            .field("grant", &self.grant)
            .field("revision", &self.revision)
            .finish()
    }
}

impl fmt::Debug for pb::ValidateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateRequest")
            .field("token", &REDACTED)
            .field("required_scopes", &self.required_scopes)
            .field("subject", &self.subject)
            .field("consistency", &self.consistency)
            .field("at_least_as_fresh", &self.at_least_as_fresh)
            .finish()
    }
}

impl fmt::Debug for pb::ClaimRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("token", &REDACTED)
            .field("required_scopes", &self.required_scopes)
            .field("subject", &self.subject)
            .field("claim_key", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for pb::ClaimResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimResponse")
            .field("claimed", &self.claimed)
            .field("denial", &self.denial)
            .field("grant", &self.grant)
            .field("payload", &Bytes(self.payload.len()))
            .field(
                "credential",
                &self
                    .credential
                    .iter()
                    .map(|(name, value)| (name, Bytes(value.len())))
                    .collect::<Vec<_>>(),
            )
            .field("credential_version", &self.credential_version)
            .finish()
    }
}

impl fmt::Debug for pb::RevokeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeRequest")
            .field("target", &self.target)
            .field("reason", &self.reason)
            .finish()
    }
}

impl fmt::Debug for pb::revoke_request::Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pb::revoke_request::Target;
        match self {
            Target::Token(_) => f.debug_tuple("Token").field(&REDACTED).finish(),
            Target::GrantId(id) => f.debug_tuple("GrantId").field(id).finish(),
            Target::RunId(id) => f.debug_tuple("RunId").field(id).finish(),
            Target::Subject(id) => f.debug_tuple("Subject").field(id).finish(),
        }
    }
}

impl fmt::Debug for pb::RotateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateRequest")
            .field("target", &self.target)
            .field("overlap", &self.overlap)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl fmt::Debug for pb::rotate_request::Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pb::rotate_request::Target;
        match self {
            Target::Token(_) => f.debug_tuple("Token").field(&REDACTED).finish(),
            Target::GrantId(id) => f.debug_tuple("GrantId").field(id).finish(),
        }
    }
}

impl fmt::Debug for pb::RotateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateResponse")
            .field("token", &REDACTED)
            .field("grant", &self.grant)
            .field("previous", &self.previous)
            .finish()
    }
}

impl fmt::Debug for pb::DelegateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelegateRequest")
            .field("parent_token", &REDACTED)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("max_uses", &self.max_uses)
            .field("labels", &self.labels)
            .field("payload", &Bytes(self.payload.len()))
            .finish()
    }
}

impl fmt::Debug for pb::DelegateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelegateResponse")
            .field("token", &REDACTED)
            .field("grant", &self.grant)
            .finish()
    }
}

/// A secret's part names, each with its length.
struct Parts<'a>(&'a HashMap<String, Vec<u8>>);

impl fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<_> = self.0.iter().collect();
        parts.sort();
        f.debug_map()
            .entries(
                parts
                    .into_iter()
                    .map(|(name, value)| (name, Bytes(value.len()))),
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

    const TOKEN: &str = "tsr_TOKENTOKENTOKENTOKENTOKENTOKEN";
    const CLAIM_KEY: &str = "CLAIMKEYCLAIMKEY";
    const PAYLOAD: &[u8] = b"PAYLOAD-upstream-secret-id";
    const PART: &[u8] = b"rt-UPSTREAM-SECRET";
    const BEARER: &str = "BEARER-OF-THE-CREDENTIAL";

    fn parts() -> HashMap<String, Vec<u8>> {
        [("refresh_token".to_owned(), PART.to_vec())].into()
    }

    /// Every message that build.rs lists, each with every secret field set.
    fn printed() -> Vec<String> {
        let credential = pb::CredentialRef {
            bearer_id: BEARER.into(),
            name: "github".into(),
        };
        vec![
            format!(
                "{:?}",
                pb::MintRequest {
                    subject: "user-42".into(),
                    payload: PAYLOAD.to_vec(),
                    payload_credential: Some(credential),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::MintResponse {
                    token: TOKEN.into(),
                    grant: None,
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::ValidateRequest {
                    token: TOKEN.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::ClaimRequest {
                    token: TOKEN.into(),
                    claim_key: CLAIM_KEY.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::ClaimResponse {
                    payload: PAYLOAD.to_vec(),
                    credential: parts(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::RevokeRequest {
                    target: Some(pb::revoke_request::Target::Token(TOKEN.into())),
                    reason: 1
                }
            ),
            format!(
                "{:?}",
                pb::RotateRequest {
                    target: Some(pb::rotate_request::Target::Token(TOKEN.into())),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::RotateResponse {
                    token: TOKEN.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::DelegateRequest {
                    parent_token: TOKEN.into(),
                    payload: PAYLOAD.to_vec(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::DelegateResponse {
                    token: TOKEN.into(),
                    grant: None
                }
            ),
            format!(
                "{:?}",
                pb::PutRequest {
                    bearer_id: "b".into(),
                    secret: parts(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::GetResponse {
                    secret: parts(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::CompleteRefreshRequest {
                    secret: parts(),
                    ..Default::default()
                }
            ),
        ]
    }

    #[test]
    fn no_secret_in_debug() {
        let printed = printed();
        // One line per message build.rs hands to this file (the two oneof
        // targets print inside their requests).
        assert_eq!(printed.len(), 13);
        for line in printed {
            for secret in ["TOKEN", "CLAIMKEY", "PAYLOAD", "UPSTREAM", BEARER] {
                assert!(!line.contains(secret), "{secret} in {line}");
            }
            // Byte strings never print as byte lists either.
            assert!(!line.contains("80, 65, 89"), "{line}");
            assert!(!line.contains("114, 116, 45"), "{line}");
        }
    }

    #[test]
    fn the_rest_prints() {
        let printed = printed();
        assert!(printed[0].contains("user-42"), "{}", printed[0]);
        assert!(
            printed[0].contains("payload_credential: Some(\"<redacted>\")"),
            "{}",
            printed[0]
        );
        assert!(printed[0].contains("<26 bytes>"), "{}", printed[0]);
        for line in &printed[10..] {
            assert!(line.contains("refresh_token"), "{line}");
            assert!(line.contains("<18 bytes>"), "{line}");
        }
    }
}
