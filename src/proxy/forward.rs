//! Absolute-form `http://` requests: forwarded, never substituted.
//!
//! Plaintext can be read and altered by anything on the path, so no secret
//! is ever put into it. A placeholder found in such a request passes on
//! unchanged and the event is logged.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{BodyError, ProxyBody};
use super::headers::{strip_hop_by_hop, strip_host};
use super::respond::Refusal;
use super::{relay, Counters, Proxy};
use crate::host::Authority;

/// Forwards one plaintext request.
pub async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = req.method().clone();
    let Some(target) = req
        .uri()
        .authority()
        .and_then(|a| Authority::parse(a.as_str()).ok())
    else {
        return Refusal::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "the request URL has no valid host",
        )
        .into_response();
    };
    let snapshot = proxy.snapshot();
    if !snapshot.policy.egress_allows(&target.host) {
        Counters::add(&proxy.counters.denied, 1);
        tracing::info!(%method, host = %target.host, status = 403u16, "http request denied by egress");
        return Refusal::new(
            StatusCode::FORBIDDEN,
            "http_request_denied",
            format!("egress does not allow {}; add it to egress.allowed_hosts in the config if the sandbox should reach it", target.host),
        )
        .into_response();
    }
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_host(&mut parts.headers);
    let report = match snapshot.substitutions.headers(&mut parts.headers, &[]) {
        Ok(r) => r,
        Err(e) => {
            return Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "proxy_internal_error",
                e.to_string(),
            )
            .into_response()
        }
    };
    Counters::add(&proxy.counters.requests, 1);
    Counters::add(&proxy.counters.passed, report.passed.len());
    let allowed_here = snapshot.policy.credentials_for(&target.host);
    for &i in &report.passed {
        let id = snapshot.policy.credential(i).map_or("?", |c| c.id.as_str());
        // Say "use https://" only where https:// would have substituted.
        let header_on = snapshot
            .policy
            .credential(i)
            .and_then(|c| c.environment_variable())
            .is_some_and(|a| a.injection_location.header);
        let reason = match (allowed_here.contains(&i), header_on) {
            (true, true) => "plaintext",
            (true, false) => "location_disabled",
            (false, _) => "host_not_allowed",
        };
        match reason {
            "plaintext" => {
                tracing::warn!(credential = id, host = %target.host, "placeholder passed unsubstituted: plain http:// never carries a secret; use https://")
            }
            "location_disabled" => {
                tracing::warn!(credential = id, host = %target.host, "placeholder passed unsubstituted: its credential does not allow header injection")
            }
            _ => {
                tracing::warn!(credential = id, host = %target.host, "placeholder passed unsubstituted: its credential does not allow this host")
            }
        }
        if let Some(log) = &proxy.audit {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            log.record(super::intercept::record(
                &snapshot.policy,
                i,
                &target.host,
                &method,
                &crate::audit::path_only(path),
                crate::audit::Location::Header,
                crate::audit::Event::Passed,
                reason,
            ));
        }
    }
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = match Uri::try_from(format!("http://{target}{pq}")) {
        Ok(u) => u,
        Err(_) => {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "the request URL is not valid",
            )
            .into_response()
        }
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let req = Request::from_parts(parts, body.map_err(|e| Box::new(e) as BodyError).boxed());
    let res = relay::send(&proxy, req).await;
    proxy.counters.outcome(&res);
    tracing::info!(
        %method,
        host = %target.host,
        status = res.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        scheme = "http",
        "request"
    );
    res
}
