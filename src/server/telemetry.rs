//! Log setup: `tracing` to stderr, JSON by default (`--log-format text` for humans), filtered by
//! `RUST_LOG` (default `info`). Request logs carry the fields of the request's span; Pod bodies
//! and environment values are never recorded, and strings a client chose are capped
//! ([`capped`]).
//!
//! Lines are formatted on the task that logs and written to stderr by a dedicated thread through
//! a bounded queue ([`LOG_QUEUE_LINES`]): a slow or blocked stderr (a full pipe, a stalled log
//! collector) never stalls admission. When the queue is full, lines are dropped and counted
//! (`gke_wi_injector_log_lines_dropped_total`).

use std::borrow::Cow;
use std::io::IsTerminal as _;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Log lines waiting for the writer thread; beyond this they are dropped and counted. A request
/// line is under 2 KiB with its strings capped, so the queue holds at most a few MiB.
pub const LOG_QUEUE_LINES: usize = 4096;

/// Longest client-chosen string written to a log line, in bytes (a Kubernetes name is at most
/// 253; a Pod the API server has not validated yet may carry a name of any length).
pub const MAX_LOGGED_STRING_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG: {0}")]
    Filter(tracing_subscriber::filter::FromEnvError),
    #[error("a log subscriber is already installed")]
    AlreadySet,
}

/// Keeps the log writer thread running; dropping it flushes the queued lines.
#[derive(Debug)]
pub struct LogGuard {
    _worker: WorkerGuard,
    dropped: ErrorCounter,
}

impl LogGuard {
    /// A handle that reads the dropped-lines count, for the metrics.
    pub fn dropped_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let counter = self.dropped.clone();
        move || counter.dropped_lines() as u64
    }
}

/// Installs the global subscriber. An empty or unset `RUST_LOG` means `info`.
pub fn init(format: LogFormat) -> Result<LogGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_from_default_env().map_err(TelemetryError::Filter)?
        }
        _ => EnvFilter::new("info"),
    };
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    // Colours only for a terminal: piped or collected logs stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .try_init(),
        LogFormat::Text => builder.with_span_events(FmtSpan::NONE).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadySet)?;
    Ok(LogGuard {
        _worker: worker,
        dropped,
    })
}

/// `s`, or its first [`MAX_LOGGED_STRING_BYTES`] (cut at a character boundary) followed by
/// `…(N bytes)` with the full length.
pub fn capped(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_LOGGED_STRING_BYTES {
        return Cow::Borrowed(s);
    }
    let mut end = MAX_LOGGED_STRING_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…({} bytes)", &s[..end], s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_logged_as_they_are() {
        assert!(matches!(capped("team-a"), Cow::Borrowed("team-a")));
        let edge = "x".repeat(MAX_LOGGED_STRING_BYTES);
        assert_eq!(capped(&edge), edge.as_str());
    }

    #[test]
    fn long_strings_are_cut_and_say_how_long_they_were() {
        let name = "n".repeat(1 << 20);
        let got = capped(&name);
        assert_eq!(
            got,
            format!("{}…(1048576 bytes)", "n".repeat(MAX_LOGGED_STRING_BYTES))
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 'é' is two bytes: 255 ASCII bytes put a character across the cut.
        let s = format!(
            "{}{}",
            "a".repeat(MAX_LOGGED_STRING_BYTES - 1),
            "é".repeat(10)
        );
        let got = capped(&s);
        assert!(got.starts_with(&"a".repeat(MAX_LOGGED_STRING_BYTES - 1)));
        assert!(got.ends_with(&format!("…({} bytes)", s.len())));
        assert!(!got.contains('é'));
    }
}
