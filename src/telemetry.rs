//! Log setup: `tracing` to stderr, JSON by default (`--log-format text` for humans), filtered by
//! `RUST_LOG` (default `info`). Request logs carry the fields of the request's span; Pod bodies
//! and environment values are never recorded.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::cli::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG: {0}")]
    Filter(tracing_subscriber::filter::FromEnvError),
    #[error("a log subscriber is already installed")]
    AlreadySet,
}

/// Installs the global subscriber. An empty or unset `RUST_LOG` means `info`.
pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_from_default_env().map_err(TelemetryError::Filter)?
        }
        _ => EnvFilter::new("info"),
    };
    // Colours only for a terminal: piped or collected logs stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
    result.map_err(|_| TelemetryError::AlreadySet)
}
