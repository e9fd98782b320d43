//! A Rust client that speaks to keyhole exactly as a careful (or hostile)
//! client would: CONNECT by hand, TLS with a chosen SNI, then HTTP/1.1 or
//! HTTP/2 with chosen headers.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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

/// TLS over `tcp` with `sni` (None sends no SNI), trusting `roots`, offering `alpn`.
pub async fn tls(
    tcp: TcpStream,
    sni: Option<&str>,
    ip: Option<&str>,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
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
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name: ServerName<'static> = match (sni, ip) {
        (Some(n), _) => ServerName::try_from(n.to_owned()).map_err(|e| e.to_string())?,
        (None, Some(ip)) => ServerName::IpAddress(
            ip.parse::<std::net::IpAddr>()
                .map_err(|e| e.to_string())?
                .into(),
        ),
        (None, None) => return Err("no name".into()),
    };
    if sni.is_none() {
        config.enable_sni = false;
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// One request over an established TLS stream, HTTP/2 when ALPN chose it.
pub async fn send(
    tls: TlsStream<TcpStream>,
    req: Request<Empty<Bytes>>,
) -> Result<(Response<()>, String), String> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let res = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// `CONNECT authority` through `proxy`, then TLS as [`tls`] does.
pub async fn open(
    proxy: SocketAddr,
    authority: &str,
    sni: Option<&str>,
    ip: Option<&str>,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = connect(proxy, authority).await?;
    tls(tcp, sni, ip, roots, alpn).await
}
