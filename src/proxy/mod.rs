//! The proxy: listener, request dispatch, and shutdown.
//!
//! A client connection speaks HTTP/1.1 to keyhole. Absolute-form `http://`
//! requests are forwarded as they are ([`forward`]); `CONNECT` is decided
//! before it is answered ([`connect`]): denied, tunnelled byte for byte
//! when no credential could ever apply, or intercepted ([`intercept`]).
//!
//! Module map: [`respond`] builds every response keyhole makes itself,
//! [`upstream`] dials and pools upstream connections, [`resolve`] handles
//! `--resolve`, [`headers`] strips hop-by-hop headers.

pub mod body;
pub mod connect;
pub mod destination;
pub mod forward;
pub mod head_guard;
pub mod headers;
pub mod idle;
pub mod intercept;
pub mod limits;
pub mod relay;
pub mod resolve;
pub mod respond;
pub mod rewind;
pub mod upstream;
pub mod websocket;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use self::body::ProxyBody;
use self::head_guard::{HeadChecks, HeadGuard};
use self::limits::Limits;
use self::resolve::Resolver;
use self::respond::Refusal;
use crate::policy::Policy;
use crate::substitute::bodies::BodyCounts;
use crate::substitute::Substitutions;
use crate::tls::LeafCache;

/// Longest wait, after shutdown is asked for, for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What one policy generation holds: the compiled policy and the
/// placeholders and secrets that go with it. Swapped as a whole.
pub struct Snapshot {
    /// Where requests may go and which credentials apply.
    pub policy: Policy,
    /// Placeholders and secrets, by credential index.
    pub substitutions: Substitutions,
}

/// Event counts since start, logged at shutdown (and served as metrics
/// once the admin API exists). Relaxed atomics: counts, not ordering.
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
    /// Relayed requests by response status class, indexed as
    /// [`STATUS_CLASSES`]: atomics, since every request counts here.
    pub by_status: [AtomicU64; 5],
    /// Responses keyhole made itself, by RFC 9209 error type.
    pub by_error: Mutex<BTreeMap<String, u64>>,
}

/// The labels of [`Counters::by_status`], in order.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Counters {
    /// Counts a finished request: its status class, and keyhole's own
    /// error type when keyhole answered itself.
    pub fn outcome<B>(&self, res: &Response<B>) {
        // 1xx..5xx; anything above 599 (hyper allows up to 999) counts as 5xx.
        let class = usize::from((res.status().as_u16() / 100).clamp(1, 5)) - 1;
        if let Some(n) = self.by_status.get(class) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let error = res
            .headers()
            .get("proxy-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("keyhole; error="))
            .map(|v| v.split(';').next().unwrap_or(v));
        if let Some(error) = error {
            bump(&self.by_error, error, 1);
        }
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
}

/// Adds `n` under `key`; allocates the key only the first time it is seen.
fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str, n: u64) {
    if let Ok(mut m) = map.lock() {
        match m.get_mut(key) {
            Some(v) => *v += n,
            None => {
                m.insert(key.to_owned(), n);
            }
        }
    }
}

/// A connection's share of [`Limits::max_connections`].
pub type Slot = Arc<OwnedSemaphorePermit>;

/// Answers a connection over the limit with `503` and closes it.
async fn refuse_over_limit(mut tcp: tokio::net::TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let refusal = Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "connection_limit_reached",
        format!("keyhole is handling its maximum of {max} connections; retry shortly, or raise --max-connections"),
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tcp.write_all(&refusal.to_http1_bytes()),
    )
    .await;
    let _ = tcp.shutdown().await;
}

/// Everything the connections share.
pub struct Proxy {
    /// The policy generation in force, swapped whole on reload.
    live: ArcSwap<Snapshot>,
    /// Event counts.
    pub counters: Counters,
    /// Bounds and timeouts.
    pub limits: Limits,
    /// One permit per connection in flight (see [`Limits::max_connections`]).
    slots: Arc<Semaphore>,
    /// Where substitutions and passed placeholders are recorded, if anywhere.
    pub audit: Option<crate::audit::AuditLog>,
    leaves: LeafCache,
    client: upstream::Client,
    resolver: Arc<Resolver>,
    /// TLS towards upstreams offering only HTTP/1.1, for upgrades.
    ws_tls: tokio_rustls::TlsConnector,
    tasks: TaskTracker,
    /// Becomes `true` when shutdown begins: every HTTP connection then
    /// finishes its requests in flight and closes.
    stopping: watch::Sender<bool>,
}

/// Drives a hyper connection to its end; once shutdown begins, asks it to
/// finish the requests in flight and close.
macro_rules! serve_gracefully {
    ($conn:expr, $stop:expr) => {{
        let conn = $conn;
        let mut stop = $stop;
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => result,
            // The guard `wait_for` returns is dropped at once: it is not Send.
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}
pub(crate) use serve_gracefully;

// === impl Proxy ===

impl Proxy {
    /// Assembles a proxy from its parts.
    pub fn new(
        snapshot: Snapshot,
        leaves: LeafCache,
        tls: Arc<rustls::ClientConfig>,
        resolver: Resolver,
    ) -> Proxy {
        let resolver = Arc::new(resolver);
        let mut h1_only = (*tls).clone();
        h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
        Proxy {
            ws_tls: tokio_rustls::TlsConnector::from(Arc::new(h1_only)),
            live: ArcSwap::from_pointee(snapshot),
            leaves,
            client: upstream::client(tls, resolver.clone()),
            resolver,
            tasks: TaskTracker::new(),
            stopping: watch::Sender::new(false),
            counters: Counters::default(),
            limits: Limits::default(),
            slots: Arc::new(Semaphore::new(limits::MAX_CONNECTIONS)),
            audit: None,
        }
    }

    /// Records one of keyhole's own listening addresses (the proxy's, the
    /// admin API's), so that a CONNECT to it is refused.
    pub fn set_listener(&self, addr: SocketAddr) {
        if let Ok(mut own) = self.resolver.guard.own.write() {
            own.push(addr);
        }
    }

    /// The leaf certificate cache (for its hit and miss counts).
    pub fn leaves(&self) -> &LeafCache {
        &self.leaves
    }

    /// A receiver that sees `true` once shutdown begins.
    fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Sets the bounds and timeouts (before serving).
    pub fn set_limits(&mut self, limits: Limits) {
        self.slots = Arc::new(Semaphore::new(limits.max_connections));
        self.limits = limits;
    }

    /// The policy generation in force. Each request takes the one current
    /// when it arrives and keeps it to the end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// Puts a new policy generation in force for every later request.
    pub fn install(&self, snapshot: Snapshot) {
        self.live.store(Arc::new(snapshot));
    }

    /// Accepts connections on `listener` until `shutdown` completes, then
    /// stops accepting and lets requests in flight finish within
    /// [`SHUTDOWN_GRACE`].
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                        self.tasks.spawn(refuse_over_limit(tcp, self.limits.max_connections));
                        continue;
                    };
                    // The slot is held by this connection and by every
                    // tunnel it opens, until the last of them ends.
                    let slot = Arc::new(slot);
                    let proxy = self.clone();
                    let proxy_limits = self.limits.clone();
                    let stop = self.stop_signal();
                    self.tasks.spawn(async move {
                        let checks = Arc::new(HeadChecks::default());
                        let io = HeadGuard::new(tcp, checks.clone(), proxy_limits.max_header_bytes);
                        let service = service_fn(move |req| {
                            let proxy = proxy.clone();
                            let slot = slot.clone();
                            let refused = checks.refusal_for_next_request();
                            async move {
                                Ok::<_, Infallible>(match refused {
                                    Some(r) => r.into_response(),
                                    None => proxy.dispatch(req, peer, slot).await,
                                })
                            }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(proxy_limits.header_read_timeout)
                            .max_buf_size(proxy_limits.max_header_bytes.max(8192))
                            .serve_connection(TokioIo::new(io), service)
                            .with_upgrades();
                        if let Err(e) = serve_gracefully!(conn, stop) {
                            tracing::debug!(%peer, error = %e, "client connection ended with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        tracing::info!(
            "shutting down: no new connections; waiting up to {}s for requests in flight",
            SHUTDOWN_GRACE.as_secs()
        );
        self.tasks.close();
        self.stopping.send_replace(true);
        let drained = self.tasks.wait();
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
        }
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        tracing::info!(
            requests = load(&c.requests),
            substituted = load(&c.substituted),
            passed_unsubstituted = load(&c.passed),
            tunnels = load(&c.tunnels),
            intercepts = load(&c.intercepts),
            denied = load(&c.denied),
            body_substituted = load(&c.body.substituted),
            body_passed_unsubstituted = load(&c.body.passed),
            encoded_bodies = load(&c.encoded_bodies),
            scrubbed = load(&c.scrubbed),
            "totals"
        );
    }

    async fn dispatch(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        slot: Slot,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return connect::handle(self, req, peer, slot).await;
        }
        match req.uri().scheme_str() {
            Some("http") => forward::handle(self, req).await,
            Some("https") => Refusal::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "https:// URLs must be sent through a CONNECT tunnel; set HTTPS_PROXY, not only HTTP_PROXY",
            )
            .into_response(),
            _ => Refusal::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "keyhole is a proxy: send absolute-form http:// requests or CONNECT, as clients do with HTTP_PROXY and HTTPS_PROXY",
            )
            .into_response(),
        }
    }
}
