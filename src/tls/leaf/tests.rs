//! Compiled only under #[cfg(test)], from the parent module.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    ca: Arc<CertificateAuthority>,
    cache: Arc<LeafCache>,
}

fn fixture(capacity: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create(dir.path()).unwrap());
    let cache = Arc::new(LeafCache::new(ca.clone(), capacity).unwrap());
    Fixture { dir, ca, cache }
}

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

fn roots(ca: &CertificateAuthority) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    Arc::new(roots)
}

fn verify(
    ca: &CertificateAuthority,
    chain: &[CertificateDer<'static>],
    name: &str,
) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_name_leaf_verifies_for_that_name_only() {
    let f = fixture(8);
    let leaf = f.cache.certify(&host("API.Example.com")).unwrap();
    assert_eq!(leaf.cert.len(), 2, "leaf then CA");
    assert_eq!(&leaf.cert[1], f.ca.cert_der());
    verify(&f.ca, &leaf.cert, "api.example.com").unwrap();
    assert!(verify(&f.ca, &leaf.cert, "other.example.com").is_err());
    assert!(verify(&f.ca, &leaf.cert, "example.com").is_err());
    assert!(verify(&f.ca, &leaf.cert, "x.api.example.com").is_err());
}

#[test]
fn an_ip_leaf_has_an_ip_san_and_no_dns_san() {
    let f = fixture(8);
    let leaf = f.cache.certify(&host("127.0.0.1")).unwrap();
    let der = leaf.cert[0].as_ref();
    assert!(contains(der, &[0x87, 4, 127, 0, 0, 1]), "iPAddress SAN");
    assert!(
        !contains(der, b"\x82\x09127.0.0.1"),
        "no dNSName SAN for an IP"
    );
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(&f.ca), provider())
        .build()
        .unwrap();
    let ip = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    verifier
        .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &ip, &[], UnixTime::now())
        .unwrap();
    assert!(verify(&f.ca, &leaf.cert, "127.0.0.2").is_err());
    assert!(verify(&f.ca, &leaf.cert, "localhost").is_err());

    let leaf = f.cache.certify(&host("[::1]")).unwrap();
    let ip = ServerName::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST).into());
    verifier
        .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &ip, &[], UnixTime::now())
        .unwrap();
}

#[test]
fn the_leaf_key_is_not_the_ca_key() {
    let f = fixture(8);
    let leaf = f.cache.certify(&host("example.com")).unwrap();
    leaf.keys_match().unwrap();
    let spki = leaf.key.public_key().unwrap();
    assert!(contains(leaf.cert[0].as_ref(), spki.as_ref()));
    assert!(!contains(f.ca.cert_der().as_ref(), spki.as_ref()));
    // One leaf key for every host, and fresh serials.
    let other = f.cache.certify(&host("example.org")).unwrap();
    assert_eq!(other.key.public_key().unwrap(), spki);
    let again = f.cache.certify(&host("example.com")).unwrap();
    assert_ne!(again.cert[0], leaf.cert[0]);
}

#[test]
fn a_long_name_is_certified_by_its_san_alone() {
    let f = fixture(8);
    let name = format!("{}.example.com", ["a".repeat(60), "b".repeat(60)].join("."));
    let leaf = f.cache.certify(&host(&name)).unwrap();
    verify(&f.ca, &leaf.cert, &name).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_issue_once() {
    let f = fixture(8);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = f.cache.clone();
            tokio::spawn(
                async move { cache.server_config(&host("api.example.com")).await.unwrap() },
            )
        })
        .collect();
    let mut configs = Vec::new();
    for task in tasks {
        configs.push(task.await.unwrap());
    }
    assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
    assert_eq!(f.cache.misses(), 1);
    assert_eq!(f.cache.hits(), 49);
    assert_eq!(f.cache.len(), 1);
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicts_the_oldest() {
    let f = fixture(3);
    for name in ["a.test", "b.test", "c.test", "d.test", "e.test"] {
        f.cache.server_config(&host(name)).await.unwrap();
    }
    assert_eq!(f.cache.len(), 3);
    assert_eq!(f.cache.misses(), 5);
    f.cache.server_config(&host("e.test")).await.unwrap();
    assert_eq!((f.cache.hits(), f.cache.misses()), (1, 5));
    f.cache.server_config(&host("a.test")).await.unwrap();
    assert_eq!(f.cache.misses(), 6, "a.test was evicted first");
    assert_eq!(f.cache.len(), 3);
    assert_eq!(LeafCache::new(f.ca.clone(), 0).unwrap().capacity, 1);
}

#[tokio::test]
async fn a_week_old_leaf_is_reissued() {
    let f = fixture(8);
    let h = host("old.test");
    let first = f.cache.server_config(&h).await.unwrap();
    let old = Leaf {
        config: first.clone(),
        issued: SystemTime::now() - REISSUE_AFTER - Duration::from_secs(1),
    };
    f.cache
        .lock()
        .slots
        .insert(h.clone(), Arc::new(OnceCell::new_with(Some(old))));
    let second = f.cache.server_config(&h).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(f.cache.misses(), 2);
    let third = f.cache.server_config(&h).await.unwrap();
    assert!(Arc::ptr_eq(&second, &third));
    assert_eq!(f.cache.len(), 1);
}

/// Serves one TLS connection with the cache's config for `name`; echoes.
async fn serve(cache: Arc<LeafCache>, name: &str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = cache.server_config(&host(name)).await.unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
            return;
        };
        let mut buf = [0u8; 5];
        if tls.read_exact(&mut buf).await.is_ok() {
            let _ = tls.write_all(&buf).await;
            let _ = tls.shutdown().await;
        }
    });
    addr
}

async fn connect(
    config: Arc<ClientConfig>,
    addr: std::net::SocketAddr,
    name: ServerName<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

fn client(ca: &CertificateAuthority, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[tokio::test]
async fn real_handshake_negotiates_h2() {
    let f = fixture(8);
    let addr = serve(f.cache.clone(), "api.example.com").await;
    let name = ServerName::try_from("api.example.com").unwrap();
    let mut tls = connect(client(&f.ca, &[b"h2", b"http/1.1"]), addr, name)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");

    let addr = serve(f.cache.clone(), "api.example.com").await;
    let name = ServerName::try_from("api.example.com").unwrap();
    let tls = connect(client(&f.ca, &[b"http/1.1"]), addr, name)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn real_handshake_for_an_ip_and_through_upstream_ca() {
    let f = fixture(8);
    let addr = serve(f.cache.clone(), "127.0.0.1").await;
    let ip = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    connect(client(&f.ca, &[]), addr, ip).await.unwrap();

    // keyhole's own upstream config, given the CA through --upstream-ca.
    let pem = CertificateAuthority::cert_path(f.dir.path());
    let upstream = crate::tls::roots::client_config(&[pem]).unwrap();
    let addr = serve(f.cache.clone(), "api.example.com").await;
    let name = ServerName::try_from("api.example.com").unwrap();
    let tls = connect(upstream, addr, name).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn real_handshake_fails_for_another_name() {
    let f = fixture(8);
    let addr = serve(f.cache.clone(), "api.example.com").await;
    let name = ServerName::try_from("evil.example.com").unwrap();
    let err = connect(client(&f.ca, &[b"h2"]), addr, name)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}
