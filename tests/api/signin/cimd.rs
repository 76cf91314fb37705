//! Client ID metadata documents: fetched over https from the URL that is
//! the `client_id`, on loopback only with the dev flag, and only if the
//! document names itself.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{REDIRECT, Signin, location, param, shown};
use crate::{
    both_backends,
    support::{Backend, MCP_RESOURCE, tls::Ca},
};

/// An https server on loopback answering every path with `document(path)`.
async fn serve(ca: &Ca, document: fn(SocketAddr, &str) -> String) -> SocketAddr {
    let leaf = ca.server();
    let certs = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let body = document(addr, request.uri().path());
                        async move {
                            let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                "application/json".parse().unwrap(),
                            );
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A document naming itself, unless its path says otherwise.
fn document(addr: SocketAddr, path: &str) -> String {
    let own = format!("https://localhost:{}{path}", addr.port());
    let client_id = if path.contains("other") {
        "https://localhost/someone-else.json".to_owned()
    } else {
        own
    };
    serde_json::json!({
        "client_id": client_id,
        "client_name": "Desk <i>client</i>",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
    })
    .to_string()
}

fn authorize(client_id: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
            ("scope", "docs:admin"),
            ("resource", MCP_RESOURCE),
        ])
        .finish();
    format!("/oauth2/authorize?{query}")
}

async fn documents_on_private_addresses_need_the_dev_flag(backend: Backend) {
    let ca = Ca::new("cimd-ca");
    let addr = serve(&ca, document).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = crate::support::tls::write(&dir, "ca.pem", &ca.pem);
    let url = format!("https://localhost:{}/client.json", addr.port());
    let literal = format!("https://127.0.0.1:{}/client.json", addr.port());

    let guarded = Signin::spawn_with(backend, |c| c.cimd_ca_file = Some(ca_file.clone())).await;
    let why =
        "client_id: its metadata document resolves to a loopback, private or link-local address";
    shown(&guarded.get(&authorize(&url), None).await, why);
    shown(&guarded.get(&authorize(&literal), None).await, why);
    // Plain http is no client id document, dev flag or not.
    let http = format!("http://localhost:{}/client.json", addr.port());
    shown(
        &guarded.get(&authorize(&http), None).await,
        "client_id: a URL client_id must use https",
    );

    let dev = Signin::spawn_with(backend, |c| {
        c.cimd_ca_file = Some(ca_file.clone());
        c.cimd_allow_private = true;
    })
    .await;
    // Accepted: the client is verified, so the scope error goes back to it.
    let (base, pairs) = location(&dev.get(&authorize(&url), None).await);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&pairs, "error"), Some("invalid_scope"));
    // A document naming another client_id is refused, and never redirected.
    let other = format!("https://localhost:{}/other.json", addr.port());
    shown(
        &dev.get(&authorize(&other), None).await,
        "client_id: its metadata document names a different client_id than its own URL",
    );
    // Turned off: URL client ids are refused outright.
    let off = Signin::spawn_with(backend, |c| {
        c.cimd_ca_file = Some(ca_file.clone());
        c.cimd_allow_private = true;
        c.no_cimd = true;
    })
    .await;
    shown(
        &off.get(&authorize(&url), None).await,
        "client_id: client ID metadata documents are turned off on this server",
    );
}

async fn the_consent_page_names_the_document_client(backend: Backend) {
    let ca = Ca::new("cimd-ca");
    let addr = serve(&ca, document).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = crate::support::tls::write(&dir, "ca.pem", &ca.pem);
    let url = format!("https://localhost:{}/client.json", addr.port());
    let signin = Signin::spawn_with(backend, |c| {
        c.cimd_ca_file = Some(ca_file);
        c.cimd_allow_private = true;
    })
    .await;
    let (flow, cookie) = signin
        .signed_in(&url, "carol", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        .await;
    let page = signin
        .get(&format!("/oauth2/consent?flow={flow}"), Some(&cookie))
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text()
            .contains("<span id=\"client-name\">Desk &lt;i&gt;client&lt;/i&gt;</span>"),
        "{}",
        page.text()
    );
}

both_backends!(
    documents_on_private_addresses_need_the_dev_flag,
    the_consent_page_names_the_document_client,
);
