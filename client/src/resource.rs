//! A protected resource's URI in the canonical form Tessera keeps audience
//! entries in (RFC 8707, as the MCP authorization spec describes it), so
//! that [`crate::BearerAuth`] finds its resource in a grant's audience by a
//! plain comparison: lower-case scheme and host, no default port, no
//! fragment or query (RFC 9728 resource identifiers have neither), and no
//! trailing slash unless the slash is the whole path.

use http::Uri;

/// The canonical form of `uri`, or why it cannot name a protected resource.
pub(crate) fn canonical(uri: &str) -> Result<String, &'static str> {
    let parsed: Uri = uri.parse().map_err(|_| "not a URL")?;
    let scheme = parsed.scheme_str().ok_or("no scheme")?.to_ascii_lowercase();
    let authority = parsed.authority().ok_or("no host")?;
    if parsed.query().is_some() || uri.contains('#') {
        return Err("a resource identifier has no query or fragment");
    }
    if authority.as_str().contains('@') {
        return Err("a resource identifier holds no credentials");
    }
    let host = authority.host().to_ascii_lowercase();
    let loopback = host == "localhost" || host == "[::1]" || host.starts_with("127.");
    if scheme != "https" && !(scheme == "http" && loopback) {
        return Err("the scheme must be https (http only on a loopback host)");
    }
    let port = match (scheme.as_str(), authority.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        (_, Some(port)) => format!(":{port}"),
    };
    let path = parsed.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    Ok(format!("{scheme}://{host}{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn as_tessera_keeps_them() {
        for (given, expected) in [
            ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
            (
                "HTTPS://MCP.Example.com:443/mcp/",
                "https://mcp.example.com/mcp",
            ),
            ("https://mcp.example.com", "https://mcp.example.com/"),
            (
                "https://mcp.example.com:8443/",
                "https://mcp.example.com:8443/",
            ),
            ("http://127.0.0.1:8000/mcp", "http://127.0.0.1:8000/mcp"),
            ("http://[::1]:8000/mcp", "http://[::1]:8000/mcp"),
        ] {
            assert_eq!(canonical(given).as_deref(), Ok(expected), "{given}");
        }
        for bad in [
            "mcp.example.com/mcp",
            "http://mcp.example.com/mcp",
            "ftp://mcp.example.com/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#x",
            "https://user@mcp.example.com/mcp",
        ] {
            assert!(canonical(bad).is_err(), "{bad}");
        }
    }
}
