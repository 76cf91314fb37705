//! How the admin commands reach a running server: its URL, a client key
//! from the environment or a file (never a flag, which `ps` and shell
//! history would keep), TLS, and `--json`. The calls go through the Rust
//! client crate, so they get its deadlines and its safe retries.

use std::path::PathBuf;

use anyhow::Context;
use tessera_client::{Client, ClientBuilder, Error};

use super::hint;

#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Server")]
pub struct Remote {
    /// The server, `http://host:port` or `https://host:port` (a bare
    /// `host:port` is `https://` when --tls-ca is given, else `http://`).
    #[arg(long, env = "TESSERA_URL", default_value = tessera_client::DEFAULT_URL)]
    pub server: String,
    /// A file holding the client key (`tsk_…`); TESSERA_KEY, if set, is
    /// used when this is not given. Without either, no key is sent (enough
    /// for a server in dev mode).
    #[arg(long, env = "TESSERA_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the server's certificate; TLS on.
    #[arg(long, env = "TESSERA_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the URL's host).
    #[arg(long, requires = "tls_ca")]
    pub tls_domain: Option<String>,
    /// Client certificate (PEM), for a server that requires mTLS.
    #[arg(long, requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Print JSON (one document on stdout) instead of tables.
    #[arg(long)]
    pub json: bool,
}

impl Remote {
    fn url(&self) -> String {
        match (self.server.contains("://"), self.tls_ca.is_some()) {
            (true, _) => self.server.clone(),
            (false, true) => format!("https://{}", self.server),
            (false, false) => format!("http://{}", self.server),
        }
    }

    fn plaintext(&self) -> bool {
        !self.url().starts_with("https://")
    }

    /// Connected, or an error that says why (refused, TLS).
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let mut builder = ClientBuilder::new(self.url());
        if let Some(key) = self.key()? {
            builder = builder.key(key);
        }
        if let Some(ca) = &self.tls_ca {
            builder = builder.ca_file(ca);
        }
        if let Some(name) = &self.tls_domain {
            builder = builder.tls_domain(name);
        }
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            };
            let key = String::from_utf8(read(key)?).context("--tls-client-key is not PEM text")?;
            builder = builder.client_certificate(read(cert)?, key);
        }
        builder.connect().await.map_err(|err| self.explain(err))
    }

    fn key(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.key_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the --key-file {}", path.display()))?;
            let key = text.trim();
            anyhow::ensure!(
                !key.is_empty(),
                "the --key-file {} is empty",
                path.display()
            );
            return Ok(Some(key.to_owned()));
        }
        Ok(std::env::var("TESSERA_KEY")
            .ok()
            .filter(|key| !key.is_empty()))
    }

    /// A client error as one line naming the cause and, where there is one,
    /// the fix.
    pub fn explain(&self, err: Error) -> anyhow::Error {
        let addr = self.url();
        match err {
            Error::Connect(transport) => hint::connection(&addr, self.plaintext(), &transport),
            Error::Unavailable { message, .. } => {
                let io = std::io::Error::other(message);
                hint::connection(&addr, self.plaintext(), &io)
            }
            Error::Unauthenticated(_) => {
                let what = match self.key() {
                    Ok(Some(_)) => "the server does not know this client key",
                    _ => "no client key was sent",
                };
                anyhow::anyhow!(
                    "UNAUTHENTICATED: {what} (set TESSERA_KEY or --key-file; make a key with \
                     `tessera clients add ID ROLE...`)"
                )
            }
            Error::PermissionDenied(message) => anyhow::anyhow!("PERMISSION_DENIED: {message}"),
            Error::NotFound => {
                anyhow::anyhow!("NOT_FOUND: no such grant (or not one this client issued)")
            }
            other => match other.code() {
                Some(code) => anyhow::anyhow!("{}: {other}", hint::code_name(code)),
                None => anyhow::anyhow!("{other}"),
            },
        }
    }
}
