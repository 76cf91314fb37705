//! The upstream OpenID Connect provider people sign in at: discovery, the
//! login redirect (PKCE S256 and a nonce), the code exchange, and the ID
//! token checked against the provider's JWKS. Keys rotate: a `kid` not in
//! the cached set fetches the set again (at most every [`JWKS_REFETCH`]).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::fetch::Fetcher;
use crate::input::MAX_ID;

/// How long discovery's answer is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Least time between two JWKS fetches caused by unknown key ids.
const JWKS_REFETCH: Duration = Duration::from_secs(10);
const MAX_UPSTREAM_BODY: usize = 256 * 1024;

/// Why a sign-in at the provider did not give a subject. Shown to the
/// person as is: nothing from the provider's answers is repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the identity provider cannot be reached or answered unexpectedly")]
    Unavailable,
    #[error("the identity provider's ID token did not verify")]
    BadIdToken,
    #[error("the identity provider's ID token lacks the subject claim")]
    NoSubject,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Tessera's client at the provider.
pub struct Upstream {
    issuer: String,
    client_id: String,
    /// Never printed (no `Debug` on [`Upstream`]).
    client_secret: String,
    subject_claim: String,
    /// Tessera's own callback: `<issuer>/oauth2/callback`.
    redirect_uri: String,
    fetcher: Fetcher,
    discovery: Mutex<Option<(Discovery, Instant)>>,
    jwks: Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    /// Keys without a `kid` (a provider with one key may omit it).
    anonymous: Vec<(Algorithm, DecodingKey)>,
    fetched: Option<Instant>,
}

impl Keys {
    /// The key `kid` names, if its algorithm is the header's: no RS256 key
    /// is used as an HS256 secret.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let found = match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => self.anonymous.iter().find(|(a, _)| *a == alg).cloned(),
        };
        found.filter(|(a, _)| *a == alg).map(|(_, key)| key)
    }
}

impl Upstream {
    pub fn new(
        issuer: String,
        client_id: String,
        client_secret: String,
        subject_claim: String,
        redirect_uri: String,
        fetcher: Fetcher,
    ) -> Self {
        Self {
            issuer,
            client_id,
            client_secret,
            subject_claim,
            redirect_uri,
            fetcher,
            discovery: Mutex::default(),
            jwks: Mutex::default(),
        }
    }

    async fn discovery(&self) -> Result<Discovery, UpstreamError> {
        if let Some((found, at)) = &*self.discovery.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(found.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let url = Url::parse(&url).map_err(|_| UpstreamError::Unavailable)?;
        let (_, body) = self
            .fetcher
            .get(&url, MAX_UPSTREAM_BODY)
            .await
            .map_err(|err| unavailable("discovery", &err))?;
        let found: Discovery = serde_json::from_slice(&body).map_err(|_| {
            tracing::warn!("the OIDC provider's discovery document lacks a required field");
            UpstreamError::Unavailable
        })?;
        // OpenID Connect Discovery 4.3: the issuer must be the one asked.
        if found.issuer != self.issuer {
            tracing::warn!("the OIDC provider's discovery names another issuer than --oidc-issuer");
            return Err(UpstreamError::Unavailable);
        }
        *self.discovery.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((found.clone(), Instant::now()));
        Ok(found)
    }

    /// Where to send the browser to sign in.
    pub async fn login_url(
        &self,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, UpstreamError> {
        let discovery = self.discovery().await?;
        let mut url = Url::parse(&discovery.authorization_endpoint)
            .map_err(|_| UpstreamError::Unavailable)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges the provider's code and returns the verified subject.
    pub async fn subject(
        &self,
        code: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<String, UpstreamError> {
        let discovery = self.discovery().await?;
        let url = Url::parse(&discovery.token_endpoint).map_err(|_| UpstreamError::Unavailable)?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", code_verifier),
        ];
        let (_, body) = self
            .fetcher
            .post_form(
                &url,
                (&self.client_id, &self.client_secret),
                &form,
                MAX_UPSTREAM_BODY,
            )
            .await
            .map_err(|err| unavailable("token", &err))?;
        let answer: Value =
            serde_json::from_slice(&body).map_err(|_| UpstreamError::Unavailable)?;
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or(UpstreamError::BadIdToken)?;
        let claims = self.verify(&discovery, id_token, nonce).await?;
        match claims.get(&self.subject_claim) {
            Some(Value::String(subject)) if !subject.is_empty() && subject.len() <= MAX_ID => {
                Ok(subject.clone())
            }
            _ => Err(UpstreamError::NoSubject),
        }
    }

    /// The ID token's claims, if its signature (a key of the provider's
    /// JWKS), issuer, audience, expiry and nonce are right.
    async fn verify(
        &self,
        discovery: &Discovery,
        id_token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, Value>, UpstreamError> {
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|_| UpstreamError::BadIdToken)?;
        let key = match self.key(header.kid.as_deref(), header.alg) {
            Some(key) => key,
            None => {
                self.refetch_keys(discovery).await?;
                self.key(header.kid.as_deref(), header.alg)
                    .ok_or(UpstreamError::BadIdToken)?
            }
        };
        check_id_token(
            id_token,
            &key,
            header.alg,
            &self.issuer,
            &self.client_id,
            nonce,
        )
    }

    fn key(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        self.jwks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .find(kid, alg)
    }

    async fn refetch_keys(&self, discovery: &Discovery) -> Result<(), UpstreamError> {
        {
            let keys = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
            if keys.fetched.is_some_and(|at| at.elapsed() < JWKS_REFETCH) {
                return Ok(());
            }
        }
        let url = Url::parse(&discovery.jwks_uri).map_err(|_| UpstreamError::Unavailable)?;
        let (_, body) = self
            .fetcher
            .get(&url, MAX_UPSTREAM_BODY)
            .await
            .map_err(|err| unavailable("jwks", &err))?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| UpstreamError::Unavailable)?;
        let fresh = signing_keys(&set);
        *self.jwks.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// The signature keys of a JWKS, by `kid`: shared-secret and encryption
/// keys are left out, and a key whose algorithm is not said is taken for
/// its family's usual one.
fn signing_keys(set: &JwkSet) -> Keys {
    let mut fresh = Keys {
        fetched: Some(Instant::now()),
        ..Keys::default()
    };
    for jwk in &set.keys {
        // Signature keys only; a key whose algorithm is not said is
        // taken for its family's usual one.
        if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = match jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse().ok())
        {
            Some(alg) => alg,
            None => match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => Algorithm::ES256,
                },
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                // Shared-secret keys have no place in a JWKS.
                _ => continue,
            },
        };
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            continue;
        }
        match &jwk.common.key_id {
            Some(kid) => {
                fresh.by_kid.insert(kid.clone(), (alg, key));
            }
            None => fresh.anonymous.push((alg, key)),
        }
    }
    fresh
}

/// An ID token's claims, if it verifies under `key` with `alg` and its
/// issuer, audience, expiry, nonce and `azp` are right (OIDC Core 3.1.3.7).
fn check_id_token(
    id_token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<serde_json::Map<String, Value>, UpstreamError> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(id_token, key, &validation)
        .map_err(|_| UpstreamError::BadIdToken)?;
    let claims = data.claims;
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(UpstreamError::BadIdToken);
    }
    if let Some(azp) = claims.get("azp")
        && azp.as_str() != Some(client_id)
    {
        return Err(UpstreamError::BadIdToken);
    }
    Ok(claims)
}

fn unavailable(what: &str, err: &super::fetch::FetchError) -> UpstreamError {
    tracing::warn!(step = what, error = %err, "the OIDC provider did not answer as expected");
    UpstreamError::Unavailable
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://idp.example.com";

    /// A P-256 key as a provider's JWKS lists it, and its signing half.
    fn provider_key(kid: &str) -> (Value, EncodingKey) {
        let pair = rcgen::KeyPair::generate().unwrap();
        let point = pair.public_key_raw();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        (jwk, EncodingKey::from_ec_der(&pair.serialize_der()))
    }

    fn id_token(key: &EncodingKey, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn claims(nonce: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"iss": ISSUER, "aud": "tessera", "sub": "alice", "nonce": nonce, "exp": now + 300, "iat": now})
    }

    fn check(
        keys: &Keys,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, Value>, UpstreamError> {
        let header = jsonwebtoken::decode_header(token).unwrap();
        let key = keys
            .find(header.kid.as_deref(), header.alg)
            .ok_or(UpstreamError::BadIdToken)?;
        check_id_token(token, &key, header.alg, ISSUER, "tessera", nonce)
    }

    #[test]
    fn id_tokens_verify_only_under_the_providers_keys_and_claims() {
        let (jwk, signer) = provider_key("k1");
        let keys = signing_keys(&serde_json::from_value(json!({"keys": [jwk]})).unwrap());
        let good = id_token(&signer, "k1", claims("n-1"));
        assert_eq!(check(&keys, &good, "n-1").unwrap()["sub"], "alice");
        // Another nonce, audience, issuer, an expired token, another azp.
        assert_eq!(check(&keys, &good, "n-2"), Err(UpstreamError::BadIdToken));
        for (field, value) in [
            ("aud", json!("someone-else")),
            ("iss", json!("https://evil.example")),
            ("exp", json!(1_000_000)),
            ("azp", json!("someone-else")),
        ] {
            let mut bad = claims("n-1");
            bad[field] = value;
            let token = id_token(&signer, "k1", bad);
            assert_eq!(
                check(&keys, &token, "n-1"),
                Err(UpstreamError::BadIdToken),
                "{field}"
            );
        }
        // A key the JWKS does not list (rotated in since): not found until refetched.
        let (_, rotated) = provider_key("k2");
        let token = id_token(&rotated, "k2", claims("n-1"));
        assert_eq!(check(&keys, &token, "n-1"), Err(UpstreamError::BadIdToken));
        // Signed by another key under a listed kid.
        let forged = id_token(&rotated, "k1", claims("n-1"));
        assert_eq!(check(&keys, &forged, "n-1"), Err(UpstreamError::BadIdToken));
        // HS256 under a listed kid: that key is ES256, never a shared secret.
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims("n-1"),
            &EncodingKey::from_secret(b"k1").unwrap(),
        )
        .unwrap();
        assert_eq!(check(&keys, &hs, "n-1"), Err(UpstreamError::BadIdToken));
    }
}
