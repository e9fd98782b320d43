//! A raw HTTP/1.1 client for the admin API that records every response
//! body, so a test can check that none holds a secret.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Longest wait for one admin call.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The admin API of one keyhole.
#[derive(Clone)]
pub struct Api {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin token.
    pub token: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

/// One response: status, raw body, body as JSON (Null if not JSON).
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub text: String,
    /// The body as JSON, Null if it is not JSON.
    pub json: Value,
    /// The Content-Type, empty if none.
    pub content_type: String,
}

impl Api {
    /// The admin API at `addr`, called with `token`.
    pub fn new(addr: SocketAddr, token: &str) -> Api {
        Api {
            addr,
            token: token.to_owned(),
            bodies: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// `method path` with the admin token in `x-api-key`.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let key = self.token.clone();
        self.send(
            method,
            path,
            &[("x-api-key", &key)],
            body.map(|b| b.to_string()),
        )
        .await
    }

    /// As [`Api::call`], expecting 200, returning the JSON.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text);
        r.json
    }

    /// Any request, with exactly these headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let reply = tokio::time::timeout(CALL_TIMEOUT, self.round_trip(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no reply in {CALL_TIMEOUT:?}"));
        self.bodies.lock().unwrap().push(reply.text.clone());
        reply
    }

    /// `req` on a new connection, and its reply.
    async fn round_trip(&self, req: Request<Full<Bytes>>) -> Reply {
        let tcp = TcpStream::connect(self.addr).await.expect("connect admin");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let res = sender.send_request(req).await.expect("send");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            text,
            json,
            content_type,
        }
    }

    /// Writes `bytes` on a new connection; returns what comes back until
    /// the server closes it.
    pub async fn raw(&self, bytes: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = TcpStream::connect(self.addr).await.expect("connect admin");
        tcp.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        let read = tcp.read_to_end(&mut out);
        let _ = tokio::time::timeout(CALL_TIMEOUT, read).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        self.bodies.lock().unwrap().push(text.clone());
        text
    }

    /// Asserts that no response so far contains any of `secrets`.
    pub fn assert_no_secret(&self, secrets: &[&str]) {
        let bodies = self.bodies.lock().unwrap();
        assert!(!bodies.is_empty());
        for body in bodies.iter() {
            for s in secrets {
                assert!(!body.contains(s), "a response holds a secret: {body}");
            }
        }
    }
}

/// Asserts the error envelope: status, `type: "error"`, `error.type`.
pub fn assert_error(r: &Reply, status: u16, error_type: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["type"], "error", "{}", r.text);
    assert_eq!(r.json["error"]["type"], error_type, "{}", r.text);
    assert!(r.json["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}
