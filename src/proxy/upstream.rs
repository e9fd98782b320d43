//! Connections to upstream servers: resolve once, dial with a timeout and
//! `TCP_NODELAY`, verify TLS for the destination host, pick HTTP/2 or
//! HTTP/1.1 by the server's ALPN, and pool.
//!
//! The connector is keyhole's own rather than a generic HTTPS connector so
//! that every failure keeps its kind (DNS, refused, timeout, certificate)
//! and maps to the right RFC 9209 error, and so that the address dialled is
//! the one resolved.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{StatusCode, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::body::ProxyBody;
use super::destination::Refused;
use super::resolve::{ResolveError, Resolver};
use super::respond::Refusal;
use crate::host::{Authority, HostKind};

/// Longest wait for a TCP connection to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an upstream TLS handshake.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled upstream connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle pooled connections kept per upstream. A pool smaller than the
/// number of requests a client keeps in flight closes and reopens upstream
/// connections on every burst: with 32, fifty concurrent plain-HTTP
/// clients made keyhole open one upstream connection per eleven requests
/// (benches/proxy). 256 covers what agents and load tests drive; idle
/// sockets still close after [`POOL_IDLE_TIMEOUT`], and an idle TLS
/// connection costs about 30 KiB, so a full pool for one host is ~8 MiB.
pub const POOL_MAX_IDLE_PER_HOST: usize = 256;

/// Why an upstream connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The name did not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Every address refused the connection.
    #[error("{authority} refused the connection")]
    Refused {
        /// host:port.
        authority: String,
    },
    /// Connecting took too long.
    #[error("connecting to {authority} took too long (--connect-timeout)")]
    Timeout {
        /// host:port.
        authority: String,
    },
    /// Another socket error.
    #[error("cannot connect to {authority}: {source}")]
    Io {
        /// host:port.
        authority: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The upstream's certificate is not valid for the host.
    #[error("the certificate of {host} is not trusted: {reason}")]
    Certificate {
        /// The host.
        host: String,
        /// rustls' reason.
        reason: String,
    },
    /// The TLS handshake failed otherwise.
    #[error("the TLS handshake with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// rustls' reason.
        reason: String,
        /// Whether the upstream sent an alert.
        alert: bool,
    },
    /// The destination address is refused (metadata, private, loop).
    #[error("{authority} resolves to an address keyhole does not dial ({})", match why {
        Refused::Metadata => "a cloud metadata endpoint",
        Refused::Private => "a private, loopback or link-local address, refused by --deny-private",
        Refused::Loop => "keyhole's own listener: a proxy loop",
    })]
    Prohibited {
        /// host:port.
        authority: String,
        /// Which rule.
        why: Refused,
    },
    /// The URI had no usable host.
    #[error("the upstream address {0:?} is not valid")]
    BadUri(String),
}

/// A connection to an upstream: plain TCP (for `http://` forwarding) or TLS.
pub enum UpstreamStream {
    /// Plain TCP.
    Plain(TokioIo<TcpStream>),
    /// TLS (boxed: the session state is large), with whether ALPN chose HTTP/2.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>, bool),
}

/// Dials upstreams for the pooled client.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    resolver: Arc<Resolver>,
}

/// The pooled HTTP client towards upstreams.
pub type Client = hyper_util::client::legacy::Client<Connector, ProxyBody>;

/// Builds the pooled client.
pub fn client(tls: Arc<rustls::ClientConfig>, resolver: Arc<Resolver>) -> Client {
    let connector = Connector {
        tls: TlsConnector::from(tls),
        resolver,
    };
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .build(connector)
}

// === impl Connector ===

impl Connector {
    async fn connect(self, uri: Uri) -> Result<UpstreamStream, ConnectError> {
        let bad = || ConnectError::BadUri(uri.to_string());
        let authority = uri.authority().ok_or_else(bad)?;
        let target = Authority::parse(authority.as_str()).map_err(|_| bad())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let port = target.port.unwrap_or(if tls { 443 } else { 80 });
        if !tls {
            let tcp = dial(&self.resolver, &target, port).await?;
            return Ok(UpstreamStream::Plain(TokioIo::new(tcp)));
        }
        let stream = open_tls(&self.resolver, &self.tls, &target, port).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(UpstreamStream::Tls(Box::new(TokioIo::new(stream)), h2))
    }
}

/// Dials `target` and completes a TLS handshake verified for its host,
/// within [`CONNECT_TIMEOUT`] and [`TLS_TIMEOUT`].
pub async fn open_tls(
    resolver: &Resolver,
    tls: &TlsConnector,
    target: &Authority,
    port: u16,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let tcp = dial(resolver, target, port).await?;
    let host = target.host.as_str().to_owned();
    let name = match target.host.kind() {
        HostKind::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
        HostKind::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
        HostKind::Name => {
            ServerName::try_from(host.clone()).map_err(|_| ConnectError::BadUri(host.clone()))?
        }
    };
    match tokio::time::timeout(resolver.tls_timeout, tls.connect(name, tcp)).await {
        Err(_) => Err(ConnectError::Tls {
            host,
            reason: format!(
                "no handshake within {:?} (--tls-timeout)",
                resolver.tls_timeout
            ),
            alert: false,
        }),
        Ok(Err(e)) => Err(tls_error(host, e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Resolves once and dials the addresses in turn, within [`CONNECT_TIMEOUT`].
pub async fn dial(
    resolver: &Resolver,
    target: &Authority,
    port: u16,
) -> Result<TcpStream, ConnectError> {
    let authority = format!("{}:{port}", target.host);
    let addrs = resolver.resolve(&target.host, port).await?;
    // Check the very addresses that are dialled: no second lookup.
    for addr in &addrs {
        if let Err(why) = resolver.guard.check(*addr) {
            return Err(ConnectError::Prohibited { authority, why });
        }
    }
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(resolver.connect_timeout, attempt).await {
        Err(_) => Err(ConnectError::Timeout { authority }),
        Ok(Ok(tcp)) => {
            // Small requests and responses must not wait for Nagle's timer.
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
        Ok(Err(Some(e))) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ConnectError::Refused { authority })
        }
        Ok(Err(Some(source))) => Err(ConnectError::Io { authority, source }),
        Ok(Err(None)) => Err(ConnectError::Refused { authority }),
    }
}

fn tls_error(host: String, e: io::Error) -> ConnectError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(reason)) => ConnectError::Certificate {
            host,
            reason: format!("{reason:?}"),
        },
        Some(rustls::Error::AlertReceived(alert)) => ConnectError::Tls {
            host,
            reason: format!("the server sent the alert {alert:?}"),
            alert: true,
        },
        Some(other) => ConnectError::Tls {
            host,
            reason: other.to_string(),
            alert: false,
        },
        None => ConnectError::Tls {
            host,
            reason: e.to_string(),
            alert: false,
        },
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

// === impl ConnectError ===

impl ConnectError {
    /// The response keyhole gives the client for this failure.
    pub fn refusal(&self) -> Refusal {
        use StatusCode as S;
        let (status, error, details) = match self {
            ConnectError::Resolve(ResolveError::Timeout { .. }) => {
                (S::GATEWAY_TIMEOUT, "dns_timeout", None)
            }
            ConnectError::Resolve(_) => (S::BAD_GATEWAY, "dns_error", None),
            ConnectError::Refused { .. } => (S::BAD_GATEWAY, "connection_refused", None),
            ConnectError::Timeout { .. } => (S::GATEWAY_TIMEOUT, "connection_timeout", None),
            ConnectError::Io { .. } => (S::BAD_GATEWAY, "destination_unavailable", None),
            ConnectError::Certificate { reason, .. } => (
                S::BAD_GATEWAY,
                "tls_certificate_error",
                Some(reason.clone()),
            ),
            ConnectError::Tls {
                reason,
                alert: true,
                ..
            } => (S::BAD_GATEWAY, "tls_alert_received", Some(reason.clone())),
            ConnectError::Tls { reason, .. } => {
                (S::BAD_GATEWAY, "tls_protocol_error", Some(reason.clone()))
            }
            ConnectError::BadUri(_) => (S::BAD_GATEWAY, "proxy_internal_error", None),
            ConnectError::Prohibited {
                why: Refused::Loop, ..
            } => (S::LOOP_DETECTED, "proxy_loop_detected", None),
            ConnectError::Prohibited { .. } => (S::FORBIDDEN, "destination_ip_prohibited", None),
        };
        let advice = match (error, self) {
            ("tls_certificate_error", ConnectError::Certificate { reason, .. }) => {
                certificate_advice(reason)
            }
            ("dns_error" | "dns_timeout", _) => {
                "; check the name, or pin it with --resolve HOST:PORT:ADDR"
            }
            _ => "",
        };
        let refusal = Refusal::new(status, error, format!("{self}{advice}"));
        match details {
            Some(d) => refusal.details(d),
            None => refusal,
        }
    }
}

/// What to do about a certificate rustls refused, from its reason.
fn certificate_advice(reason: &str) -> &'static str {
    if reason.contains("CaUsedAsEndEntity") {
        "; nothing was sent. The server presents a CA certificate (basicConstraints CA:TRUE) as its own; give it a leaf certificate with CA:FALSE, signed by the CA you pass with --upstream-ca"
    } else if reason.contains("NotValidForName") {
        "; nothing was sent. The certificate does not name this host; check the host, or the server's certificate"
    } else if reason.contains("Expired") || reason.contains("NotValidYet") {
        "; nothing was sent. Check the server certificate's dates and this machine's clock"
    } else {
        "; nothing was sent. If this server uses a private CA, pass it with --upstream-ca"
    }
}

// === impl UpstreamStream ===

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            UpstreamStream::Tls(_, true) => Connected::new().negotiated_h2(),
            _ => Connected::new(),
        }
    }
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s, _) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s, _) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s, _) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// Finds a [`ConnectError`] in the source chain of a client error.
pub fn find_connect_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ConnectError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return Some(c);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_advice_names_the_fix() {
        let ca_leaf = format!(
            "{:?}",
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(std::io::Error::other(
                "CaUsedAsEndEntity"
            ))))
        );
        assert!(certificate_advice(&ca_leaf).contains("CA:FALSE"));
        let unknown = format!("{:?}", rustls::CertificateError::UnknownIssuer);
        assert!(certificate_advice(&unknown).contains("--upstream-ca"));
        let expired = format!("{:?}", rustls::CertificateError::Expired);
        assert!(certificate_advice(&expired).contains("clock"));
        let name = format!("{:?}", rustls::CertificateError::NotValidForName);
        assert!(certificate_advice(&name).contains("does not name"));
    }
}
