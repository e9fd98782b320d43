//! Sending a prepared request upstream and relaying the answer.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::body::{BodyError, ProxyBody};
use super::headers::strip_hop_by_hop;
use super::respond::Refusal;
use super::upstream::find_connect_error;
use super::Proxy;

/// Longest wait for an upstream's response headers. Generous: a
/// non-streaming model API call sends its headers only when the whole
/// answer is ready, which can take minutes.
pub const RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends `req` (whose URI names the checked destination) and returns the
/// upstream's response with hop-by-hop headers removed, or keyhole's own
/// response for a failure.
pub async fn send(proxy: &Proxy, req: Request<ProxyBody>) -> Response<ProxyBody> {
    let host = req.uri().host().unwrap_or_default().to_owned();
    let limit = proxy.limits.response_header_timeout;
    match tokio::time::timeout(limit, proxy.client.request(req)).await {
        Err(_) => Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            "http_response_timeout",
            format!(
                "{host} sent no response headers within {}s; raise --response-header-timeout if it is slow on purpose",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
        Ok(Err(e)) => match find_connect_error(&e) {
            Some(c) => c.refusal().into_response(),
            None => Refusal::new(
                StatusCode::BAD_GATEWAY,
                "http_protocol_error",
                format!("the exchange with {host} failed: {}", error_chain(&e)),
            )
            .into_response(),
        },
        Ok(Ok(res)) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.map_err(|e| Box::new(e) as BodyError).boxed())
        }
    }
}

/// An error and its sources, joined, for messages. Errors of hyper and
/// rustls name kinds and hosts, never header values.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
