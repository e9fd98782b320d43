//! A scripted upstream: a test writes, for each accepted connection, what
//! the server does byte by byte (answer garbage, stall, reset, ...), to see
//! keyhole handle upstreams that misbehave on purpose. TLS comes from the
//! same acceptor as every other test server ([`super::upstream`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::upstream::{listen, tls_acceptor, Alpn, TestCa};

/// How long a script waits for keyhole to act before giving up.
pub const SCRIPT_LIMIT: Duration = Duration::from_secs(8);

/// One accepted upstream connection: TLS when the peer started a TLS
/// handshake, plain TCP otherwise.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(t) => t,
            Conn::Tls(t) => t.get_ref().0,
        }
    }

    /// Drops the connection with a TCP reset instead of a FIN.
    #[allow(deprecated)] // SO_LINGER 0 does not block on drop.
    pub fn reset(self) {
        let _ = self.tcp().set_linger(Some(Duration::ZERO));
        drop(self);
    }

    /// Reads up to the end of a request head (bounded).
    pub async fn read_head(&mut self) -> Option<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            match tokio::time::timeout(SCRIPT_LIMIT, self.read(&mut byte)).await {
                Ok(Ok(1)) => head.push(byte[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// Writes `bytes` and flushes, ignoring a failure (keyhole may have
    /// gone, which is for the test to see).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write_all(bytes).await;
        let _ = self.flush().await;
    }

    /// Reads until keyhole closes its side; returns the bytes read, or
    /// `None` if it did not close within [`SCRIPT_LIMIT`].
    pub async fn wait_for_close(&mut self) -> Option<usize> {
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + SCRIPT_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
                Ok(Ok(n)) => total += n,
                Err(_) => return None,
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_read(cx, buf),
            Conn::Tls(t) => Pin::new(t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_write(cx, buf),
            Conn::Tls(t) => Pin::new(t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_flush(cx),
            Conn::Tls(t) => Pin::new(t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Conn::Tls(t) => Pin::new(t).poll_shutdown(cx),
        }
    }
}

/// What a script hands its connections: the TLS acceptor and a notebook
/// the test reads.
#[derive(Clone)]
pub struct Ctx {
    acceptor: tokio_rustls::TlsAcceptor,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    /// TLS if the peer's first byte starts a TLS record, else plain TCP.
    pub async fn accept(&self, tcp: TcpStream) -> Option<Conn> {
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(SCRIPT_LIMIT, tcp.peek(&mut first))
            .await
            .ok()?
            .ok()?;
        if n == 1 && first[0] == 0x16 {
            let tls = tokio::time::timeout(SCRIPT_LIMIT, self.acceptor.accept(tcp))
                .await
                .ok()?
                .ok()?;
            Some(Conn::Tls(Box::new(tls)))
        } else {
            Some(Conn::Plain(tcp))
        }
    }

    /// Accepts `tcp` as [`Ctx::accept`] does and reads a request head: the
    /// connection and the head, or `None` if either failed.
    pub async fn accept_request(&self, tcp: TcpStream) -> Option<(Conn, String)> {
        let mut c = self.accept(tcp).await?;
        let head = c.read_head().await?;
        Some((c, head))
    }

    /// Waits for keyhole to close `c`; notes `closed by keyhole`, or `still
    /// open` after [`SCRIPT_LIMIT`].
    pub async fn note_close(&self, c: &mut Conn) {
        match c.wait_for_close().await {
            Some(_) => self.note("closed by keyhole"),
            None => self.note("still open"),
        }
    }

    /// Writes a note for the test to read.
    pub fn note(&self, what: impl Into<String>) {
        self.notes.lock().expect("lock").push(what.into());
    }
}

/// A running scripted upstream.
pub struct Scripted {
    /// Where it listens.
    pub addr: SocketAddr,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The notes so far: `accepted` for each connection, then what the
    /// scripts wrote.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("lock").clone()
    }

    /// Forgets the notes so far.
    pub fn clear_notes(&self) {
        self.notes.lock().expect("lock").clear();
    }

    /// Waits until a note starting with `prefix` appears; returns it.
    pub async fn wait_note(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(n) = self.notes().into_iter().find(|n| n.starts_with(prefix)) {
                return Some(n);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// A script boxed to run on a connection.
pub type Script =
    Box<dyn Fn(TcpStream, Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A script for connections that bring a request: it runs with the
/// connection (TLS or not) and the request's head once one was read, and
/// not at all otherwise.
pub fn on_request<F, Fut>(script: F) -> Script
where
    F: Fn(Conn, String, Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let script = Arc::new(script);
    Box::new(move |tcp, ctx| {
        let script = script.clone();
        Box::pin(async move {
            if let Some((c, head)) = ctx.accept_request(tcp).await {
                script(c, head, ctx).await;
            }
        })
    })
}

/// A scripted upstream whose TLS (HTTP/1.1 only: the scripts write
/// HTTP/1.x by hand) has a leaf from `ca` for `names`; `script` runs for
/// every accepted connection, after an `accepted` note.
pub async fn scripted<F, Fut>(ca: &TestCa, names: &[&str], script: F) -> Scripted
where
    F: Fn(TcpStream, Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = Ctx {
        acceptor: tls_acceptor(ca, names, Alpn::H1),
        notes: Arc::new(Mutex::new(Vec::new())),
    };
    let notes = ctx.notes.clone();
    let addr = listen(move |tcp| {
        ctx.note("accepted");
        script(tcp, ctx.clone())
    })
    .await;
    Scripted { addr, notes }
}
