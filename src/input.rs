//! Limits on every field a caller sends, checked before anything is written.
//!
//! A violation names the field and the rule, never the value: the value may
//! be a secret pasted into the wrong field, or bytes meant to forge a log line.

use std::{collections::BTreeMap, fmt};

use crate::resource;

/// Bytes in a token or client key field (real ones are 53).
pub const MAX_TOKEN: usize = 128;
/// Bytes in a subject, run id, client id or grant id.
pub const MAX_ID: usize = 256;
/// Entries in `scopes` or `required_scopes`.
pub const MAX_SCOPES: usize = 64;
/// Bytes in one scope.
pub const MAX_SCOPE: usize = 128;
/// Entries in `audience`.
pub const MAX_AUDIENCE: usize = 32;
/// Entries in `labels`.
pub const MAX_LABELS: usize = 32;
/// Bytes in a label key.
pub const MAX_LABEL_KEY: usize = 64;
/// Bytes in a label value.
pub const MAX_LABEL_VALUE: usize = 256;
/// Bytes in a payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest decoded request message.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Largest ListGrants page.
pub const MAX_PAGE: u32 = 1000;
/// ListGrants page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// A request field that breaks a rule. Maps to INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidInput {
    pub field: String,
    pub problem: String,
}

impl InvalidInput {
    pub fn new(field: impl fmt::Display, problem: impl fmt::Display) -> Self {
        Self {
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, InvalidInput>;

/// Code points that render as nothing or reorder what follows them: line
/// and paragraph separators, bidirectional embeddings, overrides and
/// isolates, zero-width spaces and joiners, and the byte-order mark. In an
/// identifier they make two different values look the same (`alice` and
/// `alice\u{200B}`), or one value look like another, in logs and consoles.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Control characters (NUL, CR, LF, ESC, DEL, C1) and invisible or
/// bidirectional code points are refused everywhere: they have no business
/// in an identifier, they forge log lines, and they make different values
/// look alike. Values are otherwise compared as exact bytes: no Unicode
/// normalisation, no case folding.
fn check_text(field: &dyn fmt::Display, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            field,
            "must not contain control characters",
        ));
    }
    if value.chars().any(is_invisible) {
        return Err(InvalidInput::new(
            field,
            "must not contain invisible or bidirectional characters",
        ));
    }
    Ok(())
}

/// A required identifier (subject on Mint, grant id).
pub fn required_id(field: &str, value: String) -> Result<String> {
    if value.is_empty() {
        return Err(InvalidInput::new(field, "is required"));
    }
    check_text(&field, &value, MAX_ID)?;
    Ok(value)
}

/// An optional identifier: empty means "not given".
pub fn optional_id(field: &str, value: String) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    check_text(&field, &value, MAX_ID)?;
    Ok(Some(value))
}

/// Bytes in a claim's idempotency key.
pub const MAX_CLAIM_KEY: usize = 128;

/// A claim's idempotency key: optional, bounded, no control characters.
pub fn claim_key(field: &str, value: String) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    check_text(&field, &value, MAX_CLAIM_KEY)?;
    Ok(Some(value))
}

/// A presented token or key: required and bounded. Its shape is judged
/// later (a malformed token is a denial, not a bad request).
pub fn token(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(InvalidInput::new(field, "is required"));
    }
    if value.len() > MAX_TOKEN {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {MAX_TOKEN} bytes"),
        ));
    }
    Ok(())
}

/// Scopes, granted or required. A granted `connector:*` grants every scope
/// in the family; a required `connector:*` asks for the whole family, which
/// only a `connector:*` (or a wider family) grants.
pub fn scopes(field: &str, values: Vec<String>) -> Result<Vec<String>> {
    list(field, values, MAX_SCOPES, MAX_SCOPE, scope_grammar)
}

/// A scope is one or more non-empty segments joined by `:` (`tool`,
/// `tool:search`, `connector:github:read`), without whitespace or `*`, and
/// may end in `:*` after at least one segment (`connector:*`: the family).
/// So `*` alone, `:*`, `a::b`, `a:` and `a*` are not scopes.
fn scope_grammar(name: &dyn fmt::Display, scope: &str) -> Result<()> {
    if scope.chars().any(char::is_whitespace) {
        return Err(InvalidInput::new(name, "must not contain whitespace"));
    }
    let body = scope.strip_suffix(":*").unwrap_or(scope);
    if body.contains('*') {
        return Err(InvalidInput::new(
            name,
            "may use `*` only as a final `:*` after a family, like `connector:*`",
        ));
    }
    if body.split(':').any(str::is_empty) {
        return Err(InvalidInput::new(
            name,
            "must be non-empty segments separated by `:`",
        ));
    }
    Ok(())
}

/// Audience: client ids, and resource URIs (RFC 8707) kept in their
/// canonical form ([`crate::resource`]), so that two spellings of one
/// server are one entry.
pub fn audience(field: &str, values: Vec<String>) -> Result<Vec<String>> {
    let values = list(field, values, MAX_AUDIENCE, MAX_ID, |_, _| Ok(()))?;
    let mut entries: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let name = format!("{field}[{i}]");
        let entry = if resource::is_uri(&value) {
            resource::canonical(&value).map_err(|why| InvalidInput::new(&name, why))?
        } else {
            value
        };
        if entries.contains(&entry) {
            return Err(InvalidInput::new(name, "is a duplicate"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// RFC 8707's `resource`: absolute URIs only, in their canonical form.
pub fn resources(field: &str, values: Vec<String>) -> Result<Vec<String>> {
    if let Some(i) = values
        .iter()
        .position(|v| !v.is_empty() && !resource::is_uri(v))
    {
        return Err(InvalidInput::new(
            format!("{field}[{i}]"),
            "must be an absolute https URI (RFC 8707); name client ids in audience",
        ));
    }
    audience(field, values)
}

fn list(
    field: &str,
    values: Vec<String>,
    max_items: usize,
    max_len: usize,
    extra: impl Fn(&dyn fmt::Display, &str) -> Result<()>,
) -> Result<Vec<String>> {
    if values.len() > max_items {
        return Err(InvalidInput::new(
            field,
            format!("must have at most {max_items} entries"),
        ));
    }
    for (i, value) in values.iter().enumerate() {
        let name = format!("{field}[{i}]");
        if value.is_empty() {
            return Err(InvalidInput::new(name, "must not be empty"));
        }
        check_text(&name, value, max_len)?;
        extra(&name, value)?;
        if values[..i].contains(value) {
            return Err(InvalidInput::new(name, "is a duplicate"));
        }
    }
    Ok(values)
}

/// Labels: audit metadata, bounded in count and size.
pub fn labels(
    field: &str,
    values: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for (key, value) in values {
        if labels.len() == MAX_LABELS {
            return Err(InvalidInput::new(
                field,
                format!("must have at most {MAX_LABELS} entries"),
            ));
        }
        if key.is_empty() {
            return Err(InvalidInput::new(field, "keys must not be empty"));
        }
        // The key is named only by its position: it is caller text.
        check_text(&format_args!("{field} key"), &key, MAX_LABEL_KEY)?;
        check_text(&format_args!("{field} value"), &value, MAX_LABEL_VALUE)?;
        labels.insert(key, value);
    }
    Ok(labels)
}

pub fn payload(field: &str, value: Vec<u8>) -> Result<Vec<u8>> {
    if value.len() > MAX_PAYLOAD {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {MAX_PAYLOAD} bytes"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let err = required_id("subject", "evil\r\nINFO forged".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subject: must not contain control characters"
        );
        let err = scopes("scopes", vec!["a".into(), "b c".into()]).unwrap_err();
        assert_eq!(err.to_string(), "scopes[1]: must not contain whitespace");
        let err = scopes("scopes", vec!["a".into(), "a".into()]).unwrap_err();
        assert_eq!(err.to_string(), "scopes[1]: is a duplicate");
        let err = required_id("subject", "alice\u{200B}".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subject: must not contain invisible or bidirectional characters"
        );
        let err = audience("audience", vec![String::new()]).unwrap_err();
        assert_eq!(err.to_string(), "audience[0]: must not be empty");
        let err = audience("audience", vec!["http://mcp.example.com".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "audience[0]: must use https (http only on a loopback host)"
        );
        let err = resources("resource", vec!["mcp-server".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resource[0]: must be an absolute https URI")
        );
        let err = labels("labels", [("k".into(), "\u{1b}[31m".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels value: must not contain control characters"
        );
    }

    #[test]
    fn invisible_and_bidirectional_code_points_are_refused() {
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2028}', '\u{2029}', '\u{202A}', '\u{202E}',
            '\u{2066}', '\u{2069}', '\u{FEFF}',
        ] {
            let value = format!("a{c}b");
            assert!(required_id("subject", value.clone()).is_err(), "{c:?}");
            assert!(optional_id("run_id", value.clone()).is_err(), "{c:?}");
            assert!(scopes("scopes", vec![value.clone()]).is_err(), "{c:?}");
            assert!(audience("audience", vec![value.clone()]).is_err(), "{c:?}");
            assert!(
                labels("labels", [("k".into(), value.clone())]).is_err(),
                "{c:?}"
            );
            assert!(labels("labels", [(value, "v".into())]).is_err(), "{c:?}");
        }
        // Visible non-ASCII text is fine, and kept byte for byte.
        assert_eq!(
            required_id("subject", "zoë-日本".into()),
            Ok("zoë-日本".into())
        );
    }

    #[test]
    fn scope_grammar() {
        for good in ["tool", "tool:search", "connector:*", "a:b:*", "mcp://x/y"] {
            assert!(scopes("scopes", vec![good.into()]).is_ok(), "{good}");
        }
        for bad in ["*", ":*", "x:", ":x", "a::b", "a*", "a:*:b", "a:b*", "a:**"] {
            let err = scopes("scopes", vec![bad.into()]).unwrap_err();
            assert!(err.to_string().starts_with("scopes[0]: "), "{bad}: {err}");
        }
        let err = scopes("required_scopes", vec!["*".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required_scopes[0]: may use `*` only as a final `:*` after a family, like `connector:*`"
        );
    }

    #[test]
    fn audiences_hold_client_ids_and_canonical_resource_uris() {
        let given = vec!["mcp-server".into(), "HTTPS://MCP.example.com/mcp/".into()];
        assert_eq!(
            audience("audience", given),
            Ok(vec![
                "mcp-server".into(),
                "https://mcp.example.com/mcp".into()
            ])
        );
        let twice = vec![
            "https://mcp.example.com/mcp".into(),
            "https://MCP.example.com/mcp/".into(),
        ];
        let err = audience("audience", twice).unwrap_err();
        assert_eq!(err.to_string(), "audience[1]: is a duplicate");
        assert_eq!(
            resources("resource", vec!["http://localhost:3000/mcp".into()]),
            Ok(vec!["http://localhost:3000/mcp".into()])
        );
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(required_id("subject", "x".repeat(MAX_ID)).is_ok());
        assert!(required_id("subject", "x".repeat(MAX_ID + 1)).is_err());
        assert!(payload("payload", vec![0; MAX_PAYLOAD]).is_ok());
        assert!(payload("payload", vec![0; MAX_PAYLOAD + 1]).is_err());
        assert!(scopes("scopes", (0..MAX_SCOPES).map(|i| i.to_string()).collect()).is_ok());
        assert!(scopes("scopes", (0..=MAX_SCOPES).map(|i| i.to_string()).collect()).is_err());
        assert!(token("token", &"x".repeat(MAX_TOKEN)).is_ok());
        assert!(token("token", &"x".repeat(MAX_TOKEN + 1)).is_err());
        assert_eq!(optional_id("run_id", String::new()), Ok(None));
    }
}
