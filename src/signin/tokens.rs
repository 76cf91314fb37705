//! `/oauth2/token`'s sign-in grants: an authorization code (single use;
//! its replay revokes what it gave) and a refresh token (single use,
//! replaced at each use; a replay revokes the whole family). Access and
//! refresh tokens are ordinary grants: a family is one run id, so
//! revoking a run, a subject or a client ends them like any other.

use std::collections::BTreeMap;

use super::{
    REFRESH_AUDIENCE, Signin,
    clients::{ClientAuth, OAuthClient, secret_hash},
    digest_hex,
    flow::constant_time_eq,
    now_us, s256,
    store::{self, Redeemed},
};
use crate::{
    authority::{Check, Claimed, MintSpec, Target, Validated},
    clients::{Caller, Role},
    grant::{Grant, RevokeReason},
    store::Store,
};

/// The label that carries a refresh grant's resource.
const RESOURCE_LABEL: &str = "resource";

/// How the client proved itself at the token endpoint.
pub struct ClientProof {
    pub client_id: String,
    /// The secret, and whether it came by Basic (else in the form).
    pub secret: Option<(String, bool)>,
}

/// Tokens for the client.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
}

/// RFC 6749 5.2's answers. `InvalidGrant` is one answer for every code or
/// refresh token that does not serve, whatever the reason.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    #[error("the grant is invalid, expired, used, revoked, or was issued to another client")]
    InvalidGrant,
    #[error("{0}")]
    InvalidScope(&'static str),
    #[error("{0}")]
    InvalidTarget(&'static str),
    #[error("the server failed")]
    Server(#[from] crate::authority::Error),
    #[error("the server failed")]
    Database(#[from] sqlx::Error),
}

impl<S: Store> Signin<S> {
    /// The client, authenticated as it registered (public: its id only).
    async fn client(&self, proof: &ClientProof) -> Result<std::sync::Arc<OAuthClient>, TokenError> {
        let basic = proof.secret.as_ref().is_some_and(|(_, basic)| *basic);
        let client = self
            .registry
            .resolve(&self.db, &proof.client_id)
            .await
            .map_err(|_| TokenError::InvalidClient { basic })?;
        match (&client.auth, &proof.secret) {
            (ClientAuth::None, None) => Ok(client),
            (ClientAuth::Secret { hash, .. }, Some((secret, _)))
                if constant_time_eq(secret_hash(secret).as_bytes(), hash.as_bytes()) =>
            {
                Ok(client)
            }
            _ => Err(TokenError::InvalidClient { basic }),
        }
    }

    /// `grant_type=authorization_code`.
    pub async fn redeem(
        &self,
        proof: ClientProof,
        code: &str,
        verifier: &str,
        redirect_uri: Option<&str>,
        resource: Option<&str>,
    ) -> Result<Issued, TokenError> {
        let client = self.client(&proof).await?;
        if code.is_empty() || code.len() > 128 {
            return Err(TokenError::InvalidRequest(
                "code: is required (at most 128 bytes)".into(),
            ));
        }
        // RFC 7636 4.1: 43 to 128 unreserved characters.
        if !(43..=128).contains(&verifier.len())
            || !verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(TokenError::InvalidRequest(
                "code_verifier: is required: 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636)"
                    .into(),
            ));
        }
        let now = now_us();
        let code = match store::redeem_code(&self.db, &digest_hex(code), now).await? {
            Redeemed::First(code) => code,
            Redeemed::Replayed { client_id, family } => {
                // RFC 6749 4.1.2: a code used twice revokes what it gave.
                let revoked = self.revoke_replayed(client_id, family).await?;
                tracing::warn!(
                    event = "code_replay",
                    revoked,
                    "an authorization code was presented again; its tokens are revoked"
                );
                return Err(TokenError::InvalidGrant);
            }
            Redeemed::Unknown => return Err(TokenError::InvalidGrant),
        };
        let verified = code.expires_at > now
            && code.client_id == client.client_id
            && redirect_uri.is_none_or(|uri| uri == code.redirect_uri)
            && constant_time_eq(s256(verifier).as_bytes(), code.code_challenge.as_bytes());
        if !verified {
            return Err(TokenError::InvalidGrant);
        }
        if let Some(asked) = resource
            && crate::resource::canonical(asked).ok().as_deref() != Some(code.resource.as_str())
        {
            return Err(TokenError::InvalidTarget(
                "resource: must be the one the authorization named",
            ));
        }
        let scopes = code.scopes.clone();
        self.issue(
            &client.client_id,
            &code.subject,
            &code.family,
            &code.resource,
            scopes,
            code.scopes,
        )
        .await
    }

    /// `grant_type=refresh_token`: the presented token is spent and a new
    /// pair is issued in the same family.
    pub async fn refresh(
        &self,
        proof: ClientProof,
        refresh_token: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<Issued, TokenError> {
        let client = self.client(&proof).await?;
        if refresh_token.is_empty() || refresh_token.len() > crate::input::MAX_TOKEN {
            return Err(TokenError::InvalidRequest(
                "refresh_token: is required (at most 128 bytes)".into(),
            ));
        }
        let refresher = Caller::new(REFRESH_AUDIENCE, &[Role::Validate, Role::Claim]);
        let check = || {
            Check::new(refresh_token.to_owned(), Vec::new(), String::new(), false)
                .map_err(|err| TokenError::InvalidRequest(err.to_string()))
        };
        // Looked at before it is spent: another client's token is refused
        // without spending it. A spent one counts as a replay here, and
        // its run (the family) is revoked.
        let grant = match self.authority().validate(&refresher, check()?).await? {
            Validated::Valid(grant) => grant,
            Validated::Denied(_) => {
                self.revoke_family(refresh_token).await?;
                return Err(TokenError::InvalidGrant);
            }
        };
        if grant.issued_by != client.client_id {
            return Err(TokenError::InvalidGrant);
        }
        let bound = grant
            .labels
            .get(RESOURCE_LABEL)
            .cloned()
            .unwrap_or_default();
        if let Some(asked) = resource
            && crate::resource::canonical(asked).ok().as_deref() != Some(bound.as_str())
        {
            return Err(TokenError::InvalidTarget(
                "resource: must be the one the refresh token was issued for",
            ));
        }
        let scopes = match scope.map(|s| s.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>())
        {
            None => grant.scopes.clone(),
            Some(asked) if asked.is_empty() => grant.scopes.clone(),
            Some(asked) => {
                if asked.iter().any(|s| !grant.scopes.iter().any(|g| g == s)) {
                    return Err(TokenError::InvalidScope(
                        "scope: may only narrow the scopes first granted",
                    ));
                }
                asked.into_iter().map(str::to_owned).collect()
            }
        };
        let spent: Grant = match self.authority().claim(&refresher, check()?).await? {
            Claimed::Claimed { grant, .. } => grant,
            // Spent by a racing request since it was looked at: a reuse too.
            Claimed::Denied(_) => {
                self.revoke_family(refresh_token).await?;
                return Err(TokenError::InvalidGrant);
            }
        };
        // The new refresh token keeps the first grant's scopes, so a
        // narrowed access token does not narrow what may be asked later.
        self.issue(
            &client.client_id,
            &spent.subject,
            &spent.run_id,
            &bound,
            scopes,
            grant.scopes,
        )
        .await
    }

    /// A refresh token Tessera issued that no longer serves: if it is
    /// known, its whole family is revoked before the refusal is answered
    /// (the replay tripwire of `revoke_run_on_replay` does the same, after
    /// the answer). Every refused token pays the same one lookup.
    async fn revoke_family(&self, refresh_token: &str) -> Result<(), TokenError> {
        let hash = digest_hex(refresh_token);
        if let Some((client_id, family)) = store::refresh_family(&self.db, &hash).await? {
            let revoked = self.revoke_replayed(client_id, family).await?;
            tracing::warn!(
                event = "refresh_replay",
                revoked,
                "a spent refresh token was presented again; its family is revoked"
            );
        }
        Ok(())
    }

    /// Revokes a family whose code or refresh token was presented again:
    /// marked first, so that an exchange of the same family that mints
    /// after this revocation finds the mark and revokes what it minted
    /// ([`Self::issue`]). Returns how many grants were revoked.
    async fn revoke_replayed(&self, client_id: String, family: String) -> Result<u64, TokenError> {
        store::mark_family_revoked(&self.db, &family, now_us()).await?;
        let caller = Caller::new(client_id, &[Role::Revoke]);
        let (revoked, _) = self
            .authority()
            .revoke(&caller, Target::RunId(family), RevokeReason::Compromised)
            .await?;
        Ok(revoked)
    }

    /// An access token for the resource and a refresh token, in `family`.
    async fn issue(
        &self,
        client_id: &str,
        subject: &str,
        family: &str,
        resource: &str,
        scopes: Vec<String>,
        refresh_scopes: Vec<String>,
    ) -> Result<Issued, TokenError> {
        let caller = Caller::new(client_id.to_owned(), &[Role::Mint]);
        let (access_token, access, _) = self
            .authority()
            .mint(&caller, access_spec(subject, family, resource, scopes))
            .await?;
        let refresh = MintSpec {
            subject: subject.to_owned(),
            audience: vec![REFRESH_AUDIENCE.to_owned()],
            run_id: family.to_owned(),
            scopes: refresh_scopes,
            labels: BTreeMap::from([(RESOURCE_LABEL.to_owned(), resource.to_owned())]),
            ttl: Some(self.refresh_ttl),
            max_uses: 1,
            payload: Vec::new(),
            revoke_run_on_replay: true,
            payload_credential: None,
        };
        let (refresh_token, refresh, _) = self.authority().mint(&caller, refresh).await?;
        let refresh_token = refresh_token.into_plaintext();
        store::insert_refresh(
            &self.db,
            &digest_hex(&refresh_token),
            client_id,
            family,
            refresh.expires_at,
            now_us(),
        )
        .await?;
        // A replay of this family's code or refresh token may have revoked
        // the family while these were being minted: its mark is set before
        // its revocation, so either it saw these tokens or this sees it.
        if store::family_revoked(&self.db, family).await? {
            self.revoke_replayed(client_id.to_owned(), family.to_owned())
                .await?;
            return Err(TokenError::InvalidGrant);
        }
        Ok(Issued {
            access_token: access_token.into_plaintext(),
            refresh_token,
            expires_in: (access.expires_at - access.issued_at).max(0) / 1_000_000,
            scope: access.scopes.join(" "),
        })
    }
}

fn access_spec(subject: &str, family: &str, resource: &str, scopes: Vec<String>) -> MintSpec {
    MintSpec {
        subject: subject.to_owned(),
        audience: vec![resource.to_owned()],
        run_id: family.to_owned(),
        scopes,
        labels: BTreeMap::new(),
        ttl: None,
        max_uses: 0,
        payload: Vec::new(),
        revoke_run_on_replay: false,
        payload_credential: None,
    }
}
