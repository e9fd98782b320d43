//! A local MCP-like server: JSON-RPC over HTTP POST, and an SSE stream
//! (`GET` with `Accept: text/event-stream`) kept open until the client
//! goes. It listens on three ports of 127.0.0.1 with one shared state: TLS
//! (the port MCP credentials name), TLS again (another port of the same
//! host) and plain HTTP.
//!
//! Every request is recorded (authority, method, path, `Authorization`,
//! body). Every answer reflects the `Authorization` it received, in the
//! `x-seen-authorization` header and in its JSON body, so that a test sees
//! what keyhole scrubs from responses. A token can be refused with `401`
//! (`invalid_token`) or `403` (`insufficient_scope`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::upstream::{
    serve_plain, serve_tls, tls_acceptor, whole_body, Alpn, TestBody, TestCa, LOOPBACK,
};

/// One request as the MCP server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `Host` (HTTP/1.1) or `:authority` (HTTP/2): `host:port`.
    pub authority: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The bearer token it carried, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.authorization.as_deref()?.strip_prefix("Bearer ")
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// Token -> the status it is refused with.
    refusals: Mutex<HashMap<String, u16>>,
    /// The open SSE streams.
    streams: Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
}

/// A running MCP server. See the module documentation.
pub struct McpServer {
    state: Arc<State>,
    tls: SocketAddr,
    other: SocketAddr,
    plain: SocketAddr,
}

impl McpServer {
    /// Starts it with a certificate from `ca` for `names`.
    pub async fn start(ca: &TestCa, names: &[&str]) -> McpServer {
        let state = Arc::new(State::default());
        let acceptor = tls_acceptor(ca, names, Alpn::Both);
        let handler = {
            let state = state.clone();
            move |req| answer(state.clone(), req)
        };
        let (tls, _) = serve_tls(LOOPBACK, acceptor.clone(), handler.clone()).await;
        let (other, _) = serve_tls(LOOPBACK, acceptor, handler.clone()).await;
        let (plain, _) = serve_plain(LOOPBACK, handler).await;
        McpServer {
            state,
            tls,
            other,
            plain,
        }
    }

    /// The TLS port MCP credentials name.
    pub fn port(&self) -> u16 {
        self.tls.port()
    }

    /// Another TLS port of the same server.
    pub fn other_port(&self) -> u16 {
        self.other.port()
    }

    /// The plain-HTTP port.
    pub fn plain_port(&self) -> u16 {
        self.plain.port()
    }

    /// `https://host:PORT{path}` on [`McpServer::port`].
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port())
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The requests received so far whose path and query is `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// The only request received at `path`; panics if there is not
    /// exactly one.
    pub fn one_at(&self, path: &str) -> Seen {
        let mut all = self.seen_at(path);
        assert_eq!(all.len(), 1, "requests at {path}: {all:#?}");
        all.remove(0)
    }

    /// Answers requests carrying `Bearer token` with `status` (401 or
    /// 403) from now on.
    pub fn refuse(&self, token: &str, status: u16) {
        self.state
            .refusals
            .lock()
            .unwrap()
            .insert(token.to_owned(), status);
    }

    /// Sends `data: {data}` to every open SSE stream; returns how many
    /// were still open.
    pub fn send_event(&self, data: &str) -> usize {
        let mut streams = self.state.streams.lock().unwrap();
        streams.retain(|tx| tx.send(event(data)).is_ok());
        streams.len()
    }
}

/// One SSE event.
fn event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// A body made of whatever the stream's sender sends, open until the
/// sender is dropped (never, while the server runs) or the client goes.
struct Events(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|data| data.map(|d| Ok(Frame::data(d))))
    }
}

/// A whole body of `value`, as JSON.
fn json_body(value: Value) -> TestBody {
    Full::new(Bytes::from(value.to_string())).boxed()
}

/// Records the request, then: its refusal if its token is refused; an SSE
/// stream (first event `open`) for a `GET` asking for one; else a
/// JSON-RPC result naming the path. Every answer reflects the
/// `Authorization` received.
async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let authorization = req.headers().get(AUTHORIZATION).map(text);
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| req.headers().get(HOST).map(text))
        .unwrap_or_default();
    let stream = req.method() == Method::GET
        && req
            .headers()
            .get(ACCEPT)
            .is_some_and(|v| text(v).contains("text/event-stream"));
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = whole_body(req.into_body()).await.to_vec();
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    state.seen.lock().unwrap().push(Seen {
        authority,
        method,
        path: path.clone(),
        authorization: authorization.clone(),
        body,
    });
    let reflected = authorization.unwrap_or_default();
    let token = reflected.strip_prefix("Bearer ").unwrap_or_default();
    let refused = state.refusals.lock().unwrap().get(token).copied();
    let res = Response::builder().header("x-seen-authorization", &reflected);
    let res = if let Some(status) = refused {
        let error = if status == 401 {
            "invalid_token"
        } else {
            "insufficient_scope"
        };
        res.status(status)
            .header("www-authenticate", format!("Bearer error=\"{error}\""))
            .header(CONTENT_TYPE, "application/json")
            .body(json_body(
                json!({"error": error, "authorization": reflected}),
            ))
    } else if stream {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(event("open"));
        state.streams.lock().unwrap().push(tx);
        res.header(CONTENT_TYPE, "text/event-stream")
            .header("cache-control", "no-cache")
            .body(Events(rx).boxed())
    } else {
        let result = json!({"path": path, "authorization": reflected});
        res.header(CONTENT_TYPE, "application/json").body(json_body(
            json!({"jsonrpc": "2.0", "id": id, "result": result}),
        ))
    };
    Ok(res.expect("a valid response"))
}
