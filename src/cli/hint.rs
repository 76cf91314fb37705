//! What a failed connection to a server most likely means. The transport's
//! own words (`tcp connect error`, `stream closed because of a broken pipe`)
//! name neither the cause nor the fix; these errors say "refused" when
//! nothing listens, and name TLS when a plaintext client met a TLS port or
//! the other way round.

use std::{error::Error, io::ErrorKind};

/// The transport error of a connection to `addr`, with its likely cause.
pub fn connection(addr: &str, plaintext: bool, err: &(dyn Error + 'static)) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach Tessera at {addr}: {}{}",
        chain(err),
        cause(plaintext, err)
    )
}

/// A call's failure: the same hints when the status is the transport's.
pub fn status(addr: &str, plaintext: bool, status: &tonic::Status) -> anyhow::Error {
    let hint = cause(plaintext, status);
    if hint.is_empty()
        && !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        )
    {
        return anyhow::anyhow!("{}: {}", code_name(status.code()), status.message());
    }
    anyhow::anyhow!(
        "cannot reach Tessera at {addr}: {}{hint}",
        chain(status as &(dyn Error + 'static))
    )
}

/// A status's code as the API documents it (`UNAUTHENTICATED`).
pub fn code_name(code: tonic::Code) -> String {
    let words = format!("{code:?}");
    let mut name = String::new();
    for (i, c) in words.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The error and its causes, each said once, on one line.
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
        next = err.source();
    }
    said.join(": ")
}

fn cause(plaintext: bool, err: &(dyn Error + 'static)) -> &'static str {
    let text = chain(err).to_ascii_lowercase();
    let kind = io_kind(err);
    if kind == Some(ErrorKind::ConnectionRefused) || text.contains("connection refused") {
        return " (connection refused: nothing listens there; is the server running, and is the \
                address right?)";
    }
    let closed = matches!(
        kind,
        Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof)
    ) || [
        "broken pipe",
        "connection reset",
        "connection closed",
        "frame with invalid size",
    ]
    .iter()
    .any(|words| text.contains(words));
    if plaintext && closed {
        return " (the server closed the connection: it most likely serves TLS; give --tls-ca \
                with the CA that signed its certificate)";
    }
    let tls_words = [
        "corrupt message",
        "invalidcontenttype",
        "wrong version number",
        "tls",
    ];
    if !plaintext && tls_words.iter().any(|words| text.contains(words)) {
        return " (TLS failed: is the server serving TLS, and did the --tls-ca CA sign its \
                certificate for this name?)";
    }
    ""
}

fn io_kind(err: &(dyn Error + 'static)) -> Option<ErrorKind> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_the_api_names_them() {
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(
            code_name(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
    }

    #[test]
    fn a_refused_connection_says_refused() {
        let io = std::io::Error::from(ErrorKind::ConnectionRefused);
        let err = connection("127.0.0.1:1", true, &io).to_string();
        assert!(
            err.contains("refused") && err.contains("127.0.0.1:1"),
            "{err}"
        );
    }

    #[test]
    fn a_closed_plaintext_connection_names_tls() {
        let io = std::io::Error::from(ErrorKind::BrokenPipe);
        assert!(connection("h:1", true, &io).to_string().contains("TLS"));
        assert!(
            !connection("h:1", false, &io)
                .to_string()
                .contains("serves TLS")
        );
    }
}
