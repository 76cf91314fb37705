//! `Debug` for the wire messages that carry a token or a payload (build.rs
//! turns off their derived `Debug`): every other field prints, secrets don't.

use std::fmt;

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
            .finish()
    }
}

impl fmt::Debug for pb::MintResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintResponse")
            .field("token", &REDACTED)
            .field("grant", &self.grant)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_in_debug() {
        let token = crate::token::Token::generate().into_plaintext();
        let payload = b"upstream-secret-id".to_vec();
        let printed = [
            format!(
                "{:?}",
                pb::MintRequest {
                    payload: payload.clone(),
                    subject: "u".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::MintResponse {
                    token: token.clone(),
                    grant: None,
                    revision: String::new(),
                }
            ),
            format!(
                "{:?}",
                pb::ValidateRequest {
                    token: token.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::ClaimRequest {
                    token: token.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::ClaimResponse {
                    payload: payload.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::RevokeRequest {
                    target: Some(pb::revoke_request::Target::Token(token.clone())),
                    reason: 1
                }
            ),
            format!(
                "{:?}",
                pb::RotateRequest {
                    target: Some(pb::rotate_request::Target::Token(token.clone())),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::RotateResponse {
                    token: token.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::DelegateRequest {
                    parent_token: token.clone(),
                    payload: payload.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::DelegateResponse {
                    token: token.clone(),
                    grant: None,
                }
            ),
        ];
        for line in printed {
            assert!(!line.contains(&token[4..]), "{line}");
            assert!(!line.contains("upstream-secret-id"), "{line}");
            assert!(!line.contains("117, 112, 115"), "{line}"); // payload as a byte list
        }
    }
}
