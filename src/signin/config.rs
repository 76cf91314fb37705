//! The sign-in flags, flattened into [`crate::config::Config`].

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::config::parse_duration;

/// Sign-in for MCP clients (issue 20): on when both `--oidc-issuer` and
/// `--signin-resources` are given.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Sign-in (authorization code flow)")]
pub struct SigninConfig {
    /// Upstream OpenID Connect provider people sign in at (its issuer URL;
    /// `https`, or `http` on a loopback host). With --signin-resources,
    /// turns the authorization-code flow on.
    #[arg(long, env = "TESSERA_OIDC_ISSUER", requires_all = ["oidc_client_id_file", "oidc_client_secret_file", "signin_resources"])]
    pub oidc_issuer: Option<String>,

    /// File holding Tessera's client id at the provider.
    #[arg(long, env = "TESSERA_OIDC_CLIENT_ID_FILE")]
    pub oidc_client_id_file: Option<PathBuf>,

    /// File holding Tessera's client secret at the provider (sent as
    /// client_secret_basic).
    #[arg(long, env = "TESSERA_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// ID-token claim that becomes the grant's subject.
    #[arg(long, env = "TESSERA_OIDC_SUBJECT_CLAIM", default_value = "sub")]
    pub oidc_subject_claim: String,

    /// Extra CA (PEM) trusted for the provider, beside the Mozilla roots.
    #[arg(long, env = "TESSERA_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,

    /// Resources file (TOML): which resource URIs clients may ask tokens
    /// for, the scopes each offers and grants by default. Reloaded like
    /// the clients file.
    #[arg(long, env = "TESSERA_SIGNIN_RESOURCES", requires = "oidc_issuer")]
    pub signin_resources: Option<PathBuf>,

    /// Refuse client ID metadata documents (URL client ids).
    #[arg(long, env = "TESSERA_NO_CIMD")]
    pub no_cimd: bool,

    /// No RFC 7591 dynamic client registration.
    #[arg(long, env = "TESSERA_NO_REGISTRATION")]
    pub no_registration: bool,

    /// DEVELOPMENT ONLY: let client ID metadata document fetches reach
    /// loopback, private and link-local addresses.
    #[arg(long, env = "TESSERA_CIMD_ALLOW_PRIVATE")]
    pub cimd_allow_private: bool,

    /// Extra CA (PEM) trusted for client ID metadata documents.
    #[arg(long, env = "TESSERA_CIMD_CA_FILE")]
    pub cimd_ca_file: Option<PathBuf>,

    /// How long a person's consent is remembered per client and resource
    /// (0s: ask every time).
    #[arg(long, env = "TESSERA_CONSENT_TTL", default_value = "30d", value_parser = parse_duration)]
    pub consent_ttl: Duration,

    /// Lifetime of a refresh token (each use replaces it).
    #[arg(long, env = "TESSERA_REFRESH_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,
}

impl SigninConfig {
    pub fn enabled(&self) -> bool {
        self.oidc_issuer.is_some() && self.signin_resources.is_some()
    }

    pub(crate) fn check(&self, max_ttl: Duration) -> anyhow::Result<()> {
        if let Some(issuer) = &self.oidc_issuer {
            super::fetch::check_upstream_url(issuer)
                .map_err(|why| anyhow::anyhow!("--oidc-issuer {why}"))?;
        }
        anyhow::ensure!(
            self.oidc_issuer.is_none() || self.signin_resources.is_some(),
            "--oidc-issuer needs --signin-resources (which resources clients may sign in for)"
        );
        anyhow::ensure!(
            self.oidc_issuer.is_none()
                || (!self.refresh_ttl.is_zero() && self.refresh_ttl <= max_ttl),
            "--refresh-ttl must be positive and at most --max-ttl"
        );
        anyhow::ensure!(
            self.oidc_issuer.is_none() || !self.oidc_subject_claim.is_empty(),
            "--oidc-subject-claim must name a claim"
        );
        Ok(())
    }
}
