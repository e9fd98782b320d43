//! [`Counters`]: event counts since start, served by `/metrics` and logged
//! at shutdown.
//!
//! Relaxed atomics: these are counts, not ordering. Every request touches
//! the status and error counters, so those are arrays of atomics indexed
//! by status class and [`ErrorType`]; only the per-credential counts take
//! a lock, and only when a substitution happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::respond::ErrorType;
use crate::substitute::bodies::BodyCounts;

/// The labels of [`Counters::by_status`], in order.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// How many [`ErrorType`]s there are.
const ERROR_TYPES: usize = ErrorType::ALL.len();

/// Event counts since start.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests relayed (intercepted or plaintext).
    pub requests: AtomicU64,
    /// Placeholders replaced by their secret.
    pub substituted: AtomicU64,
    /// Placeholders passed on unsubstituted (wrong host, location or plaintext).
    pub passed: AtomicU64,
    /// CONNECTs tunnelled byte for byte.
    pub tunnels: AtomicU64,
    /// CONNECTs intercepted.
    pub intercepts: AtomicU64,
    /// CONNECTs and requests refused by egress.
    pub denied: AtomicU64,
    /// Placeholders in request bodies, replaced and passed.
    pub body: Arc<BodyCounts>,
    /// Request bodies left alone because of their Content-Encoding.
    pub encoded_bodies: AtomicU64,
    /// Secret forms replaced in responses (headers and bodies).
    pub scrubbed: Arc<AtomicU64>,
    /// Config reloads applied.
    pub reloads_ok: AtomicU64,
    /// Config reloads refused (invalid file).
    pub reloads_failed: AtomicU64,
    /// Substitutions (headers and bodies) by credential id.
    pub by_credential: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Answers to relayed requests by status class, indexed as
    /// [`STATUS_CLASSES`].
    pub by_status: [AtomicU64; 5],
    /// Responses keyhole made itself, indexed by [`ErrorType`].
    by_error: [AtomicU64; ERROR_TYPES],
}

// === impl Counters ===

impl Counters {
    /// Counts an answer by its status class.
    pub fn status(&self, status: StatusCode) {
        // 1xx..5xx; anything above 599 (hyper allows up to 999) counts as 5xx.
        let class = usize::from((status.as_u16() / 100).clamp(1, 5)) - 1;
        if let Some(n) = self.by_status.get(class) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a response keyhole made itself.
    pub fn error(&self, error: ErrorType) {
        if let Some(n) = self.by_error.get(error as usize) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every error type counted at least once, with its count.
    pub fn errors(&self) -> impl Iterator<Item = (ErrorType, u64)> + '_ {
        ErrorType::ALL
            .iter()
            .zip(&self.by_error)
            .map(|(t, n)| (*t, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }

    /// Counts `n` substitutions of credential `id`.
    pub fn substituted_for(&self, id: &str, n: u64) {
        if n > 0 {
            bump(&self.by_credential, id, n);
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Logs the totals (at shutdown).
    pub fn log_totals(&self) {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        tracing::info!(
            requests = load(&self.requests),
            substituted = load(&self.substituted),
            passed_unsubstituted = load(&self.passed),
            tunnels = load(&self.tunnels),
            intercepts = load(&self.intercepts),
            denied = load(&self.denied),
            body_substituted = load(&self.body.substituted),
            body_passed_unsubstituted = load(&self.body.passed),
            encoded_bodies = load(&self.encoded_bodies),
            scrubbed = load(&self.scrubbed),
            "totals"
        );
    }
}

/// Adds `n` under `key`; allocates the key only the first time it is seen.
pub fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str, n: u64) {
    if let Ok(mut m) = map.lock() {
        match m.get_mut(key) {
            Some(v) => *v += n,
            None => {
                m.insert(key.to_owned(), n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_errors_are_counted_by_kind() {
        let c = Counters::default();
        c.status(StatusCode::OK);
        c.status(StatusCode::from_u16(999).unwrap());
        c.error(ErrorType::HttpRequestDenied);
        c.error(ErrorType::HttpRequestDenied);
        c.error(ErrorType::TlsProtocolError);
        assert_eq!(c.by_status[1].load(Ordering::Relaxed), 1);
        assert_eq!(c.by_status[4].load(Ordering::Relaxed), 1);
        let errors: Vec<_> = c.errors().collect();
        assert_eq!(
            errors,
            [
                (ErrorType::HttpRequestDenied, 2),
                (ErrorType::TlsProtocolError, 1)
            ]
        );
    }
}
