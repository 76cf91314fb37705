//! Sign-in for MCP clients (issue 20): Tessera as the authorization server
//! of the authorization-code flow with PKCE that the MCP authorization
//! spec prescribes, with people signing in at an upstream OpenID Connect
//! provider.
//!
//! A flow: `/oauth2/authorize` checks the client ([`clients`]), its
//! redirect URI, PKCE and the resource ([`resources`]), stores a flow
//! ([`store`]) bound to the browser by a cookie, and sends the person to
//! the provider ([`upstream`]); the provider's callback names the subject;
//! consent is asked (or found remembered); a code goes back to the client,
//! which redeems it at `/oauth2/token` for an access token (a grant whose
//! audience is the resource) and a refresh token ([`tokens`]). Everything
//! a later step needs is in the database, so any replica can take it. The
//! HTTP shapes are in [`crate::http`]; here are the rules.
//!
//! Secrets the browser holds are never stored: the cookie's random value
//! derives the provider's PKCE verifier and nonce and the consent form's
//! CSRF token, and only its SHA-256 is in the flow's row.

pub mod clients;
pub mod config;
mod consent;
pub mod fetch;
mod flow;
pub mod resources;
pub mod store;
mod tokens;
pub mod upstream;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

pub use config::SigninConfig;
pub use consent::{ConsentView, Decision};
pub use flow::{Authorize, CallbackOutcome, Step, cookie_name as flow_cookie_name};
pub use store::Db;
pub use tokens::{ClientProof, Issued, TokenError};

use crate::{authority::Authority, store::Store};
use clients::Registry;
use resources::ResourceFile;
use upstream::Upstream;

/// A flow's life from `/oauth2/authorize` to its code.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// An authorization code's life (RFC 6749 4.1.2 recommends at most 10 minutes).
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// The audience of refresh grants: an id no clients-file entry may take,
/// so only the token endpoint can claim them.
pub const REFRESH_AUDIENCE: &str = "tessera:signin";

/// Everything sign-in needs, shared by the HTTP handlers.
pub struct Signin<S> {
    /// `--issuer` exactly as the metadata says it: the `iss` of redirects
    /// (RFC 9207 compares it as a plain string).
    pub issuer: String,
    pub consent_ttl: Duration,
    pub refresh_ttl: Duration,
    pub resources: Arc<ResourceFile>,
    pub registry: Registry,
    upstream: Upstream,
    db: Db,
    authority: Arc<Authority<S>>,
}

impl<S: Store> Signin<S> {
    /// Reads the files the flags name; contacts nobody (the provider is
    /// discovered at the first sign-in).
    pub fn build(
        config: &SigninConfig,
        issuer: &str,
        db: Db,
        authority: Arc<Authority<S>>,
    ) -> anyhow::Result<Option<Self>> {
        let (Some(oidc_issuer), Some(resources)) = (&config.oidc_issuer, &config.signin_resources)
        else {
            return Ok(None);
        };
        let read = |path: &Option<std::path::PathBuf>, flag: &str| -> anyhow::Result<String> {
            let path = path
                .as_ref()
                .with_context(|| format!("--oidc-issuer needs {flag}"))?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{flag}: reading {}", path.display()))?;
            let text = text.trim().to_owned();
            anyhow::ensure!(!text.is_empty(), "{flag}: {} is empty", path.display());
            Ok(text)
        };
        let client_id = read(&config.oidc_client_id_file, "--oidc-client-id-file")?;
        let client_secret = read(&config.oidc_client_secret_file, "--oidc-client-secret-file")?;
        let base = issuer.trim_end_matches('/');
        let upstream = Upstream::new(
            oidc_issuer.clone(),
            client_id,
            client_secret,
            config.oidc_subject_claim.clone(),
            format!("{base}/oauth2/callback"),
            fetch::Fetcher::upstream(config.oidc_ca_file.as_deref())?,
        );
        let fetcher =
            fetch::Fetcher::guarded(config.cimd_allow_private, config.cimd_ca_file.as_deref())?;
        Ok(Some(Self {
            issuer: issuer.to_owned(),
            consent_ttl: config.consent_ttl,
            refresh_ttl: config.refresh_ttl,
            resources: Arc::new(ResourceFile::load(resources)?),
            registry: Registry::new(fetcher, !config.no_cimd, !config.no_registration),
            upstream,
            db,
            authority,
        }))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// 32 random bytes, base64url: codes, flow ids, cookie values, secrets.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    crate::token::os_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256, hex: how codes, secrets and cookies are kept.
pub fn digest_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A value derived from a flow's cookie for one purpose.
fn derive(purpose: &str, binding: &str, flow_id: &str) -> String {
    let mut hash = Sha256::new();
    for part in [purpose, binding, flow_id] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

/// PKCE S256 (RFC 7636 4.2).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Unix microseconds now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn derivations_differ_by_purpose_and_flow() {
        let a = derive("csrf", "cookie", "flow1");
        assert_ne!(a, derive("nonce", "cookie", "flow1"));
        assert_ne!(a, derive("csrf", "cookie", "flow2"));
        assert_ne!(a, derive("csrf", "cookie2", "flow1"));
        assert_eq!(a, derive("csrf", "cookie", "flow1"));
    }
}
