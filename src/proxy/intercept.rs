//! Interception: read the client's TLS ClientHello, terminate its TLS with
//! a leaf certificate for the destination host, then serve its requests,
//! each one an [`exchange`] with that destination.
//!
//! Used for CONNECT tunnels ([`serve`]) and for connections the kernel
//! redirected ([`super::transparent`]), which share [`read_hello`] and
//! [`handshake`] and [`serve_requests`].
//!
//! Fail closed at every step: a tunnel that does not start with a TLS
//! ClientHello within [`PEEK_TIMEOUT`] is refused (never relayed blindly);
//! an SNI naming another host is refused (absent SNI only for IP targets);
//! a request whose `Host`/`:authority` names another host gets `421`. The
//! upstream is always the destination.

use std::sync::Arc;

use rustls::server::{Accepted, Acceptor};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::StartHandshake;

use super::exchange::{self, Destination};
use super::idle::Idle;
use super::limits::{CLIENT_TLS_TIMEOUT, MAX_CLIENT_HELLO, PEEK_TIMEOUT};
use super::respond::ProxyError;
use super::server::{self, Protocol};
use super::Proxy;
use crate::host::Host;

/// First byte of a TLS handshake record, as every ClientHello starts.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A ClientHello read off a connection: rustls' view of it, and every byte
/// read so far, so that a connection keyhole decides to tunnel can be
/// replayed to the upstream as the client sent it.
pub struct Hello {
    accepted: Accepted,
    sni: Option<String>,
    /// The bytes read, ClientHello first.
    pub bytes: Vec<u8>,
}

/// Why no ClientHello was read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The client closed the connection first.
    #[error("the client closed the connection before its ClientHello")]
    Closed,
    /// Nothing came within [`PEEK_TIMEOUT`], or the rest not within
    /// [`CLIENT_TLS_TIMEOUT`].
    #[error("no complete ClientHello in time")]
    Timeout,
    /// The first byte is not a TLS handshake record.
    #[error("the client did not start TLS")]
    NotTls,
    /// Longer than [`MAX_CLIENT_HELLO`].
    #[error("the ClientHello is longer than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    /// rustls refused it.
    #[error("not a valid ClientHello: {0}")]
    Invalid(rustls::Error),
    /// Reading failed.
    #[error("reading the ClientHello failed: {0}")]
    Io(std::io::Error),
}

// === impl Hello ===

impl Hello {
    /// The SNI, as the client sent it.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
}

/// Reads a whole ClientHello from `io`: the first byte within
/// [`PEEK_TIMEOUT`] (and it must start a TLS handshake record), the rest
/// within [`CLIENT_TLS_TIMEOUT`], at most [`MAX_CLIENT_HELLO`] bytes. A
/// ClientHello of any size up to the bound is read whole (post-quantum key
/// shares make them larger than one packet).
pub async fn read_hello<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<Hello, HelloError> {
    let mut acceptor = Acceptor::default();
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let mut first = true;
    let deadline = tokio::time::Instant::now() + CLIENT_TLS_TIMEOUT;
    loop {
        let read = io.read(&mut chunk);
        let n = match first {
            true => tokio::time::timeout(PEEK_TIMEOUT, read).await,
            false => tokio::time::timeout_at(deadline, read).await,
        }
        .map_err(|_| HelloError::Timeout)?
        .map_err(HelloError::Io)?;
        let Some(got) = chunk.get(..n).filter(|c| !c.is_empty()) else {
            return Err(HelloError::Closed);
        };
        if first && got.first() != Some(&TLS_HANDSHAKE_RECORD) {
            return Err(HelloError::NotTls);
        }
        first = false;
        if bytes.len() + got.len() > MAX_CLIENT_HELLO {
            return Err(HelloError::TooLarge);
        }
        bytes.extend_from_slice(got);
        let mut rest = got;
        while !rest.is_empty() {
            acceptor.read_tls(&mut rest).map_err(HelloError::Io)?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(Hello {
                    accepted,
                    sni,
                    bytes,
                });
            }
            Ok(None) => {}
            Err((e, _alert)) => return Err(HelloError::Invalid(e)),
        }
    }
}

/// Serves one CONNECT tunnel that keyhole intercepts, until the client is
/// done. Its SNI must name the CONNECT host (an IP target may have none).
///
/// The handshake's state (the ClientHello buffer, rustls' acceptor and
/// handshake) is boxed and freed when the handshake ends: inline, it would
/// size the future of every intercepted connection for its whole life.
pub async fn serve<IO>(proxy: Arc<Proxy>, io: IO, dest: Destination)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Some(tls) = Box::pin(accept(&proxy, io, &dest.host)).await {
        serve_requests(proxy, tls, dest).await;
    }
}

/// Reads the ClientHello, checks its SNI against the CONNECT `host` and
/// completes the handshake.
async fn accept<IO>(proxy: &Proxy, mut io: IO, host: &Host) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hello = match read_hello(&mut io).await {
        Ok(hello) => hello,
        Err(HelloError::NotTls) => {
            tracing::warn!(%host, "intercepted tunnel refused: the client did not start TLS");
            let host = host.clone();
            server::refuse(io, ProxyError::NotTls { host }).await;
            return None;
        }
        Err(e) => {
            tracing::info!(%host, "intercepted tunnel closed: {e}");
            return None;
        }
    };
    match hello.sni().map(Host::parse) {
        Some(Ok(named)) if &named == host => {}
        None if !host.is_name() => {}
        Some(_) => {
            let sni = hello.sni().unwrap_or_default();
            tracing::warn!(%host, sni, "TLS refused: the SNI names another host than the CONNECT target");
            return None;
        }
        None => {
            tracing::warn!(%host, "TLS refused: no SNI; a client must name the CONNECT host in its SNI");
            return None;
        }
    }
    handshake(proxy, io, hello, host).await
}

/// Completes the client's TLS handshake with a leaf for `host`, within
/// [`CLIENT_TLS_TIMEOUT`]. Callers box it (see [`serve`]).
pub async fn handshake<IO>(
    proxy: &Proxy,
    io: IO,
    hello: Hello,
    host: &Host,
) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = match proxy.leaves.server_config(host).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%host, error = %e, "cannot issue a leaf certificate");
            return None;
        }
    };
    let start = StartHandshake::from_parts(hello.accepted, io);
    match tokio::time::timeout(CLIENT_TLS_TIMEOUT, start.into_stream(config)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::info!(%host, error = %e, "client TLS handshake failed; does the client trust keyhole's CA?");
            None
        }
        Err(_) => {
            tracing::info!(%host, "client TLS handshake timed out");
            None
        }
    }
}

/// Serves the requests of an established client TLS session, HTTP/2 or
/// HTTP/1.1 by ALPN, each as an [`exchange`] to `dest`.
pub async fn serve_requests<IO>(proxy: Arc<Proxy>, tls: TlsStream<IO>, dest: Destination)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let limits = &proxy.limits;
    let io = Idle::new(tls, limits.idle_timeout);
    let stop = proxy.tasks.stop_signal();
    let host = dest.host.clone();
    let dest = Arc::new(dest);
    let handler_proxy = proxy.clone();
    let handler = move |req| exchange::run(handler_proxy.clone(), dest.clone(), req);
    let protocol = match h2 {
        true => Protocol::Http2 {
            max_streams: limits.http2_max_streams,
            max_header_bytes: limits.max_header_bytes,
        },
        false => Protocol::Http1(limits.http1()),
    };
    if let Err(e) = server::serve(io, protocol, handler, stop).await {
        tracing::debug!(%host, error = %e, "intercepted connection ended with an error");
    }
}
