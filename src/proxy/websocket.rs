//! WebSocket through an intercepted tunnel (HTTP/1.1 `Upgrade`).
//!
//! The upgrade request is checked and its headers substituted like any
//! request's; it goes to the CONNECT host on a connection of its own
//! (HTTP/1.1 by ALPN, never pooled, since it becomes a raw stream). After
//! `101 Switching Protocols` both sides are joined and frames pass
//! unchanged: keyhole does not look inside WebSocket frames.
//! Upgrades to anything but `websocket` (such as `h2c`) are refused.

use std::net::SocketAddr;

use http::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{BodyError, ProxyBody};
use super::limits::UPGRADE_RESPONSE_TIMEOUT;
use super::relay::error_chain;
use super::respond::ProxyError;
use super::Proxy;
use crate::host::Authority;

/// What a request asks for by `Upgrade`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeKind {
    /// No upgrade.
    None,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    WebSocket(HeaderValue),
    /// Any other upgrade (`h2c`, ...): refused.
    Other,
}

/// Classifies a request's upgrade.
pub fn upgrade_kind<B>(req: &Request<B>) -> UpgradeKind {
    let Some(upgrade) = req.headers().get(UPGRADE) else {
        return UpgradeKind::None;
    };
    let connection_upgrade = req.headers().get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let websocket = upgrade
        .to_str()
        .is_ok_and(|s| s.trim().eq_ignore_ascii_case("websocket"));
    match (connection_upgrade, websocket, req.version()) {
        (true, true, Version::HTTP_11) => UpgradeKind::WebSocket(upgrade.clone()),
        _ => UpgradeKind::Other,
    }
}

/// Relays an upgrade request whose headers are already substituted and
/// stripped of hop-by-hop headers to `target` (at `pinned`, when the client
/// chose the address); joins both sides after a `101`.
pub async fn relay(
    proxy: &Proxy,
    target: &Authority,
    pinned: Option<SocketAddr>,
    upgrade: HeaderValue,
    mut parts: Parts,
    body: Incoming,
    client: OnUpgrade,
) -> Result<Response<ProxyBody>, ProxyError> {
    let port = target.port.unwrap_or(443);
    let tls = match pinned {
        Some(addr) => {
            let tcp = proxy.dialer.dial_addr(target.to_string(), addr).await?;
            proxy.dialer.handshake(&proxy.ws_tls, target, tcp).await?
        }
        None => proxy.dialer.open_tls(&proxy.ws_tls, target, port).await?,
    };
    let failed = |e: hyper::Error| ProxyError::UpgradeFailed {
        host: target.host.clone(),
        chain: error_chain(&e),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(failed)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let host = if port == 443 {
        target.host.to_string()
    } else {
        format!("{}:{port}", target.host)
    };
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(pq).map_err(|_| ProxyError::InvalidTarget)?;
    parts.version = Version::HTTP_11;
    if let Ok(h) = HeaderValue::from_str(&host) {
        parts.headers.insert(HOST, h);
    }
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(UPGRADE, upgrade);
    let req = Request::from_parts(parts, body);
    let mut res = tokio::time::timeout(UPGRADE_RESPONSE_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| ProxyError::UpgradeTimeout {
            host: target.host.clone(),
            after: UPGRADE_RESPONSE_TIMEOUT,
        })?
        .map_err(failed)?;
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut res);
        let host = target.host.clone();
        proxy.tasks.spawn(async move {
            match tokio::try_join!(client, upstream) {
                Ok((client, upstream)) => {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                        Ok((up, down)) => tracing::debug!(%host, up, down, "websocket closed"),
                        Err(e) => {
                            tracing::debug!(%host, error = %e, "websocket ended with an error")
                        }
                    }
                }
                Err(e) => tracing::debug!(%host, error = %e, "websocket upgrade failed"),
            }
        });
    }
    Ok(res.map(|b| b.map_err(|e| Box::new(e) as BodyError).boxed()))
}
