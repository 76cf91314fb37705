//! `--log-format json`: one JSON object per line, its fields typed.
//!
//! tracing-subscriber's own JSON lines write every field recorded with `?`
//! or `%` as the string of its text (a subject as `"\"u\""`, labels as Rust
//! debug text) and cannot nest. Here a line holds `timestamp` (RFC 3339,
//! UTC), `level`, `target` and `message`, then the event's fields as they
//! were recorded: a `&str` as a string, integers, floats and booleans as
//! JSON numbers and booleans, and anything recorded with `%` or `?` (the
//! message, errors) as the string of its text. Spans are not written: the
//! server opens none of its own.
//!
//! Nested values: tracing fields are flat, so a field named in
//! [`JSON_FIELDS`] (`labels`) is recorded as a `&str` holding compact JSON,
//! and is written here as that JSON value (as a string if it does not
//! parse). Text lines show the JSON text.
//!
//! A field named like the line's own keys (`timestamp`, `level`, `target`)
//! is written as `field.<name>`, so no key appears twice.

use std::fmt;

use serde_json::{Number, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// Fields recorded as a `&str` of compact JSON, written as JSON values.
pub const JSON_FIELDS: &[&str] = &["labels"];

/// The keys every line starts with.
const OWN_KEYS: [&str; 3] = ["timestamp", "level", "target"];

/// Formats each event as one JSON object.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Line(vec![
            ("timestamp".into(), timestamp.into()),
            ("level".into(), meta.level().as_str().into()),
            ("target".into(), meta.target().into()),
        ]);
        event.record(&mut line);
        writer.write_char('{')?;
        for (i, (key, value)) in line.0.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            // `Value`'s Display is compact JSON, strings quoted and escaped.
            write!(writer, "{comma}{}:{value}", Value::String(key.clone()))?;
        }
        writer.write_str("}\n")
    }
}

/// A line's keys and values, in order.
struct Line(Vec<(String, Value)>);

impl Line {
    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            // Right after the line's own keys, wherever it was recorded.
            self.0.insert(OWN_KEYS.len(), (name.into(), value));
        } else if OWN_KEYS.contains(&name) {
            self.0.push((format!("field.{name}"), value));
        } else {
            self.0.push((name.into(), value));
        }
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        let json = JSON_FIELDS
            .contains(&field.name())
            .then(|| serde_json::from_str(value).ok())
            .flatten();
        self.push(field, json.unwrap_or_else(|| value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), Value::from);
        self.push(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = u64::try_from(value).map_or_else(|_| value.to_string().into(), Value::from);
        self.push(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and the infinities are not JSON numbers.
        let number = Number::from_f64(value).map(Value::Number);
        self.push(field, number.unwrap_or_else(|| value.to_string().into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// Lines written, shared with the subscriber.
    #[derive(Clone, Default)]
    pub(crate) struct Sink(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The one line `emit` logs, as written and parsed (also for the
    /// audit events' tests).
    pub(crate) fn logged(emit: impl FnOnce()) -> (String, serde_json::Map<String, Value>) {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        match serde_json::from_str(&text).unwrap() {
            Value::Object(line) => (text, line),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn fields_keep_their_types() {
        let subject = String::from("u \"quoted\"");
        let (text, line) = logged(|| {
            tracing::info!(
                target: "tessera::audit",
                subject = %subject,
                client = "proxy",
                labels = r#"{"env":"prod","team":"a"}"#,
                max_uses = 3u32,
                ttl_ms = 600_000u128,
                delta = -2i64,
                share = 0.5,
                retried = false,
                error = %io::Error::other("broken"),
                "minted {}",
                7
            )
        });
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        assert_eq!(at("timestamp"), 1, "{text}");
        assert!(at("level") < at("target") && at("target") < at("message"));
        assert!(at("message") < at("subject"), "{text}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "tessera::audit");
        assert_eq!(line["message"], "minted 7");
        assert_eq!(line["subject"], "u \"quoted\"");
        assert_eq!(line["client"], "proxy");
        assert_eq!(
            line["labels"],
            serde_json::json!({"env": "prod", "team": "a"})
        );
        assert_eq!(line["max_uses"], 3);
        assert_eq!(line["ttl_ms"], 600_000);
        assert_eq!(line["delta"], -2);
        assert_eq!(line["share"], 0.5);
        assert_eq!(line["retried"], false);
        assert_eq!(line["error"], "broken");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
    }

    #[test]
    fn odd_values_stay_valid_json() {
        let (_, line) = logged(|| {
            tracing::warn!(
                labels = "{not json",
                target = "a field, not the target",
                huge = u128::MAX,
                nan = f64::NAN,
                "odd"
            )
        });
        assert_eq!(line["labels"], "{not json");
        assert_eq!(line["field.target"], "a field, not the target");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["huge"], u128::MAX.to_string());
        assert_eq!(line["nan"], "NaN");
    }
}
