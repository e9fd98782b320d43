//! A Rust client that speaks to keyhole exactly as a careful (or hostile)
//! client would: CONNECT by hand ([`connect`]), TLS with a chosen SNI,
//! roots and ALPN ([`Tunnel`]), then HTTP/1.1 or HTTP/2 with chosen
//! headers ([`send`], [`exchange`], [`http1`], [`http2`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use super::proxy::Keyhole;

/// Sends `CONNECT authority` and returns the stream after a `200`, or the
/// proxy's whole response text otherwise.
pub async fn connect(proxy: SocketAddr, authority: &str) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut byte).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("proxy closed: {}", String::from_utf8_lossy(&buf)));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    if head.starts_with("HTTP/1.1 200") {
        Ok(tcp)
    } else {
        // Read the body too, for the message.
        let mut rest = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), tcp.read(&mut rest))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
        Err(format!("{head}{}", String::from_utf8_lossy(&rest[..n])))
    }
}

/// How a [`Tunnel`] names the server in its TLS handshake.
#[derive(Debug, Clone)]
enum ServerId {
    /// Send this name as SNI and check the certificate against it.
    Sni(String),
    /// Send no SNI and check the certificate against this IP address.
    NoSni(IpAddr),
}

/// A client's TLS connection through keyhole: `CONNECT authority`, then a
/// TLS handshake inside the tunnel. By default it sends the authority's
/// host as SNI, trusts keyhole's CA alone and offers HTTP/1.1; each
/// method changes one of these.
///
/// ```ignore
/// let tls = Tunnel::to("api.example.test:443").h2().open(&world).await?;
/// ```
#[derive(Debug, Clone)]
pub struct Tunnel {
    authority: String,
    server: ServerId,
    roots: Option<Vec<CertificateDer<'static>>>,
    alpn: Vec<u8>,
}

impl Tunnel {
    /// A tunnel to `authority` (`host:port`).
    pub fn to(authority: impl Into<String>) -> Tunnel {
        let authority = authority.into();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(host, _)| host)
            .to_owned();
        Tunnel {
            authority,
            server: ServerId::Sni(host),
            roots: None,
            alpn: b"http/1.1".to_vec(),
        }
    }

    /// Sends `name` as SNI (and checks the certificate against it) instead
    /// of the authority's host.
    pub fn sni(mut self, name: &str) -> Tunnel {
        self.server = ServerId::Sni(name.to_owned());
        self
    }

    /// Sends no SNI at all, and checks the certificate against the IP
    /// address `ip`.
    pub fn no_sni(mut self, ip: &str) -> Tunnel {
        self.server = ServerId::NoSni(ip.parse().expect("an IP address"));
        self
    }

    /// Trusts `roots` instead of keyhole's CA (a tunnelled host shows its
    /// own certificate, from the test CA).
    pub fn trust(mut self, roots: &[CertificateDer<'static>]) -> Tunnel {
        self.roots = Some(roots.to_vec());
        self
    }

    /// Offers `protocol` (`b"http/1.1"` or `b"h2"`) by ALPN.
    pub fn alpn(mut self, protocol: &[u8]) -> Tunnel {
        self.alpn = protocol.to_vec();
        self
    }

    /// Offers HTTP/2 by ALPN.
    pub fn h2(self) -> Tunnel {
        self.alpn(b"h2")
    }

    /// Opens it through `proxy`: the TLS stream, or the proxy's refusal or
    /// the handshake's error as text.
    pub async fn open(&self, proxy: &impl AsRef<Keyhole>) -> Result<TlsStream<TcpStream>, String> {
        let keyhole = proxy.as_ref();
        let roots = match &self.roots {
            Some(roots) => roots.clone(),
            None => vec![keyhole.ca_der()],
        };
        let tcp = connect(keyhole.addr, &self.authority).await?;
        self.handshake(tcp, &roots).await
    }

    /// Opens it and sends `req` (see [`send`]).
    pub async fn send(
        &self,
        proxy: &impl AsRef<Keyhole>,
        req: Request<Empty<Bytes>>,
    ) -> Result<(Response<()>, String), String> {
        send(self.open(proxy).await?, req).await
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        roots: &[CertificateDer<'static>],
    ) -> Result<TlsStream<TcpStream>, String> {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![self.alpn.clone()];
        let name: ServerName<'static> = match &self.server {
            ServerId::Sni(n) => ServerName::try_from(n.clone()).map_err(|e| e.to_string())?,
            ServerId::NoSni(ip) => {
                config.enable_sni = false;
                ServerName::IpAddress((*ip).into())
            }
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `Request::get(..).header(..).empty()`: the request with no body, as
/// [`send`] and [`Tunnel::send`] take it.
pub trait NoBody {
    /// The request, with an empty body.
    fn empty(self) -> Request<Empty<Bytes>>;
}

impl NoBody for http::request::Builder {
    fn empty(self) -> Request<Empty<Bytes>> {
        self.body(Empty::new()).expect("a valid request")
    }
}

/// A sender for requests over an HTTP/1.1 connection on `tls`, and the
/// task driving the connection (upgrades allowed), which ends with it.
pub async fn http1<B>(
    tls: TlsStream<TcpStream>,
) -> Result<(http1::SendRequest<B>, JoinHandle<hyper::Result<()>>), String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    Ok((sender, tokio::spawn(conn.with_upgrades())))
}

/// A sender for requests over an HTTP/2 connection on `tls`, and the task
/// driving the connection, which ends with it.
pub async fn http2<B>(
    tls: TlsStream<TcpStream>,
) -> Result<(http2::SendRequest<B>, JoinHandle<hyper::Result<()>>), String>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    Ok((sender, tokio::spawn(conn)))
}

/// One request over `tls`, HTTP/2 when ALPN chose it: the response head
/// and its whole body.
pub async fn exchange<B>(
    tls: TlsStream<TcpStream>,
    req: Request<B>,
) -> Result<(Response<()>, Bytes), String>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let res = if h2 {
        let (mut sender, _) = http2(tls).await?;
        sender.send_request(req).await
    } else {
        let (mut sender, _) = http1(tls).await?;
        sender.send_request(req).await
    };
    let (parts, body) = res.map_err(|e| e.to_string())?.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((Response::from_parts(parts, ()), bytes))
}

/// [`exchange`] with no request body, the response body as text.
pub async fn send(
    tls: TlsStream<TcpStream>,
    req: Request<Empty<Bytes>>,
) -> Result<(Response<()>, String), String> {
    let (res, bytes) = exchange(tls, req).await?;
    Ok((res, String::from_utf8_lossy(&bytes).into_owned()))
}
