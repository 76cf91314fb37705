//! Client authentication on the OAuth endpoints (RFC 6749 section 2.3.1):
//! the Tessera client key as `Authorization: Bearer <key>`, as HTTP Basic
//! `client_id:key` (`client_secret_basic`), or as the form fields
//! `client_id` and `client_secret` (`client_secret_post`, both required).
//! Exactly one method per request.

use axum::http::{HeaderMap, header::AUTHORIZATION};
use base64::Engine;

use crate::grpc::bearer;

/// How the caller presented its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Basic,
    Post,
    None,
}

/// Credentials read from the headers (the form's come later, if at all).
pub struct FromHeaders {
    pub scheme: Scheme,
    pub key: Result<Option<String>, &'static str>,
    pub client_id: Option<String>,
}

/// Reads the one `Authorization` header, Bearer or Basic.
pub fn from_headers(headers: &HeaderMap) -> FromHeaders {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return FromHeaders {
            scheme: Scheme::None,
            key: Ok(None),
            client_id: None,
        };
    };
    let basic = first
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    match basic {
        Some((_, encoded)) if values.next().is_none() => match basic_pair(encoded) {
            Some((id, key)) => FromHeaders {
                scheme: Scheme::Basic,
                key: Ok(Some(key)),
                client_id: Some(id),
            },
            None => FromHeaders {
                scheme: Scheme::Basic,
                key: Err("malformed basic credentials"),
                client_id: None,
            },
        },
        _ => FromHeaders {
            scheme: Scheme::Bearer,
            key: bearer(headers).map(|key| key.map(str::to_owned)),
            client_id: None,
        },
    }
}

/// `base64(urlencode(id) ":" urlencode(secret))`, as RFC 6749 2.3.1 asks.
fn basic_pair(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_end())
        .ok()?;
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// One `application/x-www-form-urlencoded` value.
fn form_decode(text: &str) -> Option<String> {
    let mut pairs = form_urlencoded::parse(text.as_bytes());
    match (pairs.next(), pairs.next()) {
        (Some((value, rest)), None) if rest.is_empty() && !text.contains('=') => {
            Some(value.into_owned())
        }
        (None, None) => Some(String::new()),
        _ => None,
    }
}

/// The WWW-Authenticate challenges for a 401: the scheme the caller used,
/// or both when it used none (RFC 6749 5.2, RFC 6750 3).
pub fn challenges(scheme: Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::Basic => &["Basic realm=\"tessera\""],
        Scheme::Bearer => &["Bearer realm=\"tessera\", error=\"invalid_token\""],
        Scheme::Post | Scheme::None => &["Basic realm=\"tessera\"", "Bearer realm=\"tessera\""],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("mcp%3Aweb:tsk_abc");
        let read = from_headers(&headers(&format!("Basic {encoded}")));
        assert_eq!(read.scheme, Scheme::Basic);
        assert_eq!(read.key, Ok(Some("tsk_abc".to_owned())));
        assert_eq!(read.client_id.as_deref(), Some("mcp:web"));
        for bad in ["Basic !!!", "Basic dGVzc2VyYQ==", "Basic OnRza19hYmM="] {
            assert!(from_headers(&headers(bad)).key.is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_keys_read_as_on_grpc() {
        let read = from_headers(&headers("Bearer tsk_abc"));
        assert_eq!(
            (read.scheme, read.key),
            (Scheme::Bearer, Ok(Some("tsk_abc".to_owned())))
        );
        assert!(from_headers(&headers("Bearer  tsk_abc")).key.is_err());
        assert!(from_headers(&headers("Digest x")).key.is_err());
        let none = from_headers(&HeaderMap::new());
        assert_eq!((none.scheme, none.key), (Scheme::None, Ok(None)));
    }
}
