//! Test upstream servers on 127.0.0.1:0: TLS with certificates from a test
//! CA made with rcgen here, or plain HTTP. They record every request they
//! receive and reflect its headers in a JSON body, as some real APIs do.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A CA for test upstreams (not keyhole's CA).
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "keyhole test upstream CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` as PEM: (certificate chain, PKCS#8 key).
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let (chain, key) = self.leaf(names);
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        let chain_pem = chain
            .iter()
            .map(|c| pem("CERTIFICATE", c.as_ref()))
            .collect();
        (chain_pem, pem("PRIVATE KEY", key.secret_der()))
    }

    /// A leaf for `names` (DNS names, or IP addresses as IP SANs).
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        params.is_ca = IsCa::ExplicitNoCa;
        for n in names {
            params.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("dns name")),
            });
        }
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.cert_der.clone()], key)
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP version of the upstream leg.
    pub version: Version,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `:authority` (HTTP/2) or `Host` (HTTP/1.1).
    pub authority: String,
    /// Every header, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body as received.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Every header and value as one text, for searching.
    pub fn all_text(&self) -> String {
        self.headers
            .iter()
            .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v)))
            .collect()
    }
}

/// Which protocols a TLS upstream offers by ALPN.
#[derive(Debug, Clone, Copy)]
pub enum Alpn {
    /// HTTP/1.1 only.
    H1,
    /// HTTP/2 only.
    H2,
    /// Both, preferring HTTP/2.
    Both,
}

/// A running test upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// How many connections it accepted.
    pub accepted: Arc<AtomicUsize>,
}

impl Upstream {
    /// A copy of the requests received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.requests.lock().expect("lock").clear();
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The test upstream's response body.
pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body sent as separate frames, one per chunk (HTTP/1.1: chunked).
pub struct Chunks(pub std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Every byte of `body` (what came before an error, if one cut it).
pub async fn whole_body<B: hyper::body::Body>(body: B) -> Bytes {
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// `/discard...` counts the body without keeping it; `/chunked...` sends
/// its answer in 7-byte frames with no length; the rest see [`respond_full`].
async fn respond(
    requests: Arc<Mutex<Vec<Recorded>>>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/discard") {
        let mut body = req.into_body();
        let mut total = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, |d| d.len());
        }
        return Ok(Response::new(
            Full::new(Bytes::from(total.to_string())).boxed(),
        ));
    }
    let res = respond_full(requests, req).await?;
    if path.starts_with("/chunked") {
        let (parts, body) = res.into_parts();
        let bytes = whole_body(body).await;
        let chunks = bytes.chunks(7).map(Bytes::copy_from_slice).collect();
        return Ok(Response::from_parts(parts, Chunks(chunks).boxed()));
    }
    Ok(res.map(|b| b.boxed()))
}

async fn respond_full(
    requests: Arc<Mutex<Vec<Recorded>>>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let websocket = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let on_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get("host")
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    let rec = Recorded {
        version: req.version(),
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authority,
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: Vec::new(),
    };
    let slow = rec.path.starts_with("/slow");
    let reflected: serde_json::Map<String, serde_json::Value> = rec
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let version = format!("{:?}", rec.version);
    let echo_body = rec.path.starts_with("/echo-body");
    requests.lock().expect("lock").push(rec);
    if let Some(on_upgrade) = on_upgrade {
        // Echo raw bytes after the upgrade: frames pass through untouched.
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(Full::new(Bytes::new()))
            .expect("response"));
    }
    let received = whole_body(req.into_body()).await;
    if let Some(last) = requests.lock().expect("lock").last_mut() {
        last.body = received.to_vec();
    }
    if let Some(echo) = reflected_header(&requests, "/reflect-header") {
        // Reflects the Authorization header in a response header.
        return Ok(Response::builder()
            .header("x-echo", echo)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"reflected\n")))
            .expect("response"));
    }
    if requests
        .lock()
        .expect("lock")
        .last()
        .is_some_and(|r| r.path.starts_with("/gzip"))
    {
        // Claims gzip whatever the request asked for.
        return Ok(Response::builder()
            .header("content-encoding", "gzip")
            .body(Full::new(Bytes::from_static(b"\x1f\x8b not really gzip")))
            .expect("response"));
    }
    if echo_body {
        return Ok(Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Full::new(received))
            .expect("response"));
    }
    if slow {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let body = serde_json::json!({"version": version, "headers": reflected}).to_string();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}

/// A TLS acceptor for `names` (a leaf from `ca`) offering `alpn`: what
/// every TLS server of the tests (upstreams, scripts, client servers) uses.
pub fn tls_acceptor(ca: &TestCa, names: &[&str], alpn: Alpn) -> tokio_rustls::TlsAcceptor {
    let (chain, key) = ca.leaf(names);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = match alpn {
        Alpn::H1 => vec![b"http/1.1".to_vec()],
        Alpn::H2 => vec![b"h2".to_vec()],
        Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Listens on 127.0.0.1:0 and calls `on_accept` for every connection (in
/// the accept loop, so its synchronous part runs in order), running the
/// future it returns on a task of its own. Returns the address.
pub async fn listen<F, Fut>(on_accept: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    listen_at(LOOPBACK, on_accept).await
}

/// 127.0.0.1, where every test server listens unless told otherwise.
pub const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// As [`listen`], on `ip` (a port the kernel picks).
pub async fn listen_at<F, Fut>(ip: IpAddr, on_accept: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(on_accept(tcp));
        }
    });
    addr
}

/// Serves `handler`, on `ip`, on every connection `acceptor` completes a TLS
/// handshake on: HTTP/2 when ALPN chose it, else HTTP/1.1 (upgrades
/// allowed). Returns the address, and the count of TCP connections
/// accepted.
pub async fn serve_tls<H, Fut, B>(
    ip: IpAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    handler: H,
) -> (SocketAddr, Arc<AtomicUsize>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let addr = listen_at(ip, move |tcp| {
        count.fetch_add(1, Ordering::SeqCst);
        let acceptor = acceptor.clone();
        let svc = service_fn(handler.clone());
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            if h2 {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .with_upgrades()
                    .await;
            }
        }
    })
    .await;
    (addr, accepted)
}

/// A recording TLS upstream for `names` with the given ALPN.
pub async fn tls_upstream(ca: &TestCa, names: &[&str], alpn: Alpn) -> Upstream {
    tls_upstream_at(LOOPBACK, ca, names, alpn).await
}

/// As [`tls_upstream`], on `ip`.
pub async fn tls_upstream_at(ip: IpAddr, ca: &TestCa, names: &[&str], alpn: Alpn) -> Upstream {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    let acceptor = tls_acceptor(ca, names, alpn);
    let (addr, accepted) = serve_tls(ip, acceptor, move |req| respond(recorded.clone(), req)).await;
    Upstream {
        addr,
        requests,
        accepted,
    }
}

/// A recording plain-HTTP/1.1 upstream.
pub async fn plain_upstream() -> Upstream {
    plain_upstream_at(LOOPBACK).await
}

/// As [`plain_upstream`], on `ip`.
pub async fn plain_upstream_at(ip: IpAddr) -> Upstream {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    let (addr, accepted) = serve_plain(ip, move |req| respond(recorded.clone(), req)).await;
    Upstream {
        addr,
        requests,
        accepted,
    }
}

/// Serves `handler` over plain HTTP/1.1 on `ip`. Returns the address, and
/// the count of TCP connections accepted.
pub async fn serve_plain<H, Fut>(ip: IpAddr, handler: H) -> (SocketAddr, Arc<AtomicUsize>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<TestBody>, Infallible>> + Send + 'static,
{
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let addr = listen_at(ip, move |tcp| {
        count.fetch_add(1, Ordering::SeqCst);
        let svc = service_fn(handler.clone());
        async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        }
    })
    .await;
    (addr, accepted)
}

/// The Authorization header of the last request, if its path starts with `path`.
fn reflected_header(requests: &Arc<Mutex<Vec<Recorded>>>, path: &str) -> Option<String> {
    let all = requests.lock().expect("lock");
    let last = all.last()?;
    if last.path.starts_with(path) {
        Some(last.header("authorization").unwrap_or_default())
    } else {
        None
    }
}
