//! `--log-format text`: one line per event, `key=value` fields that a
//! reader (or a parser) can split without being fooled.
//!
//! tracing-subscriber's own text fields write a value recorded with `%`
//! bare and a `&str` quoted, so the same field was written two ways
//! (`client=dev` on a mint, `client="dev"` on a replay), and a bare value
//! holding caller text (`bearer_id=x event="credential_deleted"`) wrote
//! fields of its own into the line. Here the rule is one, whatever the
//! event and however the field was recorded:
//!
//! - every string value is quoted and escaped: `"` as `\"`, `\` as `\\`,
//!   newline, return and tab as `\n`, `\r`, `\t`, and any other control,
//!   invisible or bidirectional code point as `\u{…}`; so a value never
//!   ends early, never holds a line break, and never reorders a console;
//! - integers, floats and booleans are written bare;
//! - the message (the server's own prose) comes first, bare, unless it
//!   holds `=`, `"`, `\`, or a character escaped above, in which case it is
//!   quoted like a value.
//!
//! So a line reads `<time> <level> <target>: <message> key="text" n=3`, and
//! the first unquoted `=` after the target ends the message.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, format::Writer},
};

/// Formats event (and span) fields as described above.
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut line = Fields::default();
        fields.record(&mut line);
        line.result?;
        let mut first = true;
        if let Some(message) = &line.message {
            message_text(&mut writer, message)?;
            first = false;
        }
        if !line.fields.is_empty() {
            if !first {
                writer.write_char(' ')?;
            }
            writer.write_str(&line.fields)?;
        }
        Ok(())
    }
}

/// An event's message, apart, and its other fields, already written.
struct Fields {
    message: Option<String>,
    fields: String,
    result: fmt::Result,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            message: None,
            fields: String::new(),
            result: Ok(()),
        }
    }
}

impl Fields {
    fn key(&mut self, field: &Field) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        self.fields.push_str(field.name());
        self.fields.push('=');
    }

    fn bare(&mut self, field: &Field, value: impl fmt::Display) {
        self.key(field);
        let written = write!(self.fields, "{value}");
        self.result = self.result.and(written);
    }

    fn text(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
            return;
        }
        self.key(field);
        let written = quoted(&mut self.fields, value);
        self.result = self.result.and(written);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.bare(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.bare(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // `NaN` and `inf` are not numbers a reader parses: quote them.
        if value.is_finite() {
            self.bare(field, value);
        } else {
            self.text(field, &value.to_string());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, value);
    }

    /// `%` and `?` values (errors, addresses, durations) and the message:
    /// their text, which may be anyone's, is a string like any other.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
}

/// Whether `c` is written as an escape: it ends a value (`"`), starts an
/// escape (`\`), breaks a line, or cannot be seen.
fn escaped(c: char) -> bool {
    c == '"' || c == '\\' || c.is_control() || crate::input::is_invisible(c)
}

/// `value` in double quotes, escaped.
fn quoted(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if escaped(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// The message bare when nothing in it could be read as a field, a quote
/// or a line break; quoted otherwise.
fn message_text(out: &mut impl fmt::Write, message: &str) -> fmt::Result {
    if message.contains('=') || message.chars().any(escaped) {
        quoted(out, message)
    } else {
        out.write_str(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::json::tests::Sink;

    /// What `emit` writes after `target: `, as the server would.
    fn logged(emit: impl FnOnce()) -> String {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(TextFields)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        let (_, rest) = text.split_once(": ").unwrap();
        rest.trim_end_matches('\n').to_owned()
    }

    #[test]
    fn every_string_is_quoted_however_it_was_recorded() {
        let name = String::from("dev");
        let line = logged(|| {
            tracing::info!(
                shown = %name,
                debugged = ?name,
                plain = name.as_str(),
                count = 3u64,
                delta = -2i64,
                share = 0.5,
                nan = f64::NAN,
                ok = true,
                "minted"
            )
        });
        assert_eq!(
            line,
            r#"minted shown="dev" debugged="\"dev\"" plain="dev" count=3 delta=-2 share=0.5 nan="NaN" ok=true"#
        );
    }

    #[test]
    fn caller_text_cannot_end_a_value_or_a_line() {
        let evil =
            "x\" event=\"credential_deleted\" client=admin\\\nINFO forged: line\u{1b}[2J\u{202e}";
        let line = logged(|| tracing::info!(bearer_id = %evil, name = evil, "stored"));
        assert_eq!(
            line,
            r#"stored bearer_id="x\" event=\"credential_deleted\" client=admin\\\nINFO forged: line\u{1b}[2J\u{202e}" name="x\" event=\"credential_deleted\" client=admin\\\nINFO forged: line\u{1b}[2J\u{202e}""#
        );
    }

    #[test]
    fn a_message_is_quoted_only_when_it_could_mislead() {
        assert_eq!(
            logged(|| tracing::warn!(n = 1, "plain words")),
            "plain words n=1"
        );
        let why = "a=b \"c\"";
        assert_eq!(
            logged(|| tracing::warn!(n = 1, "{why}")),
            r#""a=b \"c\"" n=1"#
        );
        assert_eq!(logged(|| tracing::warn!("two\nlines")), r#""two\nlines""#);
        assert_eq!(logged(|| tracing::warn!(n = 1)), "n=1");
    }
}
