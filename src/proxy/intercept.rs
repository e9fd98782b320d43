//! Interception: terminate the client's TLS with a leaf certificate for the
//! CONNECT host, then serve its requests, each one an
//! [`exchange`] with the CONNECT host as destination.
//!
//! Fail closed at every step: a tunnel that does not start with a TLS
//! ClientHello within [`PEEK_TIMEOUT`] is refused (never relayed blindly);
//! an SNI naming another host is refused (absent SNI only for IP targets);
//! a request whose `Host`/`:authority` names another host gets `421`. The
//! upstream is always the CONNECT authority.

use std::sync::Arc;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio_rustls::LazyConfigAcceptor;

use super::exchange::{self, Destination};
use super::idle::Idle;
use super::limits::{CLIENT_TLS_TIMEOUT, PEEK_TIMEOUT};
use super::respond::ProxyError;
use super::rewind::Rewind;
use super::server::{self, Protocol};
use super::Proxy;
use crate::host::Host;

/// First byte of a TLS handshake record, as every ClientHello starts.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves one intercepted tunnel to `dest` until the client is done.
pub async fn serve(proxy: Arc<Proxy>, mut io: TokioIo<Upgraded>, dest: Destination) {
    let host = dest.host.clone();
    let mut first = [0u8; 1];
    match tokio::time::timeout(PEEK_TIMEOUT, io.read(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) | Ok(Err(_)) => return,
        Err(_) => {
            tracing::info!(%host, "intercepted tunnel closed: no TLS ClientHello within {}s", PEEK_TIMEOUT.as_secs());
            return;
        }
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        tracing::warn!(%host, "intercepted tunnel refused: the client did not start TLS");
        server::refuse(io, ProxyError::NotTls { host }).await;
        return;
    }
    let acceptor = LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        Rewind::new(first.to_vec(), io),
    );
    let start = match tokio::time::timeout(CLIENT_TLS_TIMEOUT, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::warn!(%host, error = %e, "intercepted tunnel refused: not a TLS ClientHello");
            return;
        }
        Err(_) => {
            tracing::info!(%host, "intercepted tunnel closed: ClientHello incomplete after {}s", CLIENT_TLS_TIMEOUT.as_secs());
            return;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    match sni.as_deref().map(Host::parse) {
        Some(Ok(named)) if named == host => {}
        None if !host.is_name() => {}
        Some(_) => {
            tracing::warn!(%host, sni = sni.as_deref().unwrap_or(""), "TLS refused: the SNI names another host than the CONNECT target");
            return;
        }
        None => {
            tracing::warn!(%host, "TLS refused: no SNI; a client must name the CONNECT host in its SNI");
            return;
        }
    }
    let config = match proxy.leaves.server_config(&host).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%host, error = %e, "cannot issue a leaf certificate");
            return;
        }
    };
    let tls = match tokio::time::timeout(CLIENT_TLS_TIMEOUT, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%host, error = %e, "client TLS handshake failed; does the client trust keyhole's CA?");
            return;
        }
        Err(_) => {
            tracing::info!(%host, "client TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let limits = &proxy.limits;
    let io = Idle::new(tls, limits.idle_timeout);
    let stop = proxy.tasks.stop_signal();
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
