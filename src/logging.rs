//! Log output: `tracing` lines on standard error, as text or JSON.
//!
//! The level comes from `RUST_LOG` (default `info`). keyhole's own lines
//! never hold a header value, a query string, a body or a secret; the
//! dependencies' lines (hyper, h2, rustls) are checked by a test that runs
//! the proxy at `trace` and searches all output for the secrets.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the global subscriber, at `RUST_LOG` or else `default_level`.
/// Calling it twice keeps the first.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
