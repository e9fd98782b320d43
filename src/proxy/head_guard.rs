//! Checks every HTTP/1.1 request head a client sends before hyper parses it.
//!
//! hyper answers a head it cannot parse with its own bare `400`/`431`/`414`
//! (no `Proxy-Status`, no explanation), and it accepts a request with both
//! `Content-Length` and `Transfer-Encoding` (dropping the length, RFC 9112
//! 6.3) where keyhole refuses it: the pair is the classic smuggling shape,
//! and an egress proxy has no client that needs it.
//!
//! [`HeadGuard`] sits between the socket and hyper. It holds each head back
//! until it is complete, parses it with the same parser hyper uses
//! (`httparse`, same limits), and then either hands it on unchanged, or, if
//! hyper would refuse it or keyhole refuses it, hands hyper a fixed
//! stand-in request instead and records why in [`HeadChecks`]. The service
//! takes that record for the request with the same sequence number and
//! answers keyhole's own refusal; the stand-in asks to close the connection,
//! and nothing after it is read.
//!
//! To find the next head, the guard follows each body's framing (a
//! `Content-Length` count, or chunk sizes). Where it could disagree with
//! hyper it stops checking instead of guessing: after a CONNECT or an
//! `Upgrade`, and at a chunk it cannot read, it passes bytes through
//! untouched and hyper's own rules apply. It never inserts anything into a
//! body. The cost: one copy of each head (bodies with a length are read
//! straight into hyper's buffer; chunked bodies pass through the guard's).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::respond::{Framing, ProxyError};

/// Headers per request, as hyper's default: more is `431`.
pub const MAX_HEADERS: usize = 100;

/// Longest request target hyper takes (`u16::MAX - 1`): longer is `414`.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// Room made in the guard's own buffer before each read (heads, chunked
/// bodies, the bytes after a body): a bound on what one read may hold back.
/// Heads themselves are bounded by `max_head`.
const READ_CHUNK: usize = 8 * 1024;

/// Room for the first read of a head: most heads fit, and an idle
/// keep-alive connection waits with no more than this allocated.
const FIRST_READ: usize = 1024;

/// What hyper sees in place of a refused head: valid, asking to close.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: keyhole.invalid\r\nconnection: close\r\n\r\n";

/// The refusal for a request, by its sequence number on the connection,
/// shared by a [`HeadGuard`] and the connection's service.
#[derive(Debug, Default)]
pub struct HeadChecks {
    refused: Mutex<Option<(u64, ProxyError)>>,
    dispatched: AtomicU64,
}

/// An IO that checks request heads on their way to hyper.
pub struct HeadGuard<T> {
    inner: T,
    checks: std::sync::Arc<HeadChecks>,
    max_head: usize,
    /// Bytes read from `inner`, not yet handed on.
    pending: BytesMut,
    phase: Phase,
    /// Heads handed on so far (stand-ins included).
    heads: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting the next head in `pending`.
    Head,
    /// Handing on a checked head of this many bytes, then `next`.
    Deliver(usize, Body),
    /// A body of this many bytes remains.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No more checking: bytes pass through.
    Through,
    /// The stand-in was handed on; nothing more is read.
    Closed,
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked,
    /// CONNECT or Upgrade: what follows may not be HTTP.
    Through,
    /// The head was the stand-in.
    Closed,
}

/// Where a chunked body's scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a size (`digits` so far, `size` their value).
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: extensions or whitespace up to CR.
    Ext {
        size: u64,
    },
    /// Expecting the LF of a size line.
    SizeLf {
        size: u64,
    },
    /// This many data bytes remain.
    Data(u64),
    /// Expecting CR, then LF, after data.
    DataCr,
    DataLf,
    /// In the trailer section: at a line's start, inside a line, or at the
    /// LF of a line (`empty` when the line was empty: the body's end).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    /// The body ended.
    Done,
}

// === impl HeadChecks ===

impl HeadChecks {
    /// Called by the service once per request, in order: the refusal to
    /// answer instead of handling it, if its head was refused.
    pub fn refusal_for_next_request(&self) -> Option<ProxyError> {
        let n = self.dispatched.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some((index, _)) if *index == n => slot.take().map(|(_, r)| r),
            _ => None,
        }
    }

    fn refuse(&self, index: u64, refusal: ProxyError) {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some((index, refusal));
    }
}

// === impl HeadGuard ===

impl<T> HeadGuard<T> {
    /// Guards `inner`; heads longer than `max_head` bytes are `431`.
    pub fn new(inner: T, checks: std::sync::Arc<HeadChecks>, max_head: usize) -> Self {
        HeadGuard {
            inner,
            checks,
            max_head,
            pending: BytesMut::new(),
            phase: Phase::Head,
            heads: 0,
        }
    }

    /// Parses `pending` as a head: the phase to go on with, or None when
    /// more bytes are needed.
    fn check_head(&mut self) -> Option<Phase> {
        let verdict = match parse(&self.pending, self.max_head) {
            Parsed::Partial if self.pending.len() < self.max_head => return None,
            Parsed::Partial => Err(ProxyError::HeadTooLarge {
                limit: self.max_head,
            }),
            Parsed::Head(len, body) => Ok((len, body)),
            Parsed::Refused(refusal) => Err(refusal),
        };
        let index = self.heads;
        self.heads += 1;
        Some(match verdict {
            Ok((len, body)) => Phase::Deliver(len, body),
            Err(refusal) => {
                tracing::info!(
                    status = refusal.status().as_u16(),
                    "request head refused before parsing"
                );
                self.checks.refuse(index, refusal);
                self.pending.clear();
                self.pending.extend_from_slice(STAND_IN);
                Phase::Deliver(STAND_IN.len(), Body::Closed)
            }
        })
    }
}

impl<T: AsyncRead + Unpin> HeadGuard<T> {
    /// Reads more of `inner` into `pending`, making `room` first; Ok(false)
    /// at end of stream. Reads into spare capacity: nothing is zeroed.
    ///
    /// With nothing pending (a connection waiting for its next request),
    /// the read goes to the stack first and `pending` is allocated only
    /// for bytes that came: an idle connection holds no buffer here.
    fn fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<bool>> {
        if self.pending.is_empty() && room <= FIRST_READ {
            let mut first = [const { std::mem::MaybeUninit::<u8>::uninit() }; FIRST_READ];
            let mut read = ReadBuf::uninit(&mut first);
            return match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Ok(false)),
                Poll::Ready(Ok(())) => {
                    self.pending.extend_from_slice(read.filled());
                    Poll::Ready(Ok(true))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        self.pending.reserve(room);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.inner), cx, &mut self.pending) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(true)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Head => {
                    if this.pending.is_empty() && this.pending.capacity() > 0 {
                        // Between requests nothing is held: an idle
                        // connection keeps no buffer.
                        this.pending = BytesMut::new();
                    }
                    if let Some(next) = this.check_head() {
                        this.phase = next;
                        continue;
                    }
                    // A connection waiting for its next request holds only
                    // a small buffer; a head that needs more grows it.
                    let room = if this.pending.is_empty() {
                        FIRST_READ
                    } else {
                        READ_CHUNK
                    };
                    match this.fill(cx, room) {
                        Poll::Ready(Ok(true)) => continue,
                        // End of stream inside a head: hand on what there
                        // is; hyper reports the incomplete message.
                        Poll::Ready(Ok(false)) => this.phase = Phase::Through,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Phase::Deliver(left, body) => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    if left == 0 {
                        this.phase = match body {
                            Body::Length(0) => Phase::Head,
                            Body::Length(n) => Phase::Length(n),
                            Body::Chunked => Phase::Chunked(Chunk::Size { size: 0, digits: 0 }),
                            Body::Through => Phase::Through,
                            Body::Closed => Phase::Closed,
                        };
                        continue;
                    }
                    let n = left.min(buf.remaining()).min(this.pending.len());
                    buf.put_slice(this.pending.get(..n).unwrap_or_default());
                    this.pending.advance(n);
                    this.phase = Phase::Deliver(left - n, body);
                    return Poll::Ready(Ok(()));
                }
                Phase::Length(left) => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let room = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.remaining());
                    let n = if !this.pending.is_empty() {
                        let n = room.min(this.pending.len());
                        buf.put_slice(this.pending.get(..n).unwrap_or_default());
                        this.pending.advance(n);
                        n
                    } else if room == buf.remaining() {
                        // The whole buffer is body: read straight into it.
                        let before = buf.filled().len();
                        match Pin::new(&mut this.inner).poll_read(cx, buf) {
                            Poll::Ready(Ok(())) => {}
                            other => return other,
                        }
                        buf.filled().len() - before
                    } else {
                        // The body ends inside hyper's buffer: read into
                        // the guard's, so that what follows the body is
                        // checked as the next head.
                        match this.fill(cx, READ_CHUNK) {
                            Poll::Ready(Ok(true)) => continue,
                            Poll::Ready(Ok(false)) => 0,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => return Poll::Pending,
                        }
                    };
                    if n == 0 {
                        // End of stream inside the body: hyper reports it.
                        return Poll::Ready(Ok(()));
                    }
                    let left = left - n as u64;
                    this.phase = if left == 0 {
                        Phase::Head
                    } else {
                        Phase::Length(left)
                    };
                    return Poll::Ready(Ok(()));
                }
                Phase::Chunked(state) => {
                    if this.pending.is_empty() {
                        match this.fill(cx, READ_CHUNK) {
                            Poll::Ready(Ok(true)) => {}
                            Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    let room = buf.remaining().min(this.pending.len());
                    let (used, next) =
                        scan_chunked(state, this.pending.get(..room).unwrap_or_default());
                    buf.put_slice(this.pending.get(..used).unwrap_or_default());
                    this.pending.advance(used);
                    this.phase = match next {
                        Some(Chunk::Done) => Phase::Head,
                        Some(state) => Phase::Chunked(state),
                        None => Phase::Through,
                    };
                    if used == 0 && room > 0 {
                        // Nothing of the body here: the next phase reads.
                        continue;
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Through => {
                    if !this.pending.is_empty() {
                        let n = buf.remaining().min(this.pending.len());
                        buf.put_slice(this.pending.get(..n).unwrap_or_default());
                        this.pending.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                // The stand-in asked hyper to close after answering.
                Phase::Closed => return Poll::Pending,
            }
        }
    }
}

/// Implements `AsyncWrite` for a reader wrapper `$ty<T>` by passing every
/// write straight to its `inner` field: the wrappers of this crate change
/// what is read, never what is written.
macro_rules! write_through {
    ($ty:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<T> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}

write_through!(HeadGuard);

// === the head ===

/// What a buffer holds at a head's start.
enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A head of this many bytes, and its body's framing.
    Head(usize, Body),
    /// A head hyper or keyhole refuses.
    Refused(ProxyError),
}

fn bad(framing: Framing) -> Parsed {
    Parsed::Refused(ProxyError::Framing(framing))
}

/// Parses a head as hyper does, plus keyhole's own framing rules.
fn parse(bytes: &[u8], max_head: usize) -> Parsed {
    // Uninitialised: a parse runs at each read of a partial head, and
    // zeroing 100 headers each time would cost more than the parse.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(ProxyError::TooManyHeaders { limit: MAX_HEADERS })
        }
        Err(e) => return Parsed::Refused(ProxyError::MalformedHead(e)),
    };
    if len > max_head {
        return Parsed::Refused(ProxyError::HeadTooLarge { limit: max_head });
    }
    let target = req.path.unwrap_or_default();
    if target.len() > MAX_URI_LEN {
        return Parsed::Refused(ProxyError::TargetTooLong { limit: MAX_URI_LEN });
    }
    if http::Uri::try_from(target).is_err() {
        return Parsed::Refused(ProxyError::InvalidTarget);
    }
    let http11 = req.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = content_length(h.value) else {
                return bad(Framing::LengthNotANumber);
            };
            if length.is_some_and(|m| m != n) {
                return bad(Framing::TwoLengths);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return bad(Framing::TransferEncodingInHttp10);
            }
            chunked = Some(last_coding_is_chunked(h.value));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = http11;
        }
    }
    let body = match (chunked, length) {
        (Some(_), Some(_)) => return bad(Framing::LengthAndTransferEncoding),
        (Some(false), None) => {
            return bad(Framing::ChunkedNotLast);
        }
        _ if req.method == Some("CONNECT") || upgrade => Body::Through,
        (Some(true), None) => Body::Chunked,
        (None, Some(n)) => Body::Length(n),
        (None, None) => Body::Length(0),
    };
    Parsed::Head(len, body)
}

/// A Content-Length value as hyper reads it: decimal digits only.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Whether the last coding in a Transfer-Encoding value is `chunked`.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

// === chunked bodies ===

/// Scans `bytes` of a chunked body from `state`: how many bytes belong to
/// the body, and the state after them (`Done` at its end, None when the
/// bytes are not chunked framing keyhole reads: checking stops there).
fn scan_chunked(mut state: Chunk, bytes: &[u8]) -> (usize, Option<Chunk>) {
    let mut i = 0;
    while i < bytes.len() {
        if let Chunk::Data(left) = state {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(bytes.len() - i);
            i += take;
            let left = left - take as u64;
            state = if left == 0 {
                Chunk::DataCr
            } else {
                Chunk::Data(left)
            };
            continue;
        }
        let b = bytes[i];
        i += 1;
        state = match (state, b) {
            (Chunk::Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return (i - 1, None);
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                Chunk::Size {
                    size: size * 16 + d,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { size, digits }, b'\r') if digits > 0 => Chunk::SizeLf { size },
            (Chunk::Size { size, digits }, b';' | b' ' | b'\t') if digits > 0 => {
                Chunk::Ext { size }
            }
            (Chunk::Ext { size }, b'\r') => Chunk::SizeLf { size },
            (Chunk::Ext { size }, b) if b != b'\n' => Chunk::Ext { size },
            (Chunk::SizeLf { size: 0 }, b'\n') => Chunk::TrailerStart,
            (Chunk::SizeLf { size }, b'\n') => Chunk::Data(size),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size { size: 0, digits: 0 },
            (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf { empty: true },
            (Chunk::TrailerLine, b'\r') => Chunk::TrailerLf { empty: false },
            (Chunk::TrailerStart | Chunk::TrailerLine, b) if b != b'\n' => Chunk::TrailerLine,
            (Chunk::TrailerLf { empty: true }, b'\n') => return (i, Some(Chunk::Done)),
            (Chunk::TrailerLf { empty: false }, b'\n') => Chunk::TrailerStart,
            _ => return (i - 1, None),
        };
    }
    (i, Some(state))
}

#[cfg(test)]
mod tests;
