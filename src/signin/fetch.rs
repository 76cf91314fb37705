//! Outbound HTTPS: to the upstream OpenID Connect provider, and to the
//! client ID metadata documents clients name — URLs chosen by whoever
//! calls `/oauth2/authorize`, so those fetches are guarded against SSRF:
//! https only, every address the name resolves to must be public (unless
//! the dev flag allows loopback, private and link-local ones), no
//! redirects, no proxy, a deadline and a size cap.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use url::{Host, Url};

/// Longest a fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fetch failed, in words safe to show the caller (no addresses
/// resolved, no bodies).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("must be an https URL")]
    NotHttps,
    #[error("resolves to a loopback, private or link-local address")]
    Private,
    #[error("could not be fetched")]
    Unreachable,
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("is larger than {0} bytes")]
    TooLarge(usize),
}

/// An HTTP client for one purpose: its trust roots and address policy.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
    /// `http` allowed on loopback (the upstream provider in tests); CIMD
    /// fetches are https only.
    http_on_loopback: bool,
}

impl Fetcher {
    /// A client for client ID metadata documents.
    pub fn guarded(allow_private: bool, extra_ca: Option<&Path>) -> anyhow::Result<Self> {
        let resolver = Arc::new(GuardedResolver { allow_private });
        let client = builder(extra_ca)?.dns_resolver(resolver).build()?;
        Ok(Self {
            client,
            allow_private,
            http_on_loopback: false,
        })
    }

    /// A client for the upstream provider (an operator's choice, not a
    /// caller's: no address policy).
    pub fn upstream(extra_ca: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            client: builder(extra_ca)?.build()?,
            allow_private: true,
            http_on_loopback: true,
        })
    }

    /// Checks `url` against the policy before any connection.
    pub fn check(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => {}
            "http" if self.http_on_loopback && is_loopback_host(url.host()) => {}
            _ => return Err(FetchError::NotHttps),
        }
        // An address literal never reaches the resolver: judged here.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && !is_public(ip)
        {
            return Err(FetchError::Private);
        }
        Ok(())
    }

    /// GETs `url` (JSON expected): the response's headers and at most
    /// `max` bytes of body.
    pub async fn get(
        &self,
        url: &Url,
        max: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), FetchError> {
        self.check(url)?;
        let request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        self.send(request, max).await
    }

    /// POSTs a form (the provider's token endpoint).
    pub async fn post_form(
        &self,
        url: &Url,
        basic: (&str, &str),
        form: &[(&str, &str)],
        max: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), FetchError> {
        self.check(url)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        // RFC 6749 2.3.1: id and secret form-encoded before Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let request = self
            .client
            .post(url.clone())
            .basic_auth(enc(basic.0), Some(enc(basic.1)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        self.send(request, max).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        max: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), FetchError> {
        let work = async {
            let mut response = request.send().await.map_err(|err| {
                if is_private_refusal(&err) {
                    FetchError::Private
                } else {
                    FetchError::Unreachable
                }
            })?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|_| FetchError::Unreachable)?
            {
                if body.len() + chunk.len() > max {
                    return Err(FetchError::TooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            Ok((headers, body))
        };
        tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .unwrap_or(Err(FetchError::Unreachable))
    }
}

fn builder(extra_ca: Option<&Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("{}: not PEM certificates", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: a certificate rustls refuses", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT))
}

/// Resolves like the system, then drops the whole answer if any address
/// is not public: a name that points at once to a public and a private
/// address is refused, not half-trusted.
struct GuardedResolver {
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("resolves to a loopback, private or link-local address")]
struct PrivateAddress;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|err| Box::new(err) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            if !allow_private && addrs.iter().any(|addr| !is_public(addr.ip())) {
                return Err(Box::new(PrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn is_private_refusal(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.is::<PrivateAddress>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether an address is on the public internet: not loopback, private
/// (RFC 1918, unique local), link-local, carrier-grade NAT, unspecified,
/// multicast, documentation or benchmarking, nor an IPv4 one mapped into
/// IPv6 that is any of these.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

fn is_loopback_host(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `--oidc-issuer`'s shape: https, or http on loopback; no query or fragment.
pub fn check_upstream_url(value: &str) -> Result<(), &'static str> {
    let url = Url::parse(value).map_err(|_| "must be an absolute URL")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url.host()) => {}
        _ => return Err("must be https (http only on a loopback host)"),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn address_literals_are_judged_before_connecting() {
        let guarded = Fetcher::guarded(false, None).unwrap();
        let check = |u: &str| guarded.check(&Url::parse(u).unwrap());
        assert_eq!(check("http://example.com/c"), Err(FetchError::NotHttps));
        assert_eq!(check("https://127.0.0.1/c"), Err(FetchError::Private));
        assert_eq!(check("https://[::1]/c"), Err(FetchError::Private));
        assert_eq!(check("https://169.254.169.254/c"), Err(FetchError::Private));
        assert_eq!(check("https://example.com/c"), Ok(()));
        let dev = Fetcher::guarded(true, None).unwrap();
        assert_eq!(
            dev.check(&Url::parse("https://127.0.0.1/c").unwrap()),
            Ok(())
        );
        assert_eq!(
            dev.check(&Url::parse("http://127.0.0.1/c").unwrap()),
            Err(FetchError::NotHttps)
        );
    }
}
