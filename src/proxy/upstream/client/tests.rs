//! The pool against real upstreams on loopback: hyper servers that count
//! the connections they accept and see closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::proxy::body::ProxyBody;
use crate::proxy::destination::Guard;
use crate::proxy::resolve::Pins;
use crate::proxy::upstream::Dialer;
use crate::tls::provider;

/// Connections an upstream accepted and saw end.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

/// A listener on loopback whose every connection is served by `serve`,
/// counted when accepted and when `serve` ends.
async fn listen<F, Fut>(serve: F) -> (SocketAddr, Arc<Seen>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            let (counts, served) = (counts.clone(), serve(tcp));
            tokio::spawn(async move {
                served.await;
                counts.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// A plain HTTP/1.1 upstream answering `GET /big` with 4 MiB and any other
/// path with `tag` and its `Host` header (`/close` then closes).
async fn upstream(tag: &'static str) -> (SocketAddr, Arc<Seen>) {
    listen(move |tcp| async move {
        let service = service_fn(move |req: Request<Incoming>| async move {
            let host = req.headers().get("host").map(|v| v.as_bytes().to_vec());
            let body = match req.uri().path() {
                "/big" => vec![b'x'; 4 << 20],
                _ => [tag.as_bytes(), b" ", &host.unwrap_or_default()].concat(),
            };
            let mut res = Response::new(Full::new(Bytes::from(body)));
            if req.uri().path() == "/close" {
                res.headers_mut()
                    .insert("connection", http::HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(res)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    })
    .await
}

/// A TLS upstream for `h2.test` that speaks only HTTP/2, and a connector
/// that trusts it.
async fn h2_upstream() -> (SocketAddr, Arc<Seen>, TlsConnector) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["h2.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key_der)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (addr, seen) = listen(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(|req: Request<Incoming>| async move {
                let authority = req.uri().authority().map(|a| a.to_string());
                let body = Bytes::from(authority.unwrap_or_default());
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
    })
    .await;
    (addr, seen, TlsConnector::from(Arc::new(client)))
}

fn plain_connector(pins: &[String]) -> Connector {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    connector(TlsConnector::from(Arc::new(tls)), pins)
}

fn connector(tls: TlsConnector, pins: &[String]) -> Connector {
    let dialer = Dialer::new(Pins::from_args(pins).unwrap(), Guard::default());
    Connector {
        tls,
        dialer: Arc::new(dialer),
    }
}

fn get(path: &str) -> Request<ProxyBody> {
    let body = Empty::new().map_err(|never| match never {}).boxed();
    Request::get(path).body(body).unwrap()
}

fn local(port: u16, addr: Option<SocketAddr>) -> Origin {
    Origin::new(false, Host::parse("127.0.0.1").unwrap(), port, addr)
}

/// A plain upstream tagged `tag`, a client with an empty pool, and the
/// upstream's origin.
async fn world(tag: &'static str) -> (Arc<Seen>, Client, Origin) {
    let (addr, seen) = upstream(tag).await;
    (
        seen,
        Client::new(plain_connector(&[])),
        local(addr.port(), None),
    )
}

async fn text(res: Response<UpstreamBody>) -> String {
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Waits (at most 5 s) for `seen.closed` to reach `n`.
async fn closed(seen: &Seen, n: usize) -> usize {
    for _ in 0..500 {
        if seen.closed.load(Ordering::SeqCst) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.closed.load(Ordering::SeqCst)
}

/// The pool's one connection is closed, and the next request is answered
/// on a second.
async fn answered_on_a_second_connection(seen: &Seen, client: &Client, origin: &Origin, tag: &str) {
    assert_eq!(closed(seen, 1).await, 1, "the connection was closed");
    let res = client.request(origin, get("/")).await.unwrap();
    assert!(text(res).await.starts_with(tag));
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn answers_read_to_their_end_reuse_one_connection() {
    let (seen, client, origin) = world("one").await;
    for _ in 0..5 {
        let res = client.request(&origin, get("/")).await.unwrap();
        let port = origin.key().port;
        assert_eq!(text(res).await, format!("one 127.0.0.1:{port}"));
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.idle(), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (seen, client, origin) = world("big").await;
    let mut body = client
        .request(&origin, get("/big"))
        .await
        .unwrap()
        .into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(client.idle(), 0);
    answered_on_a_second_connection(&seen, &client, &origin, "big ").await;
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced() {
    let (seen, client, origin) = world("again").await;
    for _ in 0..3 {
        let res = client.request(&origin, get("/close")).await.unwrap();
        assert!(text(res).await.starts_with("again "));
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(closed(&seen, 3).await, 3);
    assert_eq!(client.idle(), 0);
}

#[tokio::test]
async fn idle_connections_are_closed_after_two_sweeps() {
    let (seen, client, origin) = world("again").await;
    let res = client.request(&origin, get("/")).await.unwrap();
    text(res).await;
    assert_eq!(client.idle(), 1);
    client.pool.sweep();
    client.pool.sweep();
    assert_eq!(client.idle(), 0, "two sweeps drop an idle connection");
    answered_on_a_second_connection(&seen, &client, &origin, "again ").await;
}

#[tokio::test]
async fn one_sweep_keeps_an_idle_connection_and_use_renews_it() {
    let (seen, client, origin) = world("kept").await;
    for _ in 0..3 {
        let res = client.request(&origin, get("/")).await.unwrap();
        text(res).await;
        client.pool.sweep();
    }
    assert_eq!(client.idle(), 1);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pinned_origins_dial_their_own_address_and_pool_apart() {
    let (pinned_addr, pinned_seen) = upstream("pinned").await;
    let (resolved_addr, resolved_seen) = upstream("resolved").await;
    let port = resolved_addr.port();
    // The name resolves (by a pin) to one upstream; the pinned origin, to
    // the other, with the same host and port.
    let client = Client::new(plain_connector(&[format!("pinned.test:{port}:127.0.0.1")]));
    let host = Host::parse("pinned.test").unwrap();
    let pinned_at = SocketAddr::new(pinned_addr.ip(), pinned_addr.port());
    let pinned = Origin::new(false, host.clone(), port, Some(pinned_at));
    let resolved = Origin::new(false, host, port, None);
    for _ in 0..2 {
        let res = client.request(&pinned, get("/")).await.unwrap();
        assert_eq!(text(res).await, format!("pinned pinned.test:{port}"));
        let res = client.request(&resolved, get("/")).await.unwrap();
        assert_eq!(text(res).await, format!("resolved pinned.test:{port}"));
    }
    assert_eq!(pinned_seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(resolved_seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.idle(), 2);
}

#[tokio::test]
async fn a_default_port_is_left_out_of_the_host_header() {
    let origin = Origin::new(false, Host::parse("a.test").unwrap(), 80, None);
    assert_eq!(origin.host_header, "a.test");
    let origin = Origin::new(true, Host::parse("a.test").unwrap(), 80, None);
    assert_eq!(origin.host_header, "a.test:80");
    assert_eq!(origin.authority, "a.test:80");
    let origin = Origin::from_uri(&"https://B.test/token".parse().unwrap()).unwrap();
    assert_eq!((origin.key().https, origin.key().port), (true, 443));
    assert_eq!(origin.key().host.as_str(), "b.test");
    assert!(Origin::from_uri(&"ftp://b.test/".parse().unwrap()).is_err());
}

#[tokio::test]
async fn concurrent_requests_share_one_http2_connection() {
    let (addr, seen, tls) = h2_upstream().await;
    let client = Client::new(connector(
        tls,
        &[format!("h2.test:{}:127.0.0.1", addr.port())],
    ));
    let origin = Origin::new(true, Host::parse("h2.test").unwrap(), addr.port(), None);
    // The first request opens the connection; the next ten share it.
    let res = client.request(&origin, get("/")).await.unwrap();
    assert_eq!(text(res).await, format!("h2.test:{}", addr.port()));
    let mut all = Vec::new();
    for _ in 0..10 {
        let (client, origin) = (client.clone(), origin.clone());
        all.push(tokio::spawn(async move {
            text(client.request(&origin, get("/x")).await.unwrap()).await
        }));
    }
    for one in all {
        assert_eq!(one.await.unwrap(), format!("h2.test:{}", addr.port()));
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.idle(), 1);
}

#[tokio::test]
async fn an_unreachable_origin_is_a_dial_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::new(plain_connector(&[]));
    let err = client
        .request(&local(port, None), get("/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::Dial(DialError::Refused { .. })),
        "{err:?}"
    );
    assert_eq!(client.idle(), 0);
}

#[tokio::test]
async fn a_stamp_newer_than_the_generation_read_is_fresh() {
    let (seen, client, origin) = world("newer").await;
    client.pool.generation.store(5, Ordering::Relaxed);
    text(client.request(&origin, get("/")).await.unwrap()).await;
    // A reader whose generation is one behind the connection's stamp (the
    // sweeper advanced it on another thread between the two).
    client.pool.generation.store(4, Ordering::Relaxed);
    text(client.request(&origin, get("/")).await.unwrap()).await;
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn past_the_origin_bound_connections_are_used_once() {
    let (a, seen_a) = upstream("a").await;
    let (b, seen_b) = upstream("b").await;
    let mut client = Client::new(plain_connector(&[]));
    Arc::get_mut(&mut client.pool).unwrap().max_origins = 1;
    for _ in 0..3 {
        text(
            client
                .request(&local(a.port(), None), get("/"))
                .await
                .unwrap(),
        )
        .await;
        text(
            client
                .request(&local(b.port(), None), get("/"))
                .await
                .unwrap(),
        )
        .await;
    }
    // The first origin keeps its connection; the second, past the bound,
    // gets a new one per request, each closed after its answer.
    assert_eq!(seen_a.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(seen_b.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(closed(&seen_b, 3).await, 3);
    assert_eq!(client.idle(), 1);
}

#[test]
fn a_bad_token_endpoint_url_is_named_by_its_authority_only() {
    let err = Origin::from_uri(&"ftp://b.test/path?code=hidden".parse().unwrap()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("b.test") && !text.contains("hidden"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_closes_an_idle_connection_within_the_idle_timeout() {
    let (seen, client, origin) = world("timer").await;
    text(client.request(&origin, get("/")).await.unwrap()).await;
    assert_eq!(client.idle(), 1);
    // Half the timeout: one sweep, the connection stays.
    tokio::time::sleep(POOL_IDLE_TIMEOUT / 2 + Duration::from_secs(1)).await;
    assert_eq!(client.idle(), 1);
    // The whole timeout: the second sweep closes it.
    tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
    assert_eq!(client.idle(), 0);
    assert_eq!(closed(&seen, 1).await, 1);
}
