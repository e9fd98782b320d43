//! The floor: the least a proxy built on keyhole's stack (tokio, hyper 1,
//! rustls 0.23 with ring) can spend per request, for
//! `benches/profile/run.sh` to count beside keyhole.
//!
//! It does each profiled job with nothing of keyhole's: no policy, no
//! substitution, no scrubbing, no log line, no pool (one upstream
//! connection per client connection, opened on its first request), no
//! head guard, no timeouts. Whatever keyhole spends above it is keyhole's
//! own; what the floor itself spends is the stack's, and no change to
//! keyhole can take a request below it without leaving the stack.
//!
//! - an absolute-form `http://` request goes over HTTP/1.1 to the plain
//!   upstream;
//! - `CONNECT tunnel.test:…` is answered `200` and relayed byte for byte to
//!   the TLS upstream;
//! - any other `CONNECT` is answered `200` and intercepted: TLS accepted
//!   with the upstream's own leaf (HTTP/2 or HTTP/1.1 by ALPN), each
//!   request sent over HTTP/1.1 through TLS to the TLS upstream.
//!
//! Not a proxy anyone should run: it trusts every request. Usage:
//!
//! ```text
//! floor_proxy TLS_PORT PLAIN_PORT CA_PEM LEAF_PEM LEAF_KEY
//! ```
//! Prints `floor listening on ADDR`; the upstreams are on 127.0.0.1.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, hyper::Error>;

/// What every connection shares.
struct Floor {
    tls_upstream: SocketAddr,
    plain_upstream: SocketAddr,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

/// A client connection's one upstream connection, opened on first use.
type Upstream = Arc<Mutex<Option<SendRequest<Incoming>>>>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tls_port, plain_port, ca, leaf, key] = args.as_slice() else {
        return Err("usage: floor_proxy TLS_PORT PLAIN_PORT CA_PEM LEAF_PEM LEAF_KEY".into());
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(leaf)?.collect::<Result<Vec<_>, _>>()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::from_pem_file(key)?)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let floor = Arc::new(Floor {
        tls_upstream: SocketAddr::from(([127, 0, 0, 1], tls_port.parse()?)),
        plain_upstream: SocketAddr::from(([127, 0, 0, 1], plain_port.parse()?)),
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    });
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(floor))
}

async fn serve(floor: Arc<Floor>) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("floor listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let floor = floor.clone();
        tokio::spawn(async move {
            let upstream = Upstream::default();
            let service = service_fn(move |req| front(floor.clone(), upstream.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

/// A request on the proxy's own port: a CONNECT or an absolute-form URL.
async fn front(
    floor: Arc<Floor>,
    upstream: Upstream,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    if req.method() != Method::CONNECT {
        return forward(floor, upstream, false, req).await;
    }
    let tunnel = req.uri().host() == Some("tunnel.test");
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut client = TokioIo::new(upgraded);
        if tunnel {
            if let Ok(mut server) = TcpStream::connect(floor.tls_upstream).await {
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
            return;
        }
        let Ok(tls) = floor.acceptor.accept(client).await else {
            return;
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let upstream = Upstream::default();
        let service = service_fn(move |req| forward(floor.clone(), upstream.clone(), true, req));
        let _ = if h2 {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await
        } else {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
        };
    });
    Ok(Response::new(empty()))
}

/// Sends `req` on the connection's upstream connection, opened (to the
/// TLS upstream, as prof.test, or to the plain one) on first use, and
/// answers with the upstream's answer.
async fn forward(
    floor: Arc<Floor>,
    upstream: Upstream,
    tls: bool,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let origin_form = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = Uri::try_from(origin_form)?;
    *req.version_mut() = http::Version::HTTP_11;
    let mut slot = upstream.lock().await;
    let sender = match slot.as_mut() {
        Some(sender) if !sender.is_closed() => sender,
        _ => slot.insert(dial(&floor, tls).await?),
    };
    sender.ready().await?;
    let res = sender.send_request(req).await?;
    drop(slot);
    Ok(res.map(|b| b.boxed()))
}

async fn dial(floor: &Floor, tls: bool) -> Result<SendRequest<Incoming>, Error> {
    let to = match tls {
        true => floor.tls_upstream,
        false => floor.plain_upstream,
    };
    let tcp = TcpStream::connect(to).await?;
    tcp.set_nodelay(true)?;
    let sender = match tls {
        true => {
            let name = ServerName::try_from("prof.test")?;
            let tls = floor.connector.connect(name, tcp).await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            sender
        }
        false => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    Ok(sender)
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}
