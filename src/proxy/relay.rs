//! Sending a prepared request upstream and taking its answer: the "send"
//! stage of an [`exchange`](super::exchange).

use http::{Request, Response};
use http_body_util::BodyExt;

use super::body::{BodyError, ProxyBody};
use super::headers::strip_hop_by_hop;
use super::respond::ProxyError;
use super::upstream::{find_dial_error, Client};
use super::Proxy;

/// Sends `req` (whose URI names the checked destination) through `client`
/// and returns the upstream's response with hop-by-hop headers removed, or
/// why there is none.
pub async fn send(
    proxy: &Proxy,
    client: &Client,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let host = req.uri().host().unwrap_or_default().to_owned();
    let limit = proxy.limits.response_header_timeout;
    match tokio::time::timeout(limit, client.request(req)).await {
        Err(_) => Err(ProxyError::ResponseTimeout { host, after: limit }),
        Ok(Err(e)) => Err(match find_dial_error(&e) {
            Some(d) => ProxyError::Dial(d.clone()),
            None => ProxyError::Exchange {
                host,
                chain: error_chain(&e),
            },
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
