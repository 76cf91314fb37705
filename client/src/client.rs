//! The client: connection settings, per-call deadlines, and one retry loop
//! that every method goes through.

use std::{
    ffi::OsString,
    fmt,
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tonic::{
    Request, Response, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    Grant,
    error::Error,
    pb::{
        self, credentials_client::CredentialsClient as RawCredentials,
        token_authority_client::TokenAuthorityClient,
    },
    requests::{
        Claim, ClaimOutcome, Delegate, GrantPage, ListGrants, Mint, Minted, Revision, Revoke,
        Revoked, Rotate, Rotated, Validate, Validation,
    },
    retry::{self, Idempotence, RetryPolicy},
    secret::{ClientKey, Token},
};

/// Where Tessera listens when `TESSERA_URL` is not set (its own default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:50051";

/// The generated `tessera.v1.Credentials` client, with this client's key on
/// every call (see [`Client::credentials`]).
pub type CredentialsClient = RawCredentials<InterceptedService<Channel, KeyInterceptor>>;

/// A Tessera client: cheap to clone (clones share one HTTP/2 connection),
/// safe to share across tasks.
///
/// Every call is bounded by the client's timeout (10 s unless set; see
/// [`Client::with_timeout`]), retries included, and retried as
/// [`RetryPolicy`] describes.
#[derive(Clone)]
pub struct Client {
    raw: TokenAuthorityClient<Channel>,
    channel: Channel,
    key: KeyInterceptor,
    url: Arc<str>,
    timeout: Duration,
    retry: Arc<RetryPolicy>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("key", &self.key.0.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Client {
    /// Connects to Tessera at `url` (`http://host:port`, or `https://…` for
    /// TLS trusting the roots the crate's features enable), without a key
    /// (enough for a server in dev mode). Use [`Client::builder`] for a
    /// key, a CA, mTLS or timeouts.
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }

    /// Connects as the environment says: `TESSERA_URL` (default
    /// `http://127.0.0.1:50051`), `TESSERA_KEY` (the client key, if any)
    /// and `TESSERA_CA` (a PEM file of the CA that signed Tessera's
    /// certificate, for an `https://` URL).
    pub async fn from_env() -> Result<Self, Error> {
        ClientBuilder::from_env()?.connect().await
    }

    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// The URL this client calls.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same client (same connection), whose calls each end within
    /// `timeout`, retries and waits between them included.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// The same client (same connection), retrying as `policy` says.
    pub fn with_retry(&self, policy: RetryPolicy) -> Self {
        Self {
            retry: Arc::new(policy),
            ..self.clone()
        }
    }

    /// Issues a token (role `mint`). Retried only when it provably did
    /// nothing (see [`RetryPolicy`]): a lost reply is an error, never a
    /// second token.
    pub async fn mint(&self, mint: Mint) -> Result<Minted, Error> {
        let answer = self
            .call(
                Idempotence::OnlyIfNotDone,
                mint.0,
                |mut raw, request| async move { raw.mint(request).await },
            )
            .await?;
        Ok(Minted {
            token: Token::new(answer.token),
            grant: answer
                .grant
                .ok_or(Error::Protocol("Mint without a grant"))?,
            revision: Revision::from_wire(answer.revision),
        })
    }

    /// Checks a token without consuming it (role `validate`). A refusal is
    /// [`Validation::Denied`], not an error.
    pub async fn validate(&self, validate: Validate) -> Result<Validation, Error> {
        let answer = self
            .call(
                Idempotence::Idempotent,
                validate.0,
                |mut raw, request| async move { raw.validate(request).await },
            )
            .await?;
        Validation::from_pb(answer)
    }

    /// Consumes one use of a token (role `claim`). Each call sends a
    /// `claim_key` (a fresh random one unless [`Claim::claim_key`] set
    /// one) and reuses it on every retry, so a lost reply is retried
    /// without consuming a second use: the retry gets the original answer.
    pub async fn claim(&self, claim: Claim) -> Result<ClaimOutcome, Error> {
        let mut request = claim.0;
        if request.claim_key.is_empty() {
            request.claim_key = retry::claim_key();
        }
        let answer = self
            .call(
                Idempotence::Idempotent,
                request,
                |mut raw, request| async move { raw.claim(request).await },
            )
            .await?;
        ClaimOutcome::from_pb(answer)
    }

    /// Revokes a grant, a run or a subject (role `revoke`); returns how many
    /// live grants were revoked. Retried (revoking twice revokes once): if
    /// a reply was lost, the count is the last attempt's, possibly 0.
    pub async fn revoke(&self, revoke: Revoke) -> Result<u64, Error> {
        Ok(self.revoke_with_revision(revoke).await?.revoked)
    }

    /// [`Self::revoke`], with the revision a later BOUNDED Validate may
    /// ask to reflect ([`Validate::at_least_as_fresh`]).
    pub async fn revoke_with_revision(&self, revoke: Revoke) -> Result<Revoked, Error> {
        let answer = self
            .call(
                Idempotence::Idempotent,
                revoke.0,
                |mut raw, request| async move { raw.revoke(request).await },
            )
            .await?;
        Ok(Revoked {
            revoked: answer.revoked,
            revision: Revision::from_wire(answer.revision),
        })
    }

    /// One grant by its id ([`Error::NotFound`] if this client may not see it).
    pub async fn get_grant(&self, grant_id: impl Into<String>) -> Result<Grant, Error> {
        let request = pb::GetGrantRequest {
            grant_id: grant_id.into(),
        };
        let answer = self
            .call(
                Idempotence::Idempotent,
                request,
                |mut raw, request| async move { raw.get_grant(request).await },
            )
            .await?;
        answer
            .grant
            .ok_or(Error::Protocol("GetGrant without a grant"))
    }

    /// One page of grants.
    pub async fn list_grants(&self, list: ListGrants) -> Result<GrantPage, Error> {
        let answer = self
            .call(
                Idempotence::Idempotent,
                list.0,
                |mut raw, request| async move { raw.list_grants(request).await },
            )
            .await?;
        Ok(GrantPage {
            grants: answer.grants,
            next_page_token: (!answer.next_page_token.is_empty()).then_some(answer.next_page_token),
            active_count: answer.active_count,
        })
    }

    /// Replaces a grant with a successor and a new token (role `mint`).
    /// Retried only when it provably did nothing: a grant rotates once, so
    /// a retry after a lost reply would fail and lose the new token.
    pub async fn rotate(&self, rotate: Rotate) -> Result<Rotated, Error> {
        let answer = self
            .call(
                Idempotence::OnlyIfNotDone,
                rotate.0,
                |mut raw, request| async move { raw.rotate(request).await },
            )
            .await?;
        Ok(Rotated {
            token: Token::new(answer.token),
            grant: answer
                .grant
                .ok_or(Error::Protocol("Rotate without a grant"))?,
            previous: answer
                .previous
                .ok_or(Error::Protocol("Rotate without the previous grant"))?,
        })
    }

    /// Issues a sub-agent a token that can do no more than its parent
    /// (role `mint`). Retried like [`Client::mint`].
    pub async fn delegate(&self, delegate: Delegate) -> Result<Minted, Error> {
        let answer = self
            .call(
                Idempotence::OnlyIfNotDone,
                delegate.0,
                |mut raw, request| async move { raw.delegate(request).await },
            )
            .await?;
        Ok(Minted {
            token: Token::new(answer.token),
            grant: answer
                .grant
                .ok_or(Error::Protocol("Delegate without a grant"))?,
            revision: None,
        })
    }

    /// The generated `tessera.v1.Credentials` client over this client's
    /// connection and key. Its calls are not retried and have no deadline
    /// unless you set one on the request.
    pub fn credentials(&self) -> CredentialsClient {
        RawCredentials::new(InterceptedService::new(
            self.channel.clone(),
            self.key.clone(),
        ))
    }

    /// The one retry loop. `send` makes one attempt; the request carries the
    /// attempt's deadline (as `grpc-timeout`) and the key.
    async fn call<Req, Resp, F, Fut>(
        &self,
        idempotence: Idempotence,
        message: Req,
        mut send: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: FnMut(TokenAuthorityClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::DeadlineExceeded);
            }
            let this_try = left.min(self.retry.attempt_timeout);
            let mut request = Request::new(message.clone());
            request.set_timeout(this_try);
            if let Some(value) = &self.key.0 {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            let err = match tokio::time::timeout(this_try, send(self.raw.clone(), request)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => Error::from(status),
                Err(_elapsed) => Error::DeadlineExceeded,
            };
            let again = match idempotence {
                Idempotence::Idempotent => err.retryable_if_idempotent(),
                Idempotence::OnlyIfNotDone => err.provably_not_done(),
            };
            if !again || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let wait = self.retry.backoff(attempt);
            if Instant::now() + wait >= deadline {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Puts the client key on a call as `authorization: Bearer <key>`.
#[derive(Clone)]
pub struct KeyInterceptor(Option<AsciiMetadataValue>);

impl fmt::Debug for KeyInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyInterceptor(<redacted>)")
    }
}

impl Interceptor for KeyInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// How to reach Tessera. Made by [`Client::builder`] or
/// [`ClientBuilder::from_env`].
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    key: Option<ClientKey>,
    ca_pem: Option<Vec<u8>>,
    ca_file: Option<PathBuf>,
    identity: Option<(Vec<u8>, ClientKey)>,
    tls_domain: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("key", &self.key)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("ca_file", &self.ca_file)
            .field("identity", &self.identity.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ClientBuilder {
    /// `url` is `http://host:port` or `https://host:port`; a bare
    /// `host:port` means `http://`.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let url = if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        };
        Self {
            url: url.trim_end_matches('/').to_owned(),
            key: None,
            ca_pem: None,
            ca_file: None,
            identity: None,
            tls_domain: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    /// `TESSERA_URL` (default `http://127.0.0.1:50051`), `TESSERA_KEY`,
    /// `TESSERA_CA` (a PEM file path).
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| -> Result<Option<String>, Error> {
            match std::env::var(name) {
                Ok(value) if value.is_empty() => Ok(None),
                Ok(value) => Ok(Some(value)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(Error::Config(format!("{name} is not valid UTF-8")))
                }
            }
        };
        let mut builder = Self::new(var("TESSERA_URL")?.unwrap_or_else(|| DEFAULT_URL.to_owned()));
        if let Some(key) = var("TESSERA_KEY")? {
            builder = builder.key(key);
        }
        if let Some(ca) = std::env::var_os("TESSERA_CA").filter(|ca| !ca.is_empty()) {
            builder = builder.ca_file(ca);
        }
        Ok(builder)
    }

    /// The client key (`tsk_…`) Tessera knows this client by.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(ClientKey(key.into()));
        self
    }

    /// Trust this CA (PEM) for Tessera's certificate.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Trust the CA in this PEM file (read when connecting).
    pub fn ca_file(mut self, path: impl Into<OsString>) -> Self {
        self.ca_file = Some(PathBuf::from(path.into()));
        self
    }

    /// Present this certificate and key (PEM) to Tessera (mTLS).
    pub fn client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<String>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), ClientKey(key_pem.into())));
        self
    }

    /// Verify Tessera's certificate for this name instead of the URL's host.
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.tls_domain = Some(name.into());
        self
    }

    /// The default bound on each call, retries included (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bound on making a connection (5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Connects now: fails if Tessera cannot be reached.
    pub async fn connect(self) -> Result<Client, Error> {
        let endpoint = self.endpoint()?;
        let channel = endpoint.connect().await.map_err(Error::Connect)?;
        self.client(channel)
    }

    /// Connects on the first call (and again whenever the connection
    /// drops); fails only on bad settings.
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let channel = self.endpoint()?.connect_lazy();
        self.client(channel)
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        let bad = |why: String| Error::Config(format!("Tessera URL {:?}: {why}", self.url));
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|err| bad(err.to_string()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let tls_asked = self.ca_pem.is_some()
            || self.ca_file.is_some()
            || self.identity.is_some()
            || self.tls_domain.is_some();
        if self.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(pem) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(path) = &self.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|err| Error::Config(format!("CA file {}: {err}", path.display())))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, &key.0));
            }
            if let Some(name) = &self.tls_domain {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|err| bad(err.to_string()))?;
        } else if tls_asked {
            return Err(bad("TLS settings need an https:// URL".into()));
        } else if !self.url.starts_with("http://") {
            return Err(bad("the scheme must be http or https".into()));
        }
        Ok(endpoint)
    }

    fn client(self, channel: Channel) -> Result<Client, Error> {
        let key = match self.key {
            Some(ClientKey(key)) => {
                let mut value = AsciiMetadataValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| Error::Config("the client key is not printable ASCII".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Client {
            raw: TokenAuthorityClient::new(channel.clone()),
            channel,
            key: KeyInterceptor(key),
            url: self.url.into(),
            timeout: self.timeout,
            retry: Arc::new(self.retry),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_prints_no_key() {
        let builder = Client::builder("127.0.0.1:1").key("tsk_supersecretkey");
        assert!(!format!("{builder:?}").contains("supersecret"));
        let client = builder.connect_lazy().unwrap();
        let printed = format!("{client:?} {:?}", client.credentials());
        assert!(!printed.contains("supersecret"), "{printed}");
        assert_eq!(client.url(), "http://127.0.0.1:1");
    }

    #[test]
    fn tls_settings_need_https() {
        let err = Client::builder("http://127.0.0.1:1")
            .ca_pem(b"x".to_vec())
            .connect_lazy()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
