//! Resource URIs (RFC 8707) as audiences, in one canonical form.
//!
//! MCP binds a token to the canonical URI of the MCP server it is for, and
//! asks that server to check it. So an audience entry may be a resource URI
//! beside the client ids it has always held: an entry with `://` in it is a
//! URI, anything else a client id. A URI is kept in the canonical form the
//! MCP authorization spec describes, so that the rules compare plain
//! strings and `HTTPS://MCP.example.com/mcp/` names the same server as
//! `https://mcp.example.com/mcp`: lower-case scheme and host, no default
//! port, no fragment, dot segments resolved, and no trailing slash unless
//! the slash is the whole path (`https://mcp.example.com/`, which is also
//! how a WHATWG `URL` — the TypeScript SDK's type for `resource` — writes
//! the bare origin).

use std::net::IpAddr;

use url::{Host, Url};

use crate::input::MAX_ID;

/// Whether an audience entry is meant as a resource URI rather than a
/// client id (which therefore never contains `://`).
pub fn is_uri(entry: &str) -> bool {
    entry.contains("://")
}

/// The canonical form of a resource URI, or what is wrong with it (never
/// the value itself: errors name the field, not what the caller sent).
///
/// Only `https` is accepted, and `http` on a loopback host (`localhost`,
/// `127.0.0.0/8`, `[::1]`) for local servers and tests, as the MCP spec
/// allows; a URI with credentials in it or a fragment is refused rather
/// than trimmed, since either means the caller meant something else.
pub fn canonical(value: &str) -> Result<String, &'static str> {
    let mut url = Url::parse(value).map_err(|_| "must be an absolute URI")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url.host()) => {}
        "http" => return Err("must use https (http only on a loopback host)"),
        _ => return Err("must be an https URI"),
    }
    if url.host().is_none() {
        return Err("must name a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials");
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment");
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    let canonical = String::from(url);
    if canonical.len() > MAX_ID {
        return Err("must be at most 256 bytes in its canonical form");
    }
    Ok(canonical)
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_one_form() {
        for (given, expected) in [
            ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
            (
                "HTTPS://MCP.Example.COM/mcp/",
                "https://mcp.example.com/mcp",
            ),
            (
                "https://mcp.example.com:443/a/../mcp",
                "https://mcp.example.com/mcp",
            ),
            ("https://mcp.example.com", "https://mcp.example.com/"),
            ("https://mcp.example.com/", "https://mcp.example.com/"),
            (
                "https://mcp.example.com:8443",
                "https://mcp.example.com:8443/",
            ),
            (
                "https://mcp.example.com/Server/MCP",
                "https://mcp.example.com/Server/MCP",
            ),
            (
                "https://mcp.example.com/mcp/?v=1",
                "https://mcp.example.com/mcp?v=1",
            ),
            ("http://127.0.0.1:8000/mcp", "http://127.0.0.1:8000/mcp"),
            ("http://LOCALHOST:8000/mcp", "http://localhost:8000/mcp"),
            ("http://[::1]:8000/mcp", "http://[::1]:8000/mcp"),
        ] {
            assert_eq!(canonical(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn refusals_say_why_and_never_echo() {
        for (given, why) in [
            ("mcp.example.com/mcp", "must be an absolute URI"),
            ("https://", "must be an absolute URI"),
            (
                "http://mcp.example.com/mcp",
                "must use https (http only on a loopback host)",
            ),
            (
                "http://10.0.0.1/mcp",
                "must use https (http only on a loopback host)",
            ),
            ("ftp://mcp.example.com/mcp", "must be an https URI"),
            ("urn://x", "must be an https URI"),
            (
                "https://user:pw@mcp.example.com/mcp",
                "must not contain credentials",
            ),
            (
                "https://mcp.example.com/mcp#frag",
                "must not have a fragment",
            ),
            ("https://mcp.example.com/mcp#", "must not have a fragment"),
        ] {
            assert_eq!(canonical(given), Err(why), "{given}");
        }
        let long = format!("https://mcp.example.com/{}", "a".repeat(MAX_ID));
        assert!(canonical(&long).unwrap_err().contains("256 bytes"));
    }

    #[test]
    fn client_ids_are_not_uris() {
        assert!(is_uri("https://mcp.example.com/mcp"));
        for id in ["mcp-server", "team:orchestrator", "svc/a", "https:x"] {
            assert!(!is_uri(id), "{id}");
        }
    }
}
