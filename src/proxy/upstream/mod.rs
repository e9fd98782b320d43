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
//! - [`client`]: the pool of connections, by [`Origin`]; [`SendError`].
//! - [`stream`]: [`UpstreamStream`], one connection, plain or TLS.

pub mod client;
pub mod dialer;
pub mod stream;

pub use client::{Client, Origin, SendError, UpstreamBody};
pub use dialer::{DialError, Dialer};
pub use stream::UpstreamStream;

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;

use crate::host::Authority;
use client::OriginKey;

/// Dials upstreams for the pooled client: TCP through the [`Dialer`]
/// (pins, destination guard, timeouts), then TLS verified for the host.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    dialer: Arc<Dialer>,
}

/// Builds a pooled client; each connection resolves its host once, or
/// dials the origin's own address when it has one (transparent mode: the
/// client chose it), TLS still verified for the host.
pub fn client(tls: TlsConnector, dialer: Arc<Dialer>) -> Client {
    Client::new(Connector { tls, dialer })
}

// === impl Connector ===

impl Connector {
    async fn connect(&self, origin: &OriginKey) -> Result<UpstreamStream, DialError> {
        let target = Authority {
            host: origin.host.clone(),
            port: Some(origin.port),
        };
        let tcp = match origin.addr {
            Some(addr) => {
                let authority = format!("{}:{}", origin.host, origin.port);
                self.dialer.dial_addr(authority, addr).await?
            }
            None => self.dialer.dial(&target, origin.port).await?,
        };
        if !origin.https {
            return Ok(UpstreamStream::Plain(TokioIo::new(tcp)));
        }
        let stream = self.dialer.handshake(&self.tls, &target, tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(UpstreamStream::Tls(Box::new(TokioIo::new(stream)), h2))
    }
}
