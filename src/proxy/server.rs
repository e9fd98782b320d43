//! Serving connections, for every listener keyhole has (the proxy's, the
//! admin API's): one accept loop, one way to serve HTTP/1.1 (behind the
//! [`HeadGuard`]) and HTTP/2, and one graceful shutdown.
//!
//! Shutdown is a `watch` flag plus a task tracker ([`Tasks`]) rather than
//! hyper-util's `GracefulShutdown`: that helper cannot watch an HTTP/1.1
//! connection with upgrades (hyper-util 0.1 implements its trait for
//! `http1::Connection` but not `http1::UpgradeableConnection`), and keyhole
//! must also drain tunnels, which are not hyper connections at all.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::head_guard::{HeadChecks, HeadGuard};
use super::limits::{ACCEPT_BACKOFF, REFUSAL_WRITE_TIMEOUT};
use super::respond::ProxyError;
use super::workers::Workers;

/// The tasks of one server (connections, tunnels) and the flag that tells
/// them shutdown has begun.
pub struct Tasks {
    tracker: TaskTracker,
    stopping: watch::Sender<bool>,
}

/// What an accept loop does with a connection when every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Answer `503 connection_limit_reached` and close (the proxy: a
    /// sandbox should see why, not hang).
    Refuse {
        /// The limit, for the message.
        max: usize,
    },
    /// Stop accepting until a slot frees (the admin API: the kernel's
    /// backlog holds the rest).
    Wait,
    /// Close the connection (transparent mode: the client did not ask for
    /// a proxy and may not speak HTTP).
    Close,
}

/// How HTTP/1.1 connections are read.
#[derive(Debug, Clone, Copy)]
pub struct Http1Limits {
    /// Longest wait for a request head (and between requests).
    pub header_read_timeout: Duration,
    /// Largest request line plus headers.
    pub max_header_bytes: usize,
}

// === impl Tasks ===

impl Tasks {
    /// No tasks yet; not stopping.
    pub fn new() -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            stopping: watch::Sender::new(false),
        }
    }

    /// Runs `task`, counted until it ends.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Runs `task` on the next of `workers`, counted until it ends.
    pub fn spawn_on<F>(&self, workers: &Workers, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(task, workers.next());
    }

    /// A receiver that sees `true` once shutdown begins.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Tells every connection to finish what it is doing and close, and
    /// waits up to `grace` for every task to end. Returns whether they did.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.tracker.close();
        self.stopping.send_replace(true);
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::new()
    }
}

/// Accepts connections on `listener` until `shutdown` completes, with one
/// slot of `slots` per connection, and runs `handle` for each as a task of
/// `tasks`: on the next of `workers`, or on the calling runtime when there
/// are none. TCP_NODELAY is set on every connection.
pub async fn accept_loop<H, F>(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    when_full: WhenFull,
    tasks: &Tasks,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr, OwnedSemaphorePermit) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let slot = match when_full {
            WhenFull::Refuse { .. } | WhenFull::Close => None,
            WhenFull::Wait => tokio::select! {
                _ = &mut shutdown => return,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let slot = match slot.map_or_else(|| slots.clone().try_acquire_owned(), Ok) {
            Ok(slot) => slot,
            Err(_) => {
                if let WhenFull::Refuse { max } = when_full {
                    tasks.spawn(refuse(tcp, ProxyError::OverLimit { max }));
                }
                continue;
            }
        };
        match workers {
            None => tasks.spawn(handle(tcp, peer, slot)),
            Some(workers) => tasks.spawn_on(workers, on_worker(tcp, peer, slot, handle.clone())),
        }
    }
}

/// Moves an accepted connection to the worker that runs the returned
/// future: the socket leaves the accepting runtime's reactor here and joins
/// the worker's there, so its readiness events wake that worker directly.
fn on_worker<H, F>(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    handle: H,
) -> impl Future<Output = ()> + Send + 'static
where
    H: FnOnce(TcpStream, SocketAddr, OwnedSemaphorePermit) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let moved = tcp.into_std();
    async move {
        match moved.and_then(TcpStream::from_std) {
            Ok(tcp) => handle(tcp, peer, slot).await,
            Err(e) => tracing::warn!(%peer, error = %e, "cannot hand a connection to a worker"),
        }
    }
}

/// Writes `refusal` to a connection that has no HTTP server on it, and
/// closes it, within [`REFUSAL_WRITE_TIMEOUT`].
pub async fn refuse<W: AsyncWrite + Unpin>(mut io: W, refusal: ProxyError) {
    let bytes = refusal.to_http1_bytes();
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        let _ = io.write_all(&bytes).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// Which HTTP a connection speaks, with its limits.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// HTTP/1.1 with upgrades, behind a [`HeadGuard`].
    Http1(Http1Limits),
    /// HTTP/2.
    Http2 {
        /// Streams open at once.
        max_streams: u32,
        /// Largest header list.
        max_header_bytes: usize,
    },
}

/// Serves `protocol` on `io`, each request answered by `handler`.
///
/// HTTP/1.1 goes through a [`HeadGuard`]: a head the guard refuses is
/// answered with its [`ProxyError`] and nothing after it is read. Once
/// `stop` turns true, an HTTP/1.1 connection finishes the request in
/// flight and closes; an HTTP/2 one sends GOAWAY, finishes its streams and
/// closes.
///
/// Returns a `Send` future by name rather than being an `async fn`, so that
/// callers spawning it do not meet rustc's higher-ranked lifetime limits.
pub fn serve<I, H, F>(
    io: I,
    protocol: Protocol,
    handler: H,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), hyper::Error>> + Send
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let handler = Arc::new(handler);
    match protocol {
        Protocol::Http1(limits) => {
            let checks = Arc::new(HeadChecks::default());
            let io = HeadGuard::new(io, checks.clone(), limits.max_header_bytes);
            let service = service_fn(move |req| {
                let refused = checks.refusal_for_next_request();
                let handler = handler.clone();
                async move {
                    Ok::<_, Infallible>(match refused {
                        Some(refusal) => refusal.into_response(),
                        None => handler(req).await,
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            Either::Left(graceful(conn, |c| c.graceful_shutdown(), stop))
        }
        Protocol::Http2 {
            max_streams,
            max_header_bytes,
        } => {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(max_streams)
                .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
                .serve_connection(TokioIo::new(io), service);
            Either::Right(graceful(conn, |c| c.graceful_shutdown(), stop))
        }
    }
}

/// Drives a connection to its end; once `stop` turns true, calls `begin`
/// (the connection's graceful shutdown) and lets it finish.
async fn graceful<C: Future>(
    conn: C,
    begin: fn(Pin<&mut C>),
    stop: watch::Receiver<bool>,
) -> C::Output {
    tokio::pin!(conn);
    tokio::select! {
        out = conn.as_mut() => out,
        () = stopped(stop) => {
            begin(conn.as_mut());
            conn.await
        }
    }
}

/// Completes once `stop` is true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    loop {
        let now = *stop.borrow_and_update();
        if now || stop.changed().await.is_err() {
            return;
        }
    }
}
