//! Transparent mode: connections the kernel redirected to keyhole (an
//! nftables `redirect` in the sandbox's network namespace), from clients
//! that never asked for a proxy.
//!
//! Each connection's original destination comes from `SO_ORIGINAL_DST`
//! (conntrack, so the listening socket must live in the namespace where
//! the redirect happened). keyhole then decides as it would for a CONNECT:
//! - TLS: the ClientHello is read whole; its SNI (or, without one, the
//!   address) is the destination host, and it must belong to the address
//!   the client connected to (keyhole resolves the name itself and the
//!   address must be among the answers), else the connection is refused as
//!   a mismatch. Then deny, tunnel (the hello replayed) or intercept, as
//!   `CONNECT SNI:port` would be.
//! - plain HTTP: each request's `Host` must name the original destination
//!   the same way; requests are exchanges with [`Scheme::Http`].
//! - anything else (or a client that says nothing first): tunnelled only
//!   when egress allows the address and raw tunnels are not refused
//!   (`--transparent-refuse-raw`).
//!
//! The original destination is the only address ever dialled for the
//! connection: its requests' origin carries the address
//! ([`Destination::pinned`]), and the pool keeps connections to it apart
//! from those to the host resolved. Egress, the destination guard, substitution,
//! scrubbing, the audit log and metrics apply unchanged.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::body::ProxyBody;
use super::exchange::{self, Destination, Scheme};
use super::intercept::{self, TLS_HANDSHAKE_RECORD};
use super::limits::SNIFF_TIMEOUT;
use super::respond::ProxyError;
use super::server::{self, Protocol};
use super::{tunnel, Counters, Proxy};
use crate::host::{Authority, Host};
use crate::policy::Action;
use crate::proxy::resolve::ResolveError;
use crate::sandbox::dns::Lookup;

/// What a redirected connection starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    /// A TLS handshake record.
    Tls,
    /// An HTTP/1.x request line.
    Http,
    /// Other bytes.
    Other,
    /// Nothing within [`SNIFF_TIMEOUT`] (a protocol whose server speaks
    /// first).
    Silent,
    /// The client closed the connection.
    Closed,
}

/// Methods whose request line marks a connection as plain HTTP.
const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// Handles one redirected connection until it ends.
pub async fn handle(proxy: Arc<Proxy>, tcp: TcpStream, peer: SocketAddr) {
    let orig = match original_dst(&tcp) {
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "transparent connection refused: no original destination (is the redirect in place?)");
            return;
        }
    };
    if tcp.local_addr().is_ok_and(|local| local == orig) {
        tracing::warn!(%peer, "transparent connection refused: it was not redirected (a client connected to the transparent listener itself)");
        return;
    }
    if let Err(why) = proxy.dialer.guard.check(orig) {
        tracing::info!(%peer, %orig, "transparent connection refused: {}", why.describe());
        return;
    }
    match sniff(&tcp).await {
        Sniffed::Tls => tls(proxy, tcp, orig).await,
        Sniffed::Http => http(proxy, tcp, orig).await,
        Sniffed::Other | Sniffed::Silent => raw(proxy, tcp, orig, None).await,
        Sniffed::Closed => {}
    }
}

/// The original destination of a redirected connection (`SO_ORIGINAL_DST`).
fn original_dst(tcp: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(tcp);
    let addr = match tcp.local_addr()? {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::other("the original destination is not an IP address"))
}

/// Looks at the first bytes without consuming them.
async fn sniff(tcp: &TcpStream) -> Sniffed {
    let mut buf = [0u8; 16];
    let n = match tokio::time::timeout(SNIFF_TIMEOUT, tcp.peek(&mut buf)).await {
        Err(_) => return Sniffed::Silent,
        Ok(Err(_)) | Ok(Ok(0)) => return Sniffed::Closed,
        Ok(Ok(n)) => n,
    };
    let seen = buf.get(..n).unwrap_or_default();
    if seen.first() == Some(&TLS_HANDSHAKE_RECORD) {
        return Sniffed::Tls;
    }
    // A request line may arrive in pieces: a prefix of a method counts.
    let http = HTTP_METHODS
        .iter()
        .any(|m| m.starts_with(seen) || seen.starts_with(m));
    match http {
        true => Sniffed::Http,
        false => Sniffed::Other,
    }
}

/// The host an address is when no name was given.
fn ip_host(ip: IpAddr) -> Option<Host> {
    match ip {
        IpAddr::V4(v4) => Some(Host::from_ipv4(v4)),
        IpAddr::V6(v6) => Host::parse(&format!("[{v6}]")).ok(),
    }
}

/// Whether `host` is the original destination: the address itself, or a
/// name keyhole resolves (pins first) to a set that holds it.
async fn names(proxy: &Proxy, host: &Host, orig: SocketAddr) -> bool {
    if !host.is_name() {
        return ip_host(orig.ip()).is_some_and(|ip| &ip == host);
    }
    proxy.dialer.resolves_to(host, orig).await
}

/// TLS: decide on the SNI, as a CONNECT to `SNI:port` would be decided.
async fn tls(proxy: Arc<Proxy>, mut tcp: TcpStream, orig: SocketAddr) {
    // Boxed, as in `intercept::serve`: the handshake's state must not size
    // the connection's future for its whole life.
    let hello = match Box::pin(intercept::read_hello(&mut tcp)).await {
        Ok(hello) => hello,
        Err(e) => {
            tracing::info!(%orig, "transparent TLS connection closed: {e}");
            return;
        }
    };
    let named = match hello.sni() {
        Some(sni) => Host::parse(sni).ok(),
        None => ip_host(orig.ip()),
    };
    let Some(host) = named else {
        tracing::warn!(%orig, "transparent TLS refused: the SNI is not a valid host name");
        return;
    };
    if !names(&proxy, &host, orig).await {
        tracing::warn!(%orig, %host, "transparent TLS refused: the SNI does not resolve to the address the client connected to");
        return;
    }
    let snapshot = proxy.snapshot();
    match snapshot.policy.decide(&host) {
        Action::Deny => {
            Counters::add(&proxy.counters.denied, 1);
            tracing::info!(%orig, %host, action = "deny", "transparent TLS refused: egress does not allow {host}");
        }
        Action::Tunnel => {
            tracing::info!(%orig, %host, action = "tunnel", "transparent TLS");
            let replay = hello.bytes;
            raw(proxy, tcp, orig, Some((host, replay))).await;
        }
        Action::Intercept(_) => {
            Counters::add(&proxy.counters.intercepts, 1);
            tracing::info!(%orig, %host, action = "intercept", "transparent TLS");
            let dest = Destination::new(host, orig.port(), Scheme::Https, Some(orig));
            if let Some(tls) = Box::pin(intercept::handshake(&proxy, tcp, hello, &dest.host)).await
            {
                intercept::serve_requests(proxy, tls, dest).await;
            }
        }
    }
}

/// Plain HTTP: each request's `Host` must name the original destination.
async fn http(proxy: Arc<Proxy>, tcp: TcpStream, orig: SocketAddr) {
    let stop = proxy.tasks.stop_signal();
    let protocol = Protocol::Http1(proxy.limits.http1());
    let handler_proxy = proxy.clone();
    let handler = move |req| http_request(handler_proxy.clone(), orig, req);
    if let Err(e) = server::serve(tcp, protocol, handler, stop).await {
        tracing::debug!(%orig, error = %e, "transparent HTTP connection ended with an error");
    }
}

async fn http_request(
    proxy: Arc<Proxy>,
    orig: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let named = match request_host(&req) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    // A Host without a port names port 80, plain HTTP's default.
    let port_matches = named.port.unwrap_or(80) == orig.port();
    if !port_matches || !names(&proxy, &named.host, orig).await {
        let refusal = ProxyError::NotTheDestination {
            addr: orig,
            named: named.to_string(),
        };
        proxy.counters.error(refusal.error_type());
        tracing::warn!(%orig, "transparent HTTP request refused: {}", refusal.message());
        return refusal.into_response();
    }
    let dest = Destination::new(named.host, orig.port(), Scheme::Http, Some(orig));
    exchange::run(proxy, dest, req).await
}

/// The host a plain HTTP request names: its `Host` header (one, valid).
fn request_host(req: &Request<Incoming>) -> Result<Authority, ProxyError> {
    use super::respond::BadHost;
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let value = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(ProxyError::Host(BadHost::Several)),
        (Some(v), None) => v,
        _ => return Err(ProxyError::Host(BadHost::Missing)),
    };
    let text = value
        .to_str()
        .map_err(|_| ProxyError::Host(BadHost::Invalid))?;
    Authority::parse(text).map_err(|_| ProxyError::Host(BadHost::Invalid))
}

/// Tunnels the connection to the original destination, replaying what was
/// read: a TLS host no credential applies to (`tls` = its host and the
/// hello read), or bytes keyhole does not classify, which need egress to
/// allow the address and raw tunnels on.
async fn raw(proxy: Arc<Proxy>, tcp: TcpStream, orig: SocketAddr, tls: Option<(Host, Vec<u8>)>) {
    let (host, replay) = match tls {
        Some(decided) => decided,
        None => {
            let Some(host) = ip_host(orig.ip()) else {
                return;
            };
            let allowed = proxy.transparent_raw && proxy.snapshot().policy.egress_allows(&host);
            if !allowed {
                Counters::add(&proxy.counters.denied, 1);
                tracing::info!(%orig, action = "deny", "transparent connection refused: neither TLS nor HTTP, and egress does not allow {host} (or raw tunnels are refused)");
                return;
            }
            tracing::info!(%orig, action = "tunnel", "transparent connection neither TLS nor HTTP: tunnelled");
            (host, Vec::new())
        }
    };
    let mut upstream = match proxy.dialer.dial_addr(orig.to_string(), orig).await {
        Ok(up) => up,
        Err(e) => {
            tracing::info!(%orig, %host, error = %e, "transparent tunnel failed");
            return;
        }
    };
    Counters::add(&proxy.counters.tunnels, 1);
    if upstream.write_all(&replay).await.is_err() {
        return;
    }
    tunnel::splice(tcp, upstream, proxy.limits.idle_timeout, &host).await;
}

/// Answers one DNS question of the sandbox: a name egress does not allow
/// is "no such name" without any lookup (DNS must not carry data to an
/// attacker's name server); others resolve as keyhole itself would
/// (`--resolve` pins first), IPv4 only (IPv6 is blocked in the sandbox).
pub async fn lookup(proxy: &Proxy, name: &str) -> Lookup {
    let Ok(host) = Host::parse(name) else {
        return Lookup::NoSuchName;
    };
    if !proxy.snapshot().policy.egress_allows(&host) {
        tracing::info!(%host, "sandbox DNS: no such name (egress does not allow it)");
        return Lookup::NoSuchName;
    }
    match proxy.dialer.addresses(&host).await {
        Ok(ips) => Lookup::Found(
            ips.into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        ),
        Err(ResolveError::Timeout { .. }) => Lookup::Failed,
        Err(_) => Lookup::NoSuchName,
    }
}
