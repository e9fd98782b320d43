//! [`Client`]: keyhole's pool of upstream connections, on hyper's
//! low-level connections (`hyper::client::conn`).
//!
//! An [`Origin`] (scheme, host, port, and the one address to dial when the
//! client chose it) keys the pool. An HTTP/1.1 connection carries one
//! request at a time: it is taken from the pool for a request and goes back
//! when the answer's body has been read to its end (a body dropped before
//! its end leaves the connection to close). An HTTP/2 connection is shared
//! by every request to its origin. A request that a reused connection
//! could not even start (the upstream closed it meanwhile) is sent once
//! more on a new connection; one that was sent is never repeated.
//!
//! Trade-off: hyper-util's pooled client does the same with a checkout
//! future, a hash of the authority byte by byte and a task per request
//! that waits for the connection to be ready again; this pool is a map
//! lookup under a lock no other thread contends (each worker has its own
//! client) and a connection that rides back with the body. Idle
//! connections are found stale by a coarse clock (a generation the pool's
//! sweeper advances) instead of a clock read per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{Connector, DialError, UpstreamStream};
use crate::host::{Authority, Host};
use crate::proxy::body::ProxyBody;
use crate::proxy::limits::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST, POOL_MAX_ORIGINS};

/// Where requests go: what the pool is keyed by, with the forms of it a
/// request needs, built once per destination rather than per request.
#[derive(Debug, Clone)]
pub struct Origin {
    key: Arc<OriginKey>,
    /// `host:port`, for an HTTP/2 request's `:authority`.
    authority: http::uri::Authority,
    /// The `Host` header of an HTTP/1.1 request: the host, with the port
    /// unless it is the scheme's default.
    host_header: HeaderValue,
}

/// What makes two origins one for the pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginKey {
    /// TLS (verified for `host`) or plain TCP.
    pub https: bool,
    /// The host, verified by TLS and named in the request.
    pub host: Host,
    /// The port.
    pub port: u16,
    /// The one address to dial, when the client chose it (transparent
    /// mode); `None`: resolve `host`.
    pub addr: Option<SocketAddr>,
}

/// Why a request got no answer from its upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The connection failed during the exchange.
    #[error("the exchange with the upstream failed")]
    Http(#[source] hyper::Error),
}

/// The pooled client towards upstreams. Cheap to clone; clones share the
/// pool.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
}

struct Pool {
    connector: Connector,
    entries: Mutex<HashMap<Arc<OriginKey>, Entry>>,
    /// Origins held at most ([`POOL_MAX_ORIGINS`]; smaller in tests).
    max_origins: usize,
    /// The coarse clock: advanced by the sweeper every half
    /// [`POOL_IDLE_TIMEOUT`].
    generation: AtomicU64,
    /// Whether the sweeper runs (started with the first idle connection).
    sweeping: AtomicBool,
}

/// One origin's connections.
#[derive(Default)]
struct Entry {
    /// The shared HTTP/2 connection, with the generation it was last used.
    h2: Option<(http2::SendRequest<ProxyBody>, u64)>,
    /// Idle HTTP/1.1 connections, newest last (taken first: the likeliest
    /// still open), each with the generation it went idle.
    h1: Vec<(http1::SendRequest<ProxyBody>, u64)>,
}

/// A connection taken for one request.
enum Taken {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// The body of an upstream's answer. Over HTTP/1.1 it carries the
/// connection, which goes back to the pool when the body ends.
pub struct UpstreamBody {
    body: Incoming,
    back: Option<GoBack>,
}

/// An HTTP/1.1 connection on its way back to the pool.
struct GoBack {
    pool: Weak<Pool>,
    key: Arc<OriginKey>,
    sender: http1::SendRequest<ProxyBody>,
}

/// Generations an idle connection survives: it is closed after at least
/// one and at most two sweeper periods (half [`POOL_IDLE_TIMEOUT`] each)
/// without use. Generations are compared with saturating subtraction: a
/// stamp read on another thread may be one newer than the reader's.
const IDLE_GENERATIONS: u64 = 2;

// === impl Origin ===

impl Origin {
    /// The origin `host:port` over TLS (`https`) or plain TCP, dialled at
    /// `addr` when given.
    pub fn new(https: bool, host: Host, port: u16, addr: Option<SocketAddr>) -> Origin {
        let default_port = if https { 443 } else { 80 };
        let text = format!("{host}:{port}");
        // A normalised host and a port always make an authority and a
        // header value; the fallbacks (never expected) fail every request
        // as an unknown host.
        let authority = http::uri::Authority::from_maybe_shared(Bytes::from(text))
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid.invalid"));
        let named = match port == default_port {
            true => host.as_str(),
            false => authority.as_str(),
        };
        let host_header = HeaderValue::from_str(named)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid.invalid"));
        Origin {
            key: Arc::new(OriginKey {
                https,
                host,
                port,
                addr,
            }),
            authority,
            host_header,
        }
    }

    /// The origin of an absolute `http://` or `https://` URI.
    pub fn from_uri(uri: &Uri) -> Result<Origin, DialError> {
        // Only the authority is named: a URL's path and query may carry
        // what the log must not.
        let named = uri
            .authority()
            .map_or("a URL without a host", |a| a.as_str());
        let bad = || DialError::BadName(named.to_owned());
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        let target = Authority::parse(authority.as_str()).map_err(|_| bad())?;
        let port = target.port.unwrap_or(if https { 443 } else { 80 });
        Ok(Origin::new(https, target.host, port, None))
    }

    /// The key: scheme, host, port and pinned address.
    pub fn key(&self) -> &OriginKey {
        &self.key
    }
}

// === impl Client ===

impl Client {
    /// A client with an empty pool, dialling through `connector`.
    pub fn new(connector: Connector) -> Client {
        Client {
            pool: Arc::new(Pool {
                connector,
                entries: Mutex::new(HashMap::new()),
                max_origins: POOL_MAX_ORIGINS,
                generation: AtomicU64::new(0),
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req` to `origin` and returns the answer's head. The request's
    /// URI contributes only its path and query: the scheme and authority
    /// are the origin's. Over HTTP/1.1 the request gets the origin's `Host`
    /// header unless it has one.
    pub async fn request(
        &self,
        origin: &Origin,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut fresh_only = false;
        loop {
            let (taken, reused) = match fresh_only {
                false => match self.pool.take(&origin.key) {
                    Some(taken) => (taken, true),
                    None => (self.pool.open(&origin.key).await?, false),
                },
                true => (self.pool.open(&origin.key).await?, false),
            };
            match taken {
                Taken::H2(mut sender) => {
                    let scheme = match origin.key.https {
                        true => Scheme::HTTPS,
                        false => Scheme::HTTP,
                    };
                    let mut parts = http::uri::Parts::default();
                    parts.scheme = Some(scheme);
                    parts.authority = Some(origin.authority.clone());
                    parts.path_and_query = Some(path.clone());
                    *req.uri_mut() = Uri::from_parts(parts)
                        .map_err(|_| DialError::BadName(origin.authority.as_str().to_owned()))?;
                    match sender.try_send_request(req).await {
                        Ok(res) => return Ok(res.map(|body| UpstreamBody { body, back: None })),
                        Err(mut e) => match (e.take_message(), reused) {
                            (Some(again), true) => req = again,
                            _ => return Err(SendError::Http(e.into_error())),
                        },
                    }
                }
                Taken::H1(mut sender) => {
                    *req.uri_mut() = Uri::from(path.clone());
                    if !req.headers().contains_key(HOST) {
                        req.headers_mut().insert(HOST, origin.host_header.clone());
                    }
                    match sender.try_send_request(req).await {
                        Ok(res) => {
                            let back = GoBack {
                                pool: Arc::downgrade(&self.pool),
                                key: origin.key.clone(),
                                sender,
                            };
                            let res = res.map(|body| UpstreamBody {
                                body,
                                back: Some(back),
                            });
                            return Ok(res);
                        }
                        Err(mut e) => match (e.take_message(), reused) {
                            (Some(again), true) => req = again,
                            _ => return Err(SendError::Http(e.into_error())),
                        },
                    }
                }
            }
            // A reused connection closed before the request started: once
            // more, on a new connection.
            fresh_only = true;
        }
    }

    /// Idle HTTP/1.1 connections and shared HTTP/2 connections held, for
    /// every origin.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.pool
            .lock()
            .values()
            .map(|e| e.h1.len() + usize::from(e.h2.is_some()))
            .sum()
    }
}

// === impl Pool ===

impl Pool {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<OriginKey>, Entry>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A usable pooled connection to `key`, if there is one; stale, closed
    /// and busy ones found on the way are dropped (and so closed).
    fn take(&self, key: &OriginKey) -> Option<Taken> {
        let now = self.generation.load(Ordering::Relaxed);
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        if let Some((sender, used)) = &mut entry.h2 {
            if !sender.is_closed() && now.saturating_sub(*used) < IDLE_GENERATIONS {
                *used = now;
                return Some(Taken::H2(sender.clone()));
            }
            entry.h2 = None;
        }
        while let Some((sender, idle_since)) = entry.h1.pop() {
            if sender.is_ready() && now.saturating_sub(idle_since) < IDLE_GENERATIONS {
                return Some(Taken::H1(sender));
            }
        }
        None
    }

    /// Dials a new connection to `key`. An HTTP/2 one is shared at once.
    async fn open(self: &Arc<Self>, key: &Arc<OriginKey>) -> Result<Taken, SendError> {
        let stream = self.connector.connect(key).await?;
        if let UpstreamStream::Tls(_, true) = &stream {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(stream)
                .await
                .map_err(SendError::Http)?;
            tokio::spawn(conn);
            let now = self.generation.load(Ordering::Relaxed);
            if let Some(entry) = entry_for(&mut self.lock(), key.clone(), self.max_origins) {
                entry.h2 = Some((sender.clone(), now));
            }
            self.sweep_soon();
            return Ok(Taken::H2(sender));
        }
        let (mut sender, conn) = http1::handshake(stream).await.map_err(SendError::Http)?;
        tokio::spawn(conn);
        sender.ready().await.map_err(SendError::Http)?;
        Ok(Taken::H1(sender))
    }

    /// Puts an HTTP/1.1 connection whose answer was read to its end back.
    fn put(self: &Arc<Self>, key: Arc<OriginKey>, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let now = self.generation.load(Ordering::Relaxed);
        let mut entries = self.lock();
        if let Some(entry) = entry_for(&mut entries, key, self.max_origins) {
            if entry.h1.len() < POOL_MAX_IDLE_PER_HOST {
                entry.h1.push((sender, now));
            }
        }
        drop(entries);
        self.sweep_soon();
    }

    /// Starts the sweeper, once: every half [`POOL_IDLE_TIMEOUT`] it
    /// advances the generation and drops connections idle for
    /// [`IDLE_GENERATIONS`], and it ends with the pool.
    fn sweep_soon(self: &Arc<Self>) {
        // Outside a runtime (never expected) the sweeper waits for a call
        // from inside one.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(POOL_IDLE_TIMEOUT / 2);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let fresh = |since: u64| now.saturating_sub(since) < IDLE_GENERATIONS;
        self.lock().retain(|_, entry| {
            entry
                .h1
                .retain(|(s, since)| !s.is_closed() && fresh(*since));
            if entry
                .h2
                .as_ref()
                .is_some_and(|(s, used)| s.is_closed() || !fresh(*used))
            {
                entry.h2 = None;
            }
            entry.h2.is_some() || !entry.h1.is_empty()
        });
    }
}

/// `key`'s entry in the pool's map, made if the map holds fewer than
/// `max` origins: where a connection going into the pool goes.
fn entry_for(
    entries: &mut HashMap<Arc<OriginKey>, Entry>,
    key: Arc<OriginKey>,
    max: usize,
) -> Option<&mut Entry> {
    use std::collections::hash_map::Entry as Slot;
    let full = entries.len() >= max;
    match entries.entry(key) {
        Slot::Occupied(e) => Some(e.into_mut()),
        Slot::Vacant(_) if full => None,
        Slot::Vacant(e) => Some(e.insert(Entry::default())),
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    /// Sends the connection back to the pool (the body is read to its end).
    fn go_back(&mut self) {
        if let Some(back) = self.back.take() {
            if let Some(pool) = back.pool.upgrade() {
                pool.put(back.key, back.sender);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.go_back(),
            // A broken body leaves its connection unusable.
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body with nothing more to read (HEAD, 204, an empty length)
        // may be dropped unpolled; any other leaves its connection to close.
        if self.body.is_end_stream() {
            self.go_back();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.back.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
