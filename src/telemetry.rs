//! Log set-up. `RUST_LOG` picks levels (default `info`); `--log-format`
//! picks text (see [`text`]) or JSON lines (see [`json`]). In both, a
//! field's value is written so that no text inside it, whoever wrote that
//! text, can end the value, add a field or start a line.
//!
//! Lines are formatted on the calling thread but written to stderr by a
//! thread of their own, so a slow terminal or log pipe never holds up a
//! reply, and a refusal's audit line costs the same formatting whatever its
//! reason. The writer never drops a line: when its queue is full, callers
//! wait, as they would for stderr itself.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

pub mod json;
pub mod text;

/// Installs the subscriber. Keep the guard until the process ends: dropping
/// it flushes the lines still queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("tessera-log")
        .finish(std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (tests start several servers in one process) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(text::TextFields).try_init(),
        LogFormat::Json => builder.event_format(json::JsonLines).try_init(),
    };
    guard
}
