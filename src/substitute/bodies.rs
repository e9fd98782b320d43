//! Bodies: placeholders in request bodies, and secrets in responses.
//!
//! Both run over the streaming engine ([`super::stream`]) with patterns
//! compiled once per config: the placeholders (for request bodies) and
//! every form of every secret (for response scrubbing, [`super::scrub`]).
//! [`RewriteBody`] applies a [`Stream`] to an `http_body::Body` frame by
//! frame, so memory stays bounded whatever the body's size.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::scrub::{scrub_patterns, scrub_value_with, ScrubPattern};
use super::stream::{Decide, Patterns, Stream};
use super::{Entry, SubstituteError};
use crate::secret::Secret;

/// What replaces a secret that has no placeholder (an MCP token) in a
/// response: the client never held it, so any stand-in will do.
pub const REDACTED: &str = "keyhole-redacted";

/// The compiled body and response patterns of one config.
#[derive(Clone)]
pub struct Bodies {
    /// Over the placeholders, pattern `i` = entry `i`.
    placeholders: Arc<Patterns>,
    /// Over every form of every secret.
    secrets: Arc<Patterns>,
    /// What replaces each secret form (the placeholder, in that form).
    scrub: Arc<[ScrubPattern]>,
    /// Per entry: (credential index, secret bytes, body injection on).
    replacements: Arc<[(u32, Bytes, bool)]>,
}

/// Counts of one request body's placeholders, shared with the proxy.
#[derive(Debug, Default)]
pub struct BodyCounts {
    /// Placeholders replaced by their secret.
    pub substituted: AtomicU64,
    /// Placeholders passed on unchanged.
    pub passed: AtomicU64,
}

/// Told of each placeholder found in a request body: the credential index
/// and whether it was substituted (for the audit log).
pub type BodyEvents = Arc<dyn Fn(u32, bool) + Send + Sync>;

/// Decides, for a request body, which placeholders become secrets.
pub struct RequestDecider {
    replacements: Arc<[(u32, Bytes, bool)]>,
    allowed: Vec<u32>,
    counts: Arc<BodyCounts>,
    events: Option<BodyEvents>,
}

/// Replaces every secret form in a response with its placeholder form.
pub struct ScrubDecider {
    scrub: Arc<[ScrubPattern]>,
    found: Arc<AtomicU64>,
}

/// A body passed through a [`Stream`]. Trailers pass unchanged.
pub struct RewriteBody<B, D> {
    inner: B,
    stream: Stream,
    decide: D,
    out: Vec<Bytes>,
    pending: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    done: bool,
}

// === impl Bodies ===

impl Bodies {
    /// Patterns for `entries`, whose secrets are scrubbed back to their
    /// placeholders, and for `scrub_only` secrets (MCP tokens, which have
    /// no placeholder), scrubbed to [`REDACTED`].
    pub(super) fn new(
        entries: &[Entry],
        scrub_only: &[(u32, &Secret)],
    ) -> Result<Bodies, SubstituteError> {
        let placeholders = Patterns::new(
            &entries
                .iter()
                .map(|e| e.placeholder.as_bytes())
                .collect::<Vec<_>>(),
        )?;
        let secrets: Vec<(u32, &Secret, &str)> = entries
            .iter()
            .map(|e| (e.credential, &e.secret, e.placeholder.as_str()))
            .chain(scrub_only.iter().map(|(c, s)| (*c, *s, REDACTED)))
            .collect();
        let scrub = scrub_patterns(&secrets);
        let secret_patterns = Patterns::new(
            &scrub
                .iter()
                .map(|p| p.needle.as_slice())
                .collect::<Vec<_>>(),
        )?;
        let replacements = entries
            .iter()
            .map(|e| {
                (
                    e.credential,
                    Bytes::copy_from_slice(e.secret.expose().as_bytes()),
                    e.location.body,
                )
            })
            .collect();
        Ok(Bodies {
            placeholders: Arc::new(placeholders),
            secrets: Arc::new(secret_patterns),
            scrub: scrub.into(),
            replacements,
        })
    }

    /// Scrubbing only, for secrets a config's patterns do not hold yet (an
    /// MCP access token just refreshed): each becomes [`REDACTED`].
    pub fn scrub_only(secrets: &[(u32, &Secret)]) -> Result<Bodies, SubstituteError> {
        Bodies::new(&[], secrets)
    }

    /// Whether a credential in `allowed` has body injection on, so that a
    /// request body's length may change.
    pub fn may_substitute(&self, allowed: &[u32]) -> bool {
        self.replacements
            .iter()
            .any(|(c, _, body)| *body && allowed.contains(c))
    }

    /// Wraps a request body: placeholders of `allowed` credentials with
    /// body injection become their secrets; others pass and are counted.
    pub fn request<B>(
        &self,
        body: B,
        allowed: &[u32],
        counts: Arc<BodyCounts>,
        events: Option<BodyEvents>,
    ) -> RewriteBody<B, RequestDecider> {
        let decide = RequestDecider {
            replacements: self.replacements.clone(),
            allowed: allowed.to_vec(),
            counts,
            events,
        };
        RewriteBody::new(body, Stream::new(self.placeholders.clone()), decide)
    }

    /// Wraps a response body: every secret form becomes its placeholder form.
    pub fn response<B>(&self, body: B, found: Arc<AtomicU64>) -> RewriteBody<B, ScrubDecider> {
        let decide = ScrubDecider {
            scrub: self.scrub.clone(),
            found,
        };
        RewriteBody::new(body, Stream::new(self.secrets.clone()), decide)
    }

    /// Scrubs every response header value; returns how many values changed.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) -> usize {
        let mut changed = 0;
        for value in headers.values_mut() {
            if let Some(clean) = scrub_value_with(&self.secrets, &self.scrub, value.as_bytes()) {
                if let Ok(v) = http::HeaderValue::from_bytes(&clean) {
                    *value = v;
                } else {
                    // A value keyhole cannot rebuild is dropped to a marker
                    // rather than passed on with a secret in it.
                    *value = http::HeaderValue::from_static("keyhole-scrubbed");
                }
                changed += 1;
            }
        }
        changed
    }
}

// === impl RequestDecider ===

impl Decide for RequestDecider {
    fn decide(&mut self, pattern: usize) -> Option<Bytes> {
        let (credential, secret, body) = self.replacements.get(pattern)?;
        let substitute = *body && self.allowed.contains(credential);
        if let Some(events) = &self.events {
            events(*credential, substitute);
        }
        if substitute {
            self.counts.substituted.fetch_add(1, Ordering::Relaxed);
            Some(secret.clone())
        } else {
            self.counts.passed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

// === impl ScrubDecider ===

impl Decide for ScrubDecider {
    fn decide(&mut self, pattern: usize) -> Option<Bytes> {
        let p = self.scrub.get(pattern)?;
        self.found.fetch_add(1, Ordering::Relaxed);
        Some(p.replacement.clone())
    }
}

// === impl RewriteBody ===

impl<B, D> RewriteBody<B, D> {
    fn new(inner: B, stream: Stream, decide: D) -> Self {
        RewriteBody {
            inner,
            stream,
            decide,
            out: Vec::new(),
            pending: VecDeque::new(),
            trailers: None,
            done: false,
        }
    }
}

impl<B, D> Body for RewriteBody<B, D>
where
    B: Body<Data = Bytes> + Unpin,
    D: Decide + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(data) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.stream.push(data, &mut this.decide, &mut this.out);
                    }
                    Err(frame) => {
                        this.stream.finish(&mut this.decide, &mut this.out);
                        this.done = true;
                        this.trailers = frame.into_trailers().ok();
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.stream.finish(&mut this.decide, &mut this.out);
                    this.done = true;
                }
            }
            this.pending
                .extend(this.out.drain(..).filter(|b| !b.is_empty()));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The length may change: unknown.
        SizeHint::default()
    }
}
