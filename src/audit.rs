//! The audit log: one JSON line per substitution and per placeholder passed
//! on unsubstituted, never a value.
//!
//! Records go through a bounded queue to one writer task, so a slow disk
//! never holds a request back. Trade-off: when the queue is full a record
//! is dropped and counted (and the count logged) instead of slowing the
//! proxy; [`AUDIT_QUEUE`] makes that a burst of thousands of events.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Records waiting to be written. A request makes at most a few; the bound
/// absorbs bursts from thousands of requests while the disk catches up.
pub const AUDIT_QUEUE: usize = 8192;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the audit log {path}: {source}; check --audit-log and the folder's permissions"
)]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

/// What happened to a placeholder.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Replaced by its secret.
    Substituted,
    /// Left as it was.
    Passed,
}

/// Where the placeholder stood.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A header value.
    Header,
    /// The request body.
    Body,
}

/// One audit line. Holds names and ids, never a value.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    /// What happened.
    pub event: Event,
    /// Credential id.
    pub credential: String,
    /// The credential's `secret_name`.
    pub secret_name: String,
    /// Destination host.
    pub host: String,
    /// Request method.
    pub method: String,
    /// Request path, without the query.
    pub path: String,
    /// Where the placeholder stood.
    pub location: Location,
    /// Why: `allowed`, `host_not_allowed`, `location_disabled`, `plaintext`, `encoded_body`.
    pub reason: &'static str,
}

/// A handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens `path` for appending (created 0600) and starts the writer task.
    pub async fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(|source| AuditError {
                path: path.display().to_string(),
                source,
            })?;
        let (tx, mut rx) = mpsc::channel::<Record>(AUDIT_QUEUE);
        tokio::spawn(async move {
            let mut file = tokio::io::BufWriter::new(file);
            while let Some(record) = rx.recv().await {
                let mut line = serde_json::to_vec(&record).unwrap_or_default();
                line.push(b'\n');
                if file.write_all(&line).await.is_err() {
                    tracing::error!("cannot write the audit log; records are being lost");
                }
                // Flush when the queue is drained, so records reach the disk
                // promptly without a write per record under load.
                if rx.is_empty() {
                    let _ = file.flush().await;
                }
            }
            let _ = file.flush().await;
        });
        Ok(AuditLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues a record; drops and counts it when the queue is full.
    pub fn record(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit log queue full: records dropped");
            }
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Now, as RFC 3339 UTC.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A path without its query, for records.
pub fn path_only(path_and_query: &str) -> String {
    path_and_query.split('?').next().unwrap_or("/").to_owned()
}
