//! A strict reader of `--log-format text` lines, as a log pipeline would
//! split them: `<time> <level> <target>: <message> key=value ...`, every
//! string value quoted, only numbers and booleans bare. A line that does
//! not follow the grammar to its last byte is an error, so a value that
//! ended early or a field written twice shows.

/// One parsed line.
#[derive(Debug, Clone)]
pub struct TextLine {
    pub level: String,
    pub target: String,
    pub message: String,
    /// In order; each key once.
    pub fields: Vec<(String, String)>,
}

impl TextLine {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse(line: &str) -> Result<TextLine, String> {
    let fail = |why: &str| Err(format!("{why}: {line:?}"));
    let Some((time, rest)) = line.split_once(' ') else {
        return fail("no timestamp");
    };
    if !time.ends_with('Z') || !time.contains('T') {
        return fail("no timestamp");
    }
    let rest = rest.trim_start();
    let Some((level, rest)) = rest.split_once(' ') else {
        return fail("no level");
    };
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return fail("no level");
    }
    let Some((target, mut rest)) = rest.split_once(": ") else {
        return fail("no target");
    };
    if target.is_empty() || target.contains(' ') {
        return fail("bad target");
    }
    let message = if rest.starts_with('"') {
        let (message, after) = quoted(rest).ok_or_else(|| format!("bad message: {line:?}"))?;
        rest = after.strip_prefix(' ').unwrap_or(after);
        message
    } else {
        // A bare message holds no `=`: the first one belongs to a field.
        let end = match rest.find('=') {
            Some(eq) => rest[..eq].rfind(' ').map_or(0, |space| space),
            None => rest.len(),
        };
        let message = rest[..end].to_owned();
        rest = rest[end..].strip_prefix(' ').unwrap_or(&rest[end..]);
        message
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            return fail("text after the fields");
        };
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !key_ok {
            return fail(&format!("bad key {key:?}"));
        }
        if fields.iter().any(|(seen, _)| seen == key) {
            return fail(&format!("{key} written twice"));
        }
        let (value, after) = if after.starts_with('"') {
            quoted(after).ok_or_else(|| format!("bad value of {key}: {line:?}"))?
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let bare = &after[..end];
            let number = bare.parse::<f64>().is_ok() && !bare.contains(['N', 'n', 'i', 'I']);
            if !number && bare != "true" && bare != "false" {
                return fail(&format!("{key} is an unquoted string"));
            }
            (bare.to_owned(), &after[end..])
        };
        fields.push((key.to_owned(), value));
        rest = match after.strip_prefix(' ') {
            Some(next) if !next.is_empty() => next,
            Some(_) => return fail("trailing space"),
            None if after.is_empty() => after,
            None => return fail("no space after a value"),
        };
    }
    Ok(TextLine {
        level: level.to_owned(),
        target: target.to_owned(),
        message,
        fields,
    })
}

/// A quoted string at the start of `text`, unescaped, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[1 + at + 1..])),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    let mut hex = String::new();
                    loop {
                        match chars.next()?.1 {
                            '}' => break,
                            d => hex.push(d),
                        }
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    None
}

#[test]
fn the_reader_is_strict() {
    let line = r#"2026-01-01T00:00:00.000001Z  INFO tessera::audit: stored event="credential_put" bearer_id="x\" y=\"z\\\n" version=1"#;
    let parsed = parse(line).unwrap();
    assert_eq!(parsed.message, "stored");
    assert_eq!(parsed.get("bearer_id"), Some("x\" y=\"z\\\n"));
    assert_eq!(parsed.get("version"), Some("1"));
    for bad in [
        r#"2026-01-01T00:00:00Z  INFO t: m a=x"#,
        r#"2026-01-01T00:00:00Z  INFO t: m a="x" a="y""#,
        r#"2026-01-01T00:00:00Z  INFO t: m a="x"b="y""#,
        r#"2026-01-01T00:00:00Z  INFO t: m a="x"#,
        "2026-01-01T00:00:00Z  INFO t: m a=\"x\ny\"",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
