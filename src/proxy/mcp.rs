//! MCP servers on the wire: the token endpoint keyhole's refreshes go to,
//! and the pieces of an exchange that only MCP requests need (the body kept
//! for the one retry after a `401`).
//!
//! Which credential applies and which token is in force is decided by the
//! pure [`crate::mcp`] module; this one only moves bytes.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::Request;
use http_body_util::{BodyExt, Full};

use super::body::{BodyError, ProxyBody};
use super::limits::{
    MAX_REPLAY_BODY, MAX_TOKEN_RESPONSE_BYTES, REPLAY_BODY_TIMEOUT, TOKEN_ENDPOINT_TIMEOUT,
};
use super::relay::error_chain;
use super::respond::ProxyError;
use super::upstream::{self, Origin, SendError};
use crate::mcp::{BoxFuture, EndpointResponse, RefreshError, RefreshRequest, TokenEndpoint};

/// Sends refresh requests through keyhole's own upstream client: the same
/// dialer (pins, destination guard, timeouts) and the same verified TLS as
/// every intercepted request. Never follows a redirect; refuses a token
/// endpoint that is not `https://`.
pub struct Endpoint {
    client: upstream::Client,
}

/// A request body as sent to an MCP server.
pub enum Replay {
    /// Read whole: can be sent again.
    Kept(Bytes),
    /// Too large, or of unknown length: streamed once.
    Streamed(ProxyBody),
}

// === impl Endpoint ===

impl Endpoint {
    /// Refreshes through `client`.
    pub fn new(client: upstream::Client) -> Endpoint {
        Endpoint { client }
    }

    async fn send(&self, request: RefreshRequest) -> Result<EndpointResponse, RefreshError> {
        let https = request
            .uri()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if !https {
            return Err(RefreshError::Transport(
                "the token endpoint is not an https:// URL, and keyhole sends refresh tokens over verified TLS only; use the https:// endpoint".to_owned(),
            ));
        }
        let req = request.into_http().map_err(|e| {
            RefreshError::Transport(format!("the token endpoint URL is not usable ({e})"))
        })?;
        let req = req.map(|b| Full::new(b).map_err(|never| match never {}).boxed());
        let origin =
            Origin::from_uri(req.uri()).map_err(|e| RefreshError::Transport(e.to_string()))?;
        let sent = self.client.request(&origin, req);
        let res = match tokio::time::timeout(TOKEN_ENDPOINT_TIMEOUT, sent).await {
            Err(_) => return Err(RefreshError::Timeout),
            Ok(Err(SendError::Dial(d))) => return Err(RefreshError::Transport(d.to_string())),
            Ok(Err(SendError::Http(e))) => return Err(RefreshError::Transport(error_chain(&e))),
            Ok(Ok(res)) => res,
        };
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .into_body()
            .map_err(|e| Box::new(e) as BodyError)
            .boxed();
        let body = read_at_most(body, MAX_TOKEN_RESPONSE_BYTES);
        let body = match tokio::time::timeout(TOKEN_ENDPOINT_TIMEOUT, body).await {
            Err(_) => return Err(RefreshError::Timeout),
            Ok(Err(reason)) => {
                return Err(RefreshError::Transport(format!(
                    "reading the token endpoint's answer: {reason}"
                )))
            }
            Ok(Ok(bytes)) => bytes,
        };
        Ok(EndpointResponse {
            status,
            content_type,
            body,
        })
    }
}

impl TokenEndpoint for Endpoint {
    fn post(
        &self,
        request: RefreshRequest,
    ) -> BoxFuture<'_, Result<EndpointResponse, RefreshError>> {
        Box::pin(self.send(request))
    }
}

// === impl Replay ===

impl Replay {
    /// Reads `body` whole when it is empty or its declared length (as the
    /// client sent it) is at most [`MAX_REPLAY_BODY`], within
    /// [`REPLAY_BODY_TIMEOUT`]; otherwise leaves it to stream. Substituted
    /// secrets may make the body longer than declared: up to twice the
    /// bound is read.
    pub async fn read(
        declared: Option<u64>,
        body: ProxyBody,
        empty: bool,
    ) -> Result<Replay, ProxyError> {
        if empty {
            return Ok(Replay::Kept(Bytes::new()));
        }
        if declared.is_none_or(|n| n > MAX_REPLAY_BODY as u64) {
            return Ok(Replay::Streamed(body));
        }
        let collect = read_at_most(body, 2 * MAX_REPLAY_BODY);
        match tokio::time::timeout(REPLAY_BODY_TIMEOUT, collect).await {
            Err(_) => Err(ProxyError::BodyTimeout {
                after: REPLAY_BODY_TIMEOUT,
            }),
            Ok(Err(chain)) => Err(ProxyError::BodyRead { chain }),
            Ok(Ok(bytes)) => Ok(Replay::Kept(bytes)),
        }
    }
}

/// The data of `body`, at most `limit` bytes (trailers are dropped: a
/// JSON-RPC request has none). Written out rather than through
/// `http_body_util::Limited`, whose error conversion rustc cannot prove
/// `Send` for a boxed body inside the exchange's future.
async fn read_at_most(mut body: ProxyBody, limit: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| error_chain(&*e))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("it is longer than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// A body of `bytes`, for sending a kept body (again).
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| -> BodyError { match never {} })
        .boxed()
}

/// A copy of a request head without its body or extensions, for a retry.
pub fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}
