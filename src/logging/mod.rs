//! Log output: `tracing` lines on standard error, as text or JSON.
//!
//! The level comes from `RUST_LOG` (default `info`). Text lines are written
//! by [`line::Line`], which costs a fraction of the default format. keyhole's own lines
//! never hold a header value, a query string, a body or a secret; the
//! dependencies' lines (hyper, h2, rustls) are checked by a test that runs
//! the proxy at `trace` and searches all output for the secrets.

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

/// Log lines waiting for the writer thread. A burst of requests logs one
/// line each; 8,192 lines absorb a second of a busy proxy's bursts. When
/// the queue is full the logging task waits rather than drop a line: the
/// log is where passed placeholders and refusals are recorded.
pub const LOG_QUEUE_LINES: usize = 8_192;

/// Bytes the writer thread gathers before a write(2): it drains the queue
/// into this buffer and flushes when the queue is empty, so a burst of
/// lines costs one system call instead of one each.
pub const LOG_WRITE_BUFFER: usize = 64 * 1024;

/// Keeps the log writer running; dropping it flushes what is queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber, at `RUST_LOG` or else `default_level`,
/// writing to standard error from a background thread. Hold the guard
/// until the process ends. Calling it twice keeps the first subscriber.
pub fn init(format: LogFormat, default_level: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("keyhole-log")
        .finish(std::io::BufWriter::with_capacity(
            LOG_WRITE_BUFFER,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.event_format(line::Line).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}
