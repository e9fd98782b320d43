//! Upstreams: the [`Dialer`] that reaches them and the pooled HTTP
//! [`Client`] that sends requests to them, HTTP/2 or HTTP/1.1 by the
//! server's ALPN.
//!
//! The connector is keyhole's own rather than a generic HTTPS connector so
//! that every failure keeps its kind ([`DialError`]) and maps to the right
//! RFC 9209 error, and so that the address dialled is the one resolved and
//! checked.
//!
//! - [`dialer`]: resolve, guard, dial, TLS handshake; [`DialError`].
//! - [`stream`]: [`UpstreamStream`], the connection hyper's pool holds.

pub mod dialer;
pub mod stream;

pub use dialer::{DialError, Dialer};
pub use stream::UpstreamStream;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_rustls::TlsConnector;

use super::body::ProxyBody;
use super::limits::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST};
use crate::host::Authority;

/// Dials upstreams for the pooled client.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    dialer: Arc<Dialer>,
    /// The one address to dial, whatever the name resolves to (transparent
    /// mode: the client chose it).
    fixed: Option<SocketAddr>,
}

/// The pooled HTTP client towards upstreams.
pub type Client = hyper_util::client::legacy::Client<Connector, ProxyBody>;

/// Builds the pooled client, which resolves each name once per connection.
pub fn client(tls: TlsConnector, dialer: Arc<Dialer>) -> Client {
    build(Connector {
        tls,
        dialer,
        fixed: None,
    })
}

/// Builds a client whose every connection goes to `addr` (TLS still
/// verified for the request's host): for one transparent connection, whose
/// client chose the address. Its pool lives as long as that connection.
pub fn pinned_client(tls: TlsConnector, dialer: Arc<Dialer>, addr: SocketAddr) -> Client {
    build(Connector {
        tls,
        dialer,
        fixed: Some(addr),
    })
}

fn build(connector: Connector) -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .build(connector)
}

// === impl Connector ===

impl Connector {
    async fn connect(self, uri: Uri) -> Result<UpstreamStream, DialError> {
        let bad = || DialError::BadName(uri.to_string());
        let authority = uri.authority().ok_or_else(bad)?;
        let target = Authority::parse(authority.as_str()).map_err(|_| bad())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let port = target.port.unwrap_or(if tls { 443 } else { 80 });
        let tcp = match self.fixed {
            Some(addr) => {
                self.dialer
                    .dial_addr(format!("{}:{port}", target.host), addr)
                    .await?
            }
            None => self.dialer.dial(&target, port).await?,
        };
        if !tls {
            return Ok(UpstreamStream::Plain(TokioIo::new(tcp)));
        }
        let stream = self.dialer.handshake(&self.tls, &target, tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(UpstreamStream::Tls(Box::new(TokioIo::new(stream)), h2))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamStream;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// Finds a [`DialError`] in the source chain of a client error.
pub fn find_dial_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<DialError>() {
            return Some(c);
        }
        cur = err.source();
    }
    None
}
