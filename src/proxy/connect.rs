//! `CONNECT`: the policy decides before the client gets an answer.
//!
//! - egress denies the host: `403`, nothing dialled;
//! - no credential could ever apply there: dial, answer `200`, relay bytes
//!   untouched (pinned-certificate clients keep working);
//! - otherwise: answer `200` and intercept.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::idle::Idle;
use super::respond::Refusal;
use super::{intercept, upstream, Counters, Proxy, Slot};
use crate::host::Authority;
use crate::policy::Action;

/// Handles one CONNECT request.
pub async fn handle(
    proxy: Arc<Proxy>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    slot: Slot,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
        return bad_request("CONNECT needs a host:port target");
    };
    let target = match Authority::parse(&authority) {
        Ok(t) => t,
        Err(e) => return bad_request(&format!("the CONNECT target is refused: {e}")),
    };
    let Some(port) = target.port else {
        return bad_request("the CONNECT target has no port; write host:port");
    };
    let snapshot = proxy.snapshot();
    let action = snapshot.policy.decide(&target.host);
    match action {
        Action::Deny => {
            Counters::add(&proxy.counters.denied, 1);
            tracing::info!(%peer, host = %target.host, port, action = "deny", "CONNECT");
            Refusal::new(
                StatusCode::FORBIDDEN,
                "http_request_denied",
                format!(
                    "egress does not allow {}; add it to egress.allowed_hosts in the config if the sandbox should reach it (keyhole explain shows why)",
                    target.host
                ),
            )
            .details(format!("egress denies {}", target.host))
            .into_response()
        }
        Action::Tunnel => {
            let upstream = match upstream::dial(&proxy.resolver, &target, port).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::info!(%peer, host = %target.host, port, action = "tunnel", error = %e, "CONNECT failed");
                    return e.refusal().into_response();
                }
            };
            Counters::add(&proxy.counters.tunnels, 1);
            tracing::info!(%peer, host = %target.host, port, action = "tunnel", "CONNECT");
            let on_upgrade = hyper::upgrade::on(&mut req);
            let host = target.host.clone();
            let idle = proxy.limits.idle_timeout;
            let tunnel_slot = slot.clone();
            proxy.tasks.spawn(async move {
                let _slot = tunnel_slot;
                // Both sides carry the idle timer: after one side's EOF,
                // copy_bidirectional polls only the other.
                let mut upstream = Idle::new(upstream, idle);
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let mut client = Idle::new(TokioIo::new(upgraded), idle);
                        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                            Ok((up, down)) => tracing::debug!(%host, up, down, "tunnel closed"),
                            Err(e) => {
                                tracing::debug!(%host, error = %e, "tunnel ended with an error")
                            }
                        }
                    }
                    Err(e) => tracing::debug!(%host, error = %e, "CONNECT upgrade failed"),
                }
            });
            ok()
        }
        Action::Intercept(_) => {
            Counters::add(&proxy.counters.intercepts, 1);
            tracing::info!(%peer, host = %target.host, port, action = "intercept", "CONNECT");
            let on_upgrade = hyper::upgrade::on(&mut req);
            let task_proxy = proxy.clone();
            proxy.tasks.spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        intercept::serve(task_proxy, TokioIo::new(upgraded), target).await
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            ok()
        }
    }
}

fn ok() -> Response<ProxyBody> {
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}

fn bad_request(message: &str) -> Response<ProxyBody> {
    Refusal::new(StatusCode::BAD_REQUEST, "http_request_error", message).into_response()
}
