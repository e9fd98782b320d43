//! Log output: `tracing` lines on standard error, as text or JSON.
//!
//! The level comes from `RUST_LOG` (default `info`). Text lines are written
//! by [`line::Line`], which costs a fraction of the default format, and
//! reach standard error in per-thread batches ([`batch`]). keyhole's own lines
//! never hold a header value, a query string, a body or a secret; the
//! dependencies' lines (hyper, h2, rustls) are checked by a test that runs
//! the proxy at `trace` and searches all output for the secrets.

pub mod batch;
pub mod line;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Keeps the subscriber's output complete: dropping it writes the lines
/// the calling thread has gathered (see [`batch`]).
#[derive(Debug)]
#[must_use = "dropping the guard writes the lines gathered so far; hold it until exit"]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        batch::flush_this_thread();
    }
}

/// Installs the global subscriber, at `RUST_LOG` or else `default_level`,
/// writing to standard error ([`batch::Stderr`]). Hold the guard until the
/// process ends. Calling it twice keeps the first subscriber.
pub fn init(format: LogFormat, default_level: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(batch::Stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.event_format(line::Line).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard(())
}
