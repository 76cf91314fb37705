//! A real HTTP client (hyper) for the HTTP face: HTTP/1.1 or HTTP/2, in
//! the clear or over TLS.

use std::{net::SocketAddr, sync::Arc};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Version {
    H1,
    H2,
}

/// Sends one request on a new connection.
pub async fn send(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    version: Version,
    request: Request<String>,
) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tls {
        None => exchange(tcp, version, request).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            exchange(stream, version, request).await
        }
    }
}

async fn exchange<IO>(io: IO, version: Version, request: Request<String>) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let request = request.map(|body| Full::new(Bytes::from(body)));
    let io = TokioIo::new(io);
    let response = match version {
        Version::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(request).await.unwrap()
        }
        Version::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(request).await.unwrap()
        }
    };
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

/// How a request authenticates.
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// `client_secret_basic`: id and key.
    Basic(&'a str, &'a str),
}

/// A form POST to `path`.
pub fn form(path: &str, auth: Auth<'_>, fields: &[(&str, &str)]) -> Request<String> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = Request::post(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match auth {
        Auth::None => {}
        Auth::Bearer(key) => {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"))
        }
        Auth::Basic(id, key) => {
            let pair = format!("{}:{}", encode(id), encode(key));
            let value = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header(header::AUTHORIZATION, format!("Basic {value}"));
        }
    }
    request.body(body).unwrap()
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn get(path: &str, bearer: Option<&str>) -> Request<String> {
    let mut request = Request::get(path).header(header::HOST, "localhost");
    if let Some(key) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    request.body(String::new()).unwrap()
}
