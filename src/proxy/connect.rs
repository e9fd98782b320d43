//! `CONNECT`: the policy decides before the client gets an answer.
//!
//! Everything that can be decided from the CONNECT request alone is its
//! answer, before any `200`:
//! - a target that is not `host:port`: `400`;
//! - egress denies the host: `403`, nothing dialled;
//! - a literal address the destination guard refuses (metadata, keyhole's
//!   own listeners, private ranges under `--deny-private`): `403`/`508`.
//!
//! Then:
//! - no credential could ever apply there: dial (names resolve here, once,
//!   and the resolved addresses are checked by the guard), answer `200`,
//!   relay bytes untouched (pinned-certificate clients keep working);
//! - otherwise: answer `200` and intercept; each request dials when sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::exchange::{Destination, Scheme};
use super::respond::ProxyError;
use super::{intercept, tunnel, Counters, Proxy, Slot};
use crate::host::{Authority, HostKind};
use crate::policy::{Action, Policy};

/// Handles one CONNECT request.
pub async fn handle(
    proxy: Arc<Proxy>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    slot: Slot,
) -> Response<ProxyBody> {
    let snapshot = proxy.snapshot();
    let (target, port, action) = match at_the_door(&proxy, &req, &snapshot.policy) {
        Ok(decided) => decided,
        Err(e) => {
            tracing::info!(%peer, status = e.status().as_u16(), "CONNECT refused: {}", e.message());
            return e.into_response();
        }
    };
    let host = target.host.clone();
    match action {
        Verdict::Tunnel => {
            let upstream = match proxy.dialer.dial(&target, port).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::info!(%peer, %host, port, action = "tunnel", error = %e, "CONNECT failed");
                    return ProxyError::Dial(e).into_response();
                }
            };
            Counters::add(&proxy.counters.tunnels, 1);
            tracing::info!(%peer, %host, port, action = "tunnel", "CONNECT");
            let on_upgrade = hyper::upgrade::on(&mut req);
            let idle = proxy.limits.idle_timeout;
            proxy.tasks.spawn(async move {
                // The slot is held by the tunnel too, until it ends.
                let _slot = slot;
                match on_upgrade.await {
                    Ok(upgraded) => {
                        tunnel::splice(TokioIo::new(upgraded), upstream, idle, &host).await
                    }
                    Err(e) => tracing::debug!(%host, error = %e, "CONNECT upgrade failed"),
                }
            });
            ok()
        }
        Verdict::Intercept => {
            Counters::add(&proxy.counters.intercepts, 1);
            tracing::info!(%peer, %host, port, action = "intercept", "CONNECT");
            let on_upgrade = hyper::upgrade::on(&mut req);
            let task_proxy = proxy.clone();
            let dest = Destination::new(host, port, Scheme::Https, None);
            proxy.tasks.spawn(async move {
                let _slot = slot;
                match on_upgrade.await {
                    Ok(upgraded) => {
                        intercept::serve(task_proxy, TokioIo::new(upgraded), dest).await
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            ok()
        }
    }
}

/// What a CONNECT that passed the door becomes.
enum Verdict {
    /// Relayed byte for byte.
    Tunnel,
    /// Terminated and inspected.
    Intercept,
}

/// Every decision the CONNECT request alone allows: the target, its port
/// and what to do.
fn at_the_door(
    proxy: &Proxy,
    req: &Request<Incoming>,
    policy: &Policy,
) -> Result<(Authority, u16, Verdict), ProxyError> {
    let authority = req
        .uri()
        .authority()
        .ok_or(ProxyError::ConnectWithoutTarget)?;
    let target = Authority::parse(authority.as_str()).map_err(ProxyError::ConnectTarget)?;
    let port = target.port.ok_or(ProxyError::ConnectWithoutPort)?;
    let verdict = match policy.decide(&target.host) {
        Action::Deny => {
            Counters::add(&proxy.counters.denied, 1);
            return Err(ProxyError::EgressDenied { host: target.host });
        }
        Action::Tunnel => Verdict::Tunnel,
        Action::Intercept(_) => Verdict::Intercept,
    };
    let literal = match target.host.kind() {
        HostKind::Ipv4(ip) => Some(IpAddr::V4(ip)),
        HostKind::Ipv6(ip) => Some(IpAddr::V6(ip)),
        HostKind::Name => None,
    };
    if let Some(ip) = literal {
        if let Err(why) = proxy.dialer.guard.check(SocketAddr::new(ip, port)) {
            return Err(ProxyError::Prohibited {
                authority: target.to_string(),
                why,
            });
        }
    }
    Ok((target, port, verdict))
}

fn ok() -> Response<ProxyBody> {
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}
