//! Connecting to a Tessera as a client (`tessera health`, `tessera-bench`):
//! in the clear, or over TLS with a CA to trust and, for mTLS, a client
//! certificate.

use std::path::PathBuf;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientTls {
    /// CA certificate (PEM) to verify the server with; turns TLS on.
    #[arg(long, env = "TESSERA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the
    /// address's host).
    #[arg(long, requires = "tls_ca")]
    pub tls_domain: Option<String>,
    /// Client certificate (PEM), for a server that requires mTLS.
    #[arg(long = "tls-client-cert", requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long = "tls-client-key", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientTls {
    /// An endpoint for `addr` (`host:port`).
    pub fn endpoint(&self, addr: &str) -> anyhow::Result<Endpoint> {
        let Some(ca) = &self.tls_ca else {
            return Ok(Endpoint::from_shared(format!("http://{addr}"))?);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?)
    }
}
