//! The proxy: what its connections share, and the path of a request.
//!
//! A client connection speaks HTTP/1.1 to keyhole ([`server`]).
//! Absolute-form `http://` requests are forwarded ([`forward`]); `CONNECT`
//! is decided before it is answered ([`connect`]): refused, tunnelled byte
//! for byte when no credential could ever apply ([`tunnel`]), or
//! intercepted ([`intercept`]). Every request that is relayed, from a
//! tunnel or in plain HTTP, is one [`exchange`]: check, substitute,
//! audit, send, scrub, log.
//!
//! Module map:
//! - [`server`]: accept loop, HTTP/1.1 and HTTP/2 serving, graceful shutdown;
//! - [`connect`], [`forward`], [`intercept`], [`tunnel`]: the three ways a
//!   client connection goes on; [`transparent`]: connections the kernel
//!   redirected, decided by their SNI or `Host`;
//! - [`exchange`]: one request's stages; [`relay`] its send stage;
//!   [`websocket`] its upgrade branch; [`mcp`] the MCP token endpoint and
//!   replay buffer; [`headers`] the hop-by-hop rules;
//! - [`respond`]: [`ProxyError`], every response
//!   keyhole makes itself;
//! - [`upstream`]: the [`Dialer`] and the pooled client;
//!   [`resolve`]: `--resolve` pins and lookups; [`destination`]: which
//!   addresses may be dialled;
//! - [`head_guard`]: request heads checked before hyper reads them;
//!   [`idle`]: the idle-timeout IO wrapper; [`body`]: the body type;
//! - [`snapshot`]: one compiled policy generation; [`counters`]: metrics;
//!   [`throttle`]: repeated warnings logged once a minute;
//!   [`limits`]: every bound and timeout; [`workers`]: the threads
//!   connections are served on.

pub mod body;
pub mod connect;
pub mod counters;
pub mod destination;
pub mod exchange;
pub mod forward;
pub mod head_guard;
pub mod headers;
pub mod idle;
pub mod intercept;
pub mod limits;
pub mod mcp;
pub mod relay;
pub mod resolve;
pub mod respond;
pub mod server;
pub mod snapshot;
pub mod throttle;
pub mod transparent;
pub mod tunnel;
pub mod upstream;
pub mod websocket;
pub mod workers;

pub use counters::{Counters, STATUS_CLASSES};
pub use snapshot::Snapshot;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use self::body::ProxyBody;
use self::limits::{Limits, SHUTDOWN_GRACE};
use self::respond::ProxyError;
use self::server::{Protocol, Tasks, WhenFull};
use self::upstream::Dialer;
use crate::mcp::{TokenBook, TokenPersist};
use crate::sandbox::dns::{self, Resolver};
use crate::tls::LeafCache;

/// A connection's share of [`Limits::max_connections`]: held by the client
/// connection and by every tunnel it opens, until the last of them ends.
pub type Slot = Arc<OwnedSemaphorePermit>;

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
    /// Repeated warnings, logged once a minute per kind.
    warnings: throttle::Throttle,
    leaves: LeafCache,
    /// The pooled upstream client of each worker (one, without workers),
    /// so a request never waits on another worker's connection.
    clients: Box<[upstream::Client]>,
    /// The threads connections are served on; none in tests, which serve
    /// on their own runtime.
    workers: Option<workers::Workers>,
    dialer: Arc<Dialer>,
    /// TLS towards upstreams (for clients of transparent connections).
    tls: TlsConnector,
    /// TLS towards upstreams offering only HTTP/1.1, for upgrades.
    ws_tls: TlsConnector,
    /// Whether transparent connections that are neither TLS nor HTTP may be
    /// tunnelled where egress allows their address.
    pub transparent_raw: bool,
    /// The live token of every MCP credential.
    tokens: Arc<TokenBook>,
    tasks: Tasks,
}

// === impl Proxy ===

impl Proxy {
    /// Assembles a proxy from its parts. `tls` verifies upstreams; the
    /// dialer's timeouts are set from `limits`; refreshed MCP tokens are
    /// saved through `persist`.
    pub fn new(
        snapshot: Snapshot,
        leaves: LeafCache,
        tls: Arc<rustls::ClientConfig>,
        dialer: Dialer,
        limits: Limits,
        persist: Arc<dyn TokenPersist>,
    ) -> Proxy {
        let dialer = Arc::new(dialer.with_timeouts(limits.connect_timeout, limits.tls_timeout));
        let mut h1_only = (*tls).clone();
        h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = TlsConnector::from(tls);
        let client = upstream::client(tls.clone(), dialer.clone());
        let tokens = TokenBook::new(Arc::new(mcp::Endpoint::new(client.clone())), persist);
        tokens.sync(snapshot.policy.config());
        Proxy {
            ws_tls: TlsConnector::from(Arc::new(h1_only)),
            tls,
            transparent_raw: true,
            live: ArcSwap::from_pointee(snapshot),
            leaves,
            clients: Box::new([client]),
            workers: None,
            tokens: Arc::new(tokens),
            dialer,
            tasks: Tasks::new(),
            counters: Counters::default(),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            audit: None,
            warnings: throttle::Throttle::new(),
        }
    }

    /// Serves connections on `workers` (see [`workers`]), each worker with
    /// a pool of upstream connections of its own.
    pub fn set_workers(&mut self, workers: workers::Workers) {
        self.clients = (0..workers.len())
            .map(|_| upstream::client(self.tls.clone(), self.dialer.clone()))
            .collect();
        self.workers = Some(workers);
    }

    /// The pooled upstream client of the calling worker.
    fn client(&self) -> &upstream::Client {
        &self.clients[workers::Workers::index() % self.clients.len()]
    }

    /// Records one of keyhole's own listening addresses (the proxy's, the
    /// admin API's), so that a CONNECT to it is refused.
    pub fn set_listener(&self, addr: SocketAddr) {
        self.dialer.add_own_listener(addr);
    }

    /// The leaf certificate cache (for its hit and miss counts).
    pub fn leaves(&self) -> &LeafCache {
        &self.leaves
    }

    /// The policy generation in force. Each request takes the one current
    /// when it arrives and keeps it to the end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// Puts a new policy generation in force for every later request, and
    /// tells the token book of the MCP tokens it configures.
    pub fn install(&self, snapshot: Snapshot) {
        self.tokens.sync(snapshot.policy.config());
        self.live.store(Arc::new(snapshot));
    }

    /// The live token of every MCP credential.
    pub fn tokens(&self) -> &TokenBook {
        &self.tokens
    }

    /// Answers DNS questions on `socket` (the sandbox's DNS, see
    /// [`transparent::lookup`]) until shutdown begins.
    pub fn serve_dns(self: &Arc<Self>, socket: tokio::net::UdpSocket) {
        let proxy = self.clone();
        let resolver: Resolver = Arc::new(move |name: String| {
            let proxy = proxy.clone();
            Box::pin(async move { transparent::lookup(&proxy, &name).await })
        });
        let stopped = server::stopped(self.tasks.stop_signal());
        self.tasks.spawn(dns::serve(socket, resolver, stopped));
    }

    /// Serves connections the kernel redirected (transparent mode) on
    /// `listener`, one connection slot each, until shutdown begins; runs as
    /// one of the proxy's tasks, so shutdown waits for it.
    pub fn serve_transparent(self: &Arc<Self>, listener: TcpListener) {
        let proxy = self.clone();
        self.tasks.spawn(async move {
            let stopped = server::stopped(proxy.tasks.stop_signal());
            let (slots, tasks) = (&proxy.slots, &proxy.tasks);
            let handle = {
                let proxy = proxy.clone();
                move |tcp, peer, slot| {
                    let proxy = proxy.clone();
                    async move {
                        let _slot = slot;
                        transparent::handle(proxy, tcp, peer).await;
                    }
                }
            };
            let workers = proxy.workers.as_ref();
            server::accept_loop(
                &listener,
                slots,
                WhenFull::Close,
                tasks,
                workers,
                stopped,
                handle,
            )
            .await;
        });
    }

    /// Accepts connections on `listener` until `shutdown` completes, then
    /// stops accepting and lets requests in flight finish within
    /// [`SHUTDOWN_GRACE`].
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let when_full = WhenFull::Refuse {
            max: self.limits.max_connections,
        };
        let handle = {
            let proxy = self.clone();
            let stop = self.tasks.stop_signal();
            let limits = self.limits.http1();
            move |tcp, peer, slot: OwnedSemaphorePermit| {
                let proxy = proxy.clone();
                let slot = Arc::new(slot);
                let stop = stop.clone();
                let last = forward::LastDestination::default();
                async move {
                    let handler = move |req| {
                        proxy
                            .clone()
                            .dispatch(req, peer, slot.clone(), last.clone())
                    };
                    if let Err(e) = server::serve(tcp, Protocol::Http1(limits), handler, stop).await
                    {
                        tracing::debug!(%peer, error = %e, "client connection ended with an error");
                    }
                }
            }
        };
        let workers = self.workers.as_ref();
        server::accept_loop(
            &listener,
            &self.slots,
            when_full,
            &self.tasks,
            workers,
            shutdown,
            handle,
        )
        .await;
        drop(listener);
        tracing::info!(
            "shutting down: no new connections; waiting up to {}s for requests in flight",
            SHUTDOWN_GRACE.as_secs()
        );
        if !self.tasks.shutdown(SHUTDOWN_GRACE).await {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
        }
        if let Some(workers) = &self.workers {
            if !workers.stop().await {
                tracing::warn!("a worker thread did not end in time");
            }
        }
        self.counters.log_totals();
    }

    /// A request on a client connection: CONNECT, or absolute-form http://.
    async fn dispatch(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        slot: Slot,
        last: forward::LastDestination,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return connect::handle(self, req, peer, slot).await;
        }
        match req.uri().scheme_str() {
            Some("http") => forward::handle(self, req, &last).await,
            Some("https") => ProxyError::HttpsWithoutConnect.into_response(),
            _ => ProxyError::NotAProxyRequest.into_response(),
        }
    }
}
