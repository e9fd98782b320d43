//! Sending a prepared request upstream and taking its answer: the "send"
//! stage of an [`exchange`](super::exchange).

use http::{Request, Response};
use http_body_util::BodyExt;

use super::body::{BodyError, ProxyBody};
use super::headers::strip_hop_by_hop;
use super::respond::ProxyError;
use super::upstream::{Client, Origin, SendError};
use super::Proxy;

/// Sends `req` to `origin` through `client` and returns the upstream's
/// response with hop-by-hop headers removed, or why there is none.
pub async fn send(
    proxy: &Proxy,
    client: &Client,
    origin: &Origin,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let limit = proxy.limits.response_header_timeout;
    let host = || origin.key().host.as_str().to_owned();
    match tokio::time::timeout(limit, client.request(origin, req)).await {
        Err(_) => Err(ProxyError::ResponseTimeout {
            host: host(),
            after: limit,
        }),
        Ok(Err(SendError::Dial(d))) => Err(ProxyError::Dial(d)),
        Ok(Err(SendError::Http(e))) => Err(ProxyError::Exchange {
            host: host(),
            chain: error_chain(&e),
        }),
        Ok(Ok(res)) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(
                parts,
                body.map_err(|e| Box::new(e) as BodyError).boxed(),
            ))
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
