//! Absolute-form `http://` requests: forwarded, never substituted.
//!
//! Plaintext can be read and altered by anything on the path, so no secret
//! is ever put into it. The destination is the URL's host; the request is
//! an [`exchange`] with [`Scheme::Http`], in which every
//! placeholder passes unchanged and the event is logged and audited.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::exchange::{self, Destination, Scheme};
use super::respond::ProxyError;
use super::Proxy;
use crate::host::Authority;

/// Forwards one plaintext request.
pub async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(target) = req
        .uri()
        .authority()
        .and_then(|a| Authority::parse(a.as_str()).ok())
    else {
        return ProxyError::UrlWithoutHost.into_response();
    };
    let dest = Destination::new(target.host, target.port.unwrap_or(80), Scheme::Http, None);
    exchange::run(proxy, dest, req).await
}
