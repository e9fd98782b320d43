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

use http::Method;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::host::Host;
use crate::policy::Policy;

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

/// Why a placeholder was substituted or passed on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Substituted: the credential allows this host and location.
    Allowed,
    /// Passed: the credential does not allow the destination host.
    HostNotAllowed,
    /// Passed: the credential's injection location is off where the
    /// placeholder stood.
    LocationDisabled,
    /// Passed: plain `http://`, which never carries a secret.
    Plaintext,
    /// Passed: the body has a `Content-Encoding`.
    EncodedBody,
    /// Not injected: an MCP credential's origin, but a path outside its
    /// `mcp_server_url`'s.
    PathOutside,
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

/// The request records are about: destination, method and path (never
/// the query).
#[derive(Debug, Clone)]
pub struct Target {
    /// Destination host.
    pub host: Host,
    /// Request method.
    pub method: Method,
    /// Request path, without the query.
    pub path: String,
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
    /// Why.
    pub reason: Reason,
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

    /// Records what happened to credential `credential`'s placeholder in
    /// `target`: substituted (`reason` is then [`Reason::Allowed`]) or passed.
    pub fn placeholder(
        &self,
        policy: &Policy,
        target: &Target,
        credential: u32,
        location: Location,
        reason: Reason,
    ) {
        let c = policy.credential(credential);
        self.record(Record {
            time: now(),
            event: match reason {
                Reason::Allowed => Event::Substituted,
                _ => Event::Passed,
            },
            credential: c.map_or_else(String::new, |c| c.id.clone()),
            secret_name: c
                .and_then(|c| c.environment_variable())
                .map_or_else(String::new, |a| a.secret_name.clone()),
            host: target.host.to_string(),
            method: target.method.to_string(),
            path: target.path.clone(),
            location,
            reason,
        });
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

// === impl Reason ===

impl Reason {
    /// Why a header placeholder of a credential was passed on: `allowed`
    /// says whether the credential allows the destination, `plaintext`
    /// whether the request is plain `http://`, `header_on` whether the
    /// credential injects into headers.
    pub fn for_passed(allowed: bool, plaintext: bool, header_on: bool) -> Reason {
        match (allowed, plaintext && header_on) {
            (false, _) => Reason::HostNotAllowed,
            (true, true) => Reason::Plaintext,
            (true, false) => Reason::LocationDisabled,
        }
    }

    /// The log message for a placeholder passed for this reason.
    pub fn warning(self) -> &'static str {
        match self {
            Reason::Plaintext => "placeholder passed unsubstituted: plain http:// never carries a secret; use https://",
            Reason::LocationDisabled => "placeholder passed unsubstituted: its credential does not allow injection where it stands",
            Reason::HostNotAllowed => "placeholder passed unsubstituted: its credential does not allow this host",
            Reason::EncodedBody => "placeholder passed unsubstituted: the body has a Content-Encoding",
            Reason::PathOutside => "MCP credential not injected: same origin, path outside the credential's",
            Reason::Allowed => "placeholder substituted",
        }
    }
}

/// A path without its query, for records.
pub fn path_only(path_and_query: &str) -> String {
    path_and_query.split('?').next().unwrap_or("/").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_for_passed_placeholders() {
        assert_eq!(
            Reason::for_passed(false, true, true),
            Reason::HostNotAllowed
        );
        assert_eq!(Reason::for_passed(true, true, true), Reason::Plaintext);
        // Over https:// too it would not have been substituted: say why.
        assert_eq!(
            Reason::for_passed(true, true, false),
            Reason::LocationDisabled
        );
        assert_eq!(
            Reason::for_passed(true, false, true),
            Reason::LocationDisabled
        );
        assert_eq!(path_only("/a/b?token=x"), "/a/b");
        let json = serde_json::to_string(&Reason::HostNotAllowed).unwrap();
        assert_eq!(json, "\"host_not_allowed\"");
    }
}
