//! [`Dialer`]: how keyhole reaches an upstream. Resolve once, check the
//! very addresses that will be dialled against the destination guard, dial
//! them in turn within the connect timeout, and (for TLS) complete a
//! handshake verified for the destination host within the TLS timeout.
//!
//! Every failure keeps its kind in [`DialError`] (DNS, refused, timeout,
//! certificate, prohibited address) so that it maps to the right RFC 9209
//! error in [`crate::proxy::respond`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::host::{Authority, HostKind};
use crate::proxy::destination::{Guard, Prohibited};
use crate::proxy::limits::{DIAL_TIMEOUT, UPSTREAM_TLS_TIMEOUT};
use crate::proxy::resolve::{Pins, ResolveError};

/// Dials upstreams: the pins, the destination guard and the timeouts.
///
/// Invariant: an address is dialled only after the guard accepted it, and
/// only addresses of the one lookup made for that dial are dialled, so a
/// DNS answer that changes between check and dial changes nothing.
#[derive(Debug)]
pub struct Dialer {
    pins: Pins,
    /// Which resolved addresses may be dialled.
    pub guard: Guard,
    connect_timeout: Duration,
    tls_timeout: Duration,
}

/// Why an upstream connection failed. Cloned into the response (the pooled
/// client keeps the original in its error chain).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
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
        source: std::sync::Arc<io::Error>,
    },
    /// The upstream's certificate is not valid for the host.
    #[error("the certificate of {host} is not trusted: {reason:?}")]
    Certificate {
        /// The host.
        host: String,
        /// rustls' reason.
        reason: rustls::CertificateError,
    },
    /// The TLS handshake failed otherwise.
    #[error("the TLS handshake with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// What went wrong.
        reason: String,
        /// Whether the upstream sent an alert.
        alert: bool,
    },
    /// The destination address is refused (metadata, private, loop).
    #[error("{authority} resolves to an address keyhole does not dial ({})", why.describe())]
    Prohibited {
        /// host:port.
        authority: String,
        /// Which rule.
        why: Prohibited,
    },
    /// The host cannot be named in a TLS handshake.
    #[error("{0:?} cannot be used as a TLS server name")]
    BadName(String),
}

// === impl Dialer ===

impl Dialer {
    /// A dialer with these pins and guard, and the default timeouts.
    pub fn new(pins: Pins, guard: Guard) -> Dialer {
        Dialer {
            pins,
            guard,
            connect_timeout: DIAL_TIMEOUT,
            tls_timeout: UPSTREAM_TLS_TIMEOUT,
        }
    }

    /// Sets the connect and TLS timeouts (`--connect-timeout`, `--tls-timeout`).
    pub fn with_timeouts(mut self, connect: Duration, tls: Duration) -> Dialer {
        self.connect_timeout = connect;
        self.tls_timeout = tls;
        self
    }

    /// Records one of keyhole's own listening addresses, so that dialling
    /// it is refused as a loop.
    pub fn add_own_listener(&self, addr: SocketAddr) {
        if let Ok(mut own) = self.guard.own.write() {
            own.push(addr);
        }
    }

    /// Resolves once and dials the addresses in turn, within the connect
    /// timeout, after the guard accepted every one of them.
    pub async fn dial(&self, target: &Authority, port: u16) -> Result<TcpStream, DialError> {
        let authority = format!("{}:{port}", target.host);
        let addrs = self.pins.lookup(&target.host, port).await?;
        for addr in &addrs {
            if let Err(why) = self.guard.check(*addr) {
                return Err(DialError::Prohibited { authority, why });
            }
        }
        self.dial_addrs(authority, &addrs).await
    }

    /// Whether `host`, resolved as a dial to it would be (pins first, then
    /// one lookup), includes `addr`'s IP. A failed lookup is `false`.
    pub async fn resolves_to(&self, host: &crate::host::Host, addr: SocketAddr) -> bool {
        self.pins
            .lookup(host, addr.port())
            .await
            .is_ok_and(|addrs| addrs.iter().any(|a| a.ip() == addr.ip()))
    }

    /// Every address of `host`, whatever the port (pins first): what the
    /// sandbox's DNS answers.
    pub async fn addresses(
        &self,
        host: &crate::host::Host,
    ) -> Result<Vec<std::net::IpAddr>, ResolveError> {
        self.pins.lookup_any_port(host).await
    }

    /// Dials `addr` itself (no lookup), after the guard accepted it: for a
    /// destination whose address is already known.
    pub async fn dial_addr(
        &self,
        authority: String,
        addr: SocketAddr,
    ) -> Result<TcpStream, DialError> {
        if let Err(why) = self.guard.check(addr) {
            return Err(DialError::Prohibited { authority, why });
        }
        self.dial_addrs(authority, &[addr]).await
    }

    async fn dial_addrs(
        &self,
        authority: String,
        addrs: &[SocketAddr],
    ) -> Result<TcpStream, DialError> {
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
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Err(_) => Err(DialError::Timeout { authority }),
            Ok(Ok(tcp)) => {
                // Small requests and responses must not wait for Nagle's timer.
                let _ = tcp.set_nodelay(true);
                Ok(tcp)
            }
            Ok(Err(Some(e))) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(DialError::Refused { authority })
            }
            Ok(Err(Some(source))) => Err(DialError::Io {
                authority,
                source: source.into(),
            }),
            Ok(Err(None)) => Err(DialError::Refused { authority }),
        }
    }

    /// Dials `target` and completes a TLS handshake verified for its host.
    pub async fn open_tls(
        &self,
        tls: &TlsConnector,
        target: &Authority,
        port: u16,
    ) -> Result<TlsStream<TcpStream>, DialError> {
        let tcp = self.dial(target, port).await?;
        self.handshake(tls, target, tcp).await
    }

    /// Completes a TLS handshake over `tcp`, verified for `target`'s host,
    /// within the TLS timeout.
    pub async fn handshake(
        &self,
        tls: &TlsConnector,
        target: &Authority,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, DialError> {
        let host = target.host.as_str().to_owned();
        let name = match target.host.kind() {
            HostKind::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
            HostKind::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
            HostKind::Name => {
                ServerName::try_from(host.clone()).map_err(|_| DialError::BadName(host.clone()))?
            }
        };
        match tokio::time::timeout(self.tls_timeout, tls.connect(name, tcp)).await {
            Err(_) => Err(DialError::Tls {
                host,
                reason: format!("no handshake within {:?} (--tls-timeout)", self.tls_timeout),
                alert: false,
            }),
            Ok(Err(e)) => Err(tls_error(host, e)),
            Ok(Ok(s)) => Ok(s),
        }
    }
}

/// Sorts a failed handshake by what rustls said.
fn tls_error(host: String, e: io::Error) -> DialError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(reason)) => DialError::Certificate {
            host,
            reason: reason.clone(),
        },
        Some(rustls::Error::AlertReceived(alert)) => DialError::Tls {
            host,
            reason: format!("the server sent the alert {alert:?}"),
            alert: true,
        },
        Some(other) => DialError::Tls {
            host,
            reason: other.to_string(),
            alert: false,
        },
        None => DialError::Tls {
            host,
            reason: e.to_string(),
            alert: false,
        },
    }
}

/// What to do about a certificate rustls refused, matched on its reason.
pub fn certificate_advice(reason: &rustls::CertificateError) -> &'static str {
    use rustls::CertificateError as E;
    match reason {
        E::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            "nothing was sent. The server presents a CA certificate (basicConstraints CA:TRUE) as its own; give it a leaf certificate with CA:FALSE, signed by the CA you pass with --upstream-ca"
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "nothing was sent. The certificate does not name this host; check the host, or the server's certificate"
        }
        E::Expired | E::ExpiredContext { .. } | E::NotValidYet | E::NotValidYetContext { .. } => {
            "nothing was sent. Check the server certificate's dates and this machine's clock"
        }
        _ => "nothing was sent. If this server uses a private CA, pass it with --upstream-ca",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn certificate_advice_names_the_fix() {
        let ca_leaf = rustls::CertificateError::Other(rustls::OtherError(Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        )));
        assert!(certificate_advice(&ca_leaf).contains("CA:FALSE"));
        // Another error of the same shape is not mistaken for it.
        let other = rustls::CertificateError::Other(rustls::OtherError(Arc::new(
            std::io::Error::other("CaUsedAsEndEntity"),
        )));
        assert!(certificate_advice(&other).contains("--upstream-ca"));
        let unknown = rustls::CertificateError::UnknownIssuer;
        assert!(certificate_advice(&unknown).contains("--upstream-ca"));
        assert!(certificate_advice(&rustls::CertificateError::Expired).contains("clock"));
        let name = rustls::CertificateError::NotValidForName;
        assert!(certificate_advice(&name).contains("does not name"));
    }
}
