//! The server's TLS configuration, re-read when its files change.
//!
//! cert-manager (and most tooling) rotates a certificate by rewriting the
//! files in place. Each new connection takes the configuration in force
//! when it arrives; open connections keep the one they were made with, so
//! nothing is dropped. A file that does not load leaves the old
//! configuration in force.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::Context;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    current: RwLock<Current>,
}

struct Current {
    acceptor: TlsAcceptor,
    /// SHA-256 of the files last read, loaded or not: a file that failed is
    /// not retried (nor reported again) until it changes.
    seen: [u8; 32],
}

impl Tls {
    /// The TLS configuration, if `--tls-cert` is set.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let files = Files::read(cert, key, config.tls_client_ca.as_deref())?;
        let acceptor = files.acceptor()?;
        Ok(Some(Arc::new(Self {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca.clone(),
            current: RwLock::new(Current {
                acceptor,
                seen: files.digest(),
            }),
        })))
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .acceptor
            .clone()
    }

    /// Reads the files again: `Ok(true)` if they changed and now serve,
    /// `Ok(false)` if they are as last read, an error (and the old
    /// configuration still in force) if they changed but do not load.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let files = Files::read(&self.cert, &self.key, self.client_ca.as_deref())?;
        let digest = files.digest();
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.seen == digest {
            return Ok(false);
        }
        current.seen = digest;
        current.acceptor = files.acceptor()?;
        Ok(true)
    }
}

/// The PEM files as read.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    fn read(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Self> {
        let read = |path: &Path, flag: &str| {
            std::fs::read(path).with_context(|| format!("{flag} {}: cannot read", path.display()))
        };
        Ok(Self {
            cert: read(cert, "--tls-cert")?,
            key: read(key, "--tls-key")?,
            client_ca: client_ca
                .map(|path| read(path, "--tls-client-ca"))
                .transpose()?,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            &self.cert,
            &self.key,
            self.client_ca.as_ref().unwrap_or(&Vec::new()),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .context("--tls-cert: not a PEM certificate chain")?;
        anyhow::ensure!(!chain.is_empty(), "--tls-cert: no certificate in the file");
        // The key's own error could quote key material: keep it generic.
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|_| anyhow::anyhow!("--tls-key: no PEM private key in the file"))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in CertificateDer::pem_slice_iter(pem) {
                    roots
                        .add(ca.context("--tls-client-ca: not a PEM certificate")?)
                        .context("--tls-client-ca: not a usable CA certificate")?;
                }
                anyhow::ensure!(
                    !roots.is_empty(),
                    "--tls-client-ca: no certificate in the file"
                );
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .context("--tls-client-ca")?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .context("--tls-cert and --tls-key do not make a usable pair")?;
        // gRPC needs HTTP/2; the HTTP face also takes HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
