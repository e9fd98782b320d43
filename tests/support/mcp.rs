//! MCP servers and OAuth token endpoints for keyhole's `static_bearer` and
//! `mcp_oauth` credentials, through real sockets.
//!
//! - [`server`]: the MCP-like server ([`McpServer`]).
//! - [`oauth`]: the token endpoint ([`TokenServer`]) and its script.
//! - Here: MCP credentials as config JSON, and [`McpWorld`]: the servers
//!   with keyhole in front of them, resolving [`MCP_HOST`], [`OTHER_HOSTS`]
//!   and [`AUTH_HOST`] to them.
//!
//! ```ignore
//! let s = Servers::start(vec![Client::new("id", ClientAuth::None, "rt_1")]).await;
//! let cred = mcp_oauth("vcrd_o", &s.mcp.url(MCP_HOST, "/mcp"), "at_1")
//!     .expires_in(-60)
//!     .refresh(&s.auth[0]);
//! let w = s.world(Config::new().raw_credential(cred.json()), |b| b).await;
//! s.auth[0].script(oauth::Answer::token("at_2"));
//! let reply = w.post("/mcp", r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
//! ```

pub mod oauth;
pub mod server;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use oauth::{Client, ClientAuth, TokenServer, AUTH_HOST};
pub use server::McpServer;

use super::client::{exchange, http1, Tunnel};
use super::config::Config;
use super::upstream::TestCa;
use super::world::{World, WorldBuilder};

/// The MCP server's host.
pub const MCP_HOST: &str = "mcp.test";
/// Hosts that are not [`MCP_HOST`]: two lookalikes a careless wildcard or
/// suffix match would take for it, and an unrelated one. The MCP server's
/// certificate covers them, and keyhole resolves them to it.
pub const OTHER_HOSTS: [&str; 3] = ["evil-mcp.test", "mcp.test.evil.test", "api.test"];

/// A `static_bearer` credential.
pub fn static_bearer(id: &str, url: &str, token: &str) -> Value {
    json!({"id": id, "auth": {"type": "static_bearer", "mcp_server_url": url, "token": token}})
}

/// An `mcp_oauth` credential, built up.
#[derive(Debug, Clone)]
pub struct OAuthCredential {
    id: String,
    url: String,
    access_token: String,
    expires_at: Option<String>,
    refresh: Option<Value>,
}

/// An `mcp_oauth` credential for `url` holding `access_token`, with no
/// expiry and no refresh.
pub fn mcp_oauth(id: &str, url: &str, access_token: &str) -> OAuthCredential {
    OAuthCredential {
        id: id.to_owned(),
        url: url.to_owned(),
        access_token: access_token.to_owned(),
        expires_at: None,
        refresh: None,
    }
}

/// Now plus `seconds` (negative: in the past), RFC 3339.
pub fn rfc3339_in(seconds: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&Rfc3339)
        .expect("format a timestamp")
}

/// An RFC 3339 timestamp's distance from now, in seconds.
pub fn seconds_until(timestamp: &str) -> i64 {
    let at = OffsetDateTime::parse(timestamp, &Rfc3339).expect("an RFC 3339 timestamp");
    (at - OffsetDateTime::now_utc()).whole_seconds()
}

impl OAuthCredential {
    /// `expires_at` `seconds` from now (negative: already expired).
    pub fn expires_in(mut self, seconds: i64) -> OAuthCredential {
        self.expires_at = Some(rfc3339_in(seconds));
        self
    }

    /// A `refresh` through `endpoint`, as its client.
    pub fn refresh(mut self, endpoint: &TokenServer) -> OAuthCredential {
        let client = endpoint.client();
        let auth = match &client.auth {
            ClientAuth::None => json!({"type": "none"}),
            ClientAuth::Basic(s) => json!({"type": "client_secret_basic", "client_secret": s}),
            ClientAuth::Post(s) => json!({"type": "client_secret_post", "client_secret": s}),
        };
        let mut refresh = json!({
            "client_id": client.id,
            "refresh_token": client.refresh_token,
            "token_endpoint": endpoint.url(),
            "token_endpoint_auth": auth,
        });
        for (name, value) in [("scope", &client.scope), ("resource", &client.resource)] {
            if let Some(value) = value {
                refresh[name] = json!(value);
            }
        }
        self.refresh = Some(refresh);
        self
    }

    /// The credential's JSON.
    pub fn json(&self) -> Value {
        let mut auth = json!({
            "type": "mcp_oauth",
            "mcp_server_url": self.url,
            "access_token": self.access_token,
        });
        if let Some(at) = &self.expires_at {
            auth["expires_at"] = json!(at);
        }
        if let Some(refresh) = &self.refresh {
            auth["refresh"] = refresh.clone();
        }
        json!({"id": self.id, "auth": auth})
    }
}

/// The test CA, an MCP server and token endpoints, before keyhole starts.
pub struct Servers {
    ca: TestCa,
    /// The MCP server, for [`MCP_HOST`] and [`OTHER_HOSTS`].
    pub mcp: McpServer,
    /// One token endpoint per client, in order.
    pub auth: Vec<TokenServer>,
}

impl Servers {
    /// Starts the MCP server and a token endpoint for each of `clients`.
    pub async fn start(clients: Vec<Client>) -> Servers {
        let ca = TestCa::new();
        let mut names = vec![MCP_HOST];
        names.extend(OTHER_HOSTS);
        let mcp = McpServer::start(&ca, &names).await;
        let mut auth = Vec::new();
        for client in clients {
            auth.push(TokenServer::start(&ca, client).await);
        }
        Servers { ca, mcp, auth }
    }

    /// Starts keyhole on `config` in front of them (`more` adds to its
    /// world: admin API, audit log, variables...).
    pub async fn world(
        self,
        config: Config,
        more: impl FnOnce(WorldBuilder) -> WorldBuilder,
    ) -> McpWorld {
        let mcp = &self.mcp;
        let mut builder = World::builder()
            .ca(self.ca)
            .config(config)
            .resolve(MCP_HOST, mcp.port())
            .resolve(MCP_HOST, mcp.other_port())
            .resolve(MCP_HOST, mcp.plain_port());
        for name in OTHER_HOSTS {
            builder = builder.resolve(name, mcp.port());
        }
        for endpoint in &self.auth {
            builder = builder.resolve(AUTH_HOST, endpoint.port());
        }
        McpWorld {
            world: more(builder).start().await,
            mcp: self.mcp,
            auth: self.auth,
        }
    }
}

/// keyhole in front of an MCP server and its token endpoints.
pub struct McpWorld {
    /// keyhole and its clients.
    pub world: World,
    /// The MCP server.
    pub mcp: McpServer,
    /// The token endpoints.
    pub auth: Vec<TokenServer>,
}

/// What a client got back.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The headers and body as one text, for searching.
    pub fn all_text(&self) -> String {
        let headers: String = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        format!("{} {headers}\n{}", self.status, self.body)
    }
}

impl McpWorld {
    /// `https://mcp.test:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        self.mcp.url(MCP_HOST, path)
    }

    /// A request to [`MCP_HOST`]'s `path` naming its authority, with
    /// `Content-Type: application/json`, from a client holding no token.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{MCP_HOST}:{}", self.mcp.port()))
            .header("content-type", "application/json")
    }

    /// Sends `req` through keyhole to [`MCP_HOST`] on a new connection
    /// (HTTP/1.1); the whole answer.
    pub async fn send<B>(&self, req: Request<B>) -> Reply
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.tunnel().await;
        let (res, body) = exchange(tls, req).await.expect("an answer");
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A JSON-RPC `POST` of `body` (with a Content-Length) to `path`.
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        let req = self.request("POST", path);
        let req = req.body(Full::new(Bytes::from(body.to_owned())));
        self.send(req.expect("a valid request")).await
    }

    /// Opens an SSE stream: `GET path` with `Accept: text/event-stream`.
    pub async fn open_sse(&self, path: &str) -> SseStream {
        let (mut sender, _conn) = http1(self.tunnel().await).await.expect("HTTP/1.1");
        let req = self
            .request("GET", path)
            .header("accept", "text/event-stream");
        let req = req.body(Empty::new()).expect("a valid request");
        let res = sender.send_request(req).await.expect("an answer");
        let (head, body) = res.into_parts();
        SseStream {
            head,
            body,
            read: String::new(),
            _sender: sender,
        }
    }

    async fn tunnel(&self) -> TlsStream<TcpStream> {
        let authority = format!("{MCP_HOST}:{}", self.mcp.port());
        Tunnel::to(authority)
            .open(&self.world)
            .await
            .expect("tunnel")
    }

    /// Stops keyhole and starts it again on its config file as it is now;
    /// the servers stay.
    pub fn restart(self) -> McpWorld {
        McpWorld {
            world: self.world.restart(),
            ..self
        }
    }

    /// The admin API's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let reply = self.world.api().call("GET", "/metrics", None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.text
    }

    /// The config file keyhole runs on, as JSON.
    pub fn config_file(&self) -> Value {
        let text = std::fs::read_to_string(self.world.keyhole.config_path()).expect("config");
        serde_json::from_str(&text).expect("the config file is JSON")
    }
}

/// An open SSE stream through keyhole.
pub struct SseStream {
    /// The response head.
    pub head: http::response::Parts,
    body: Incoming,
    read: String,
    _sender: SendRequest<Empty<Bytes>>,
}

impl SseStream {
    /// Reads until the stream has carried `needle` (bounded: 10 s);
    /// returns all it carried so far.
    pub async fn read_until(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.read.contains(needle) {
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            let frame = frame
                .unwrap_or_else(|_| {
                    panic!("no {needle:?} on the stream; it carried {:?}", self.read)
                })
                .unwrap_or_else(|| panic!("the stream ended; it carried {:?}", self.read))
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.read += &String::from_utf8_lossy(&data);
            }
        }
        self.read.clone()
    }
}

/// The admin API's path of credential `id` of the default vault, and
/// `more` after it: `/v1/vaults/vlt_local/credentials/{id}{more}`.
pub fn credential_path(id: &str, more: &str) -> String {
    format!("/v1/vaults/vlt_local/credentials/{id}{more}")
}

/// The value of the `/metrics` sample `series` (name and labels, as
/// written), if there is one.
pub fn metric(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `done` until it holds; panics naming `what` after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Panics if any of `texts` holds any of `secrets`, naming `what`.
pub fn assert_none_in(what: &str, texts: &[&str], secrets: &[&str]) {
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} holds {secret:?}:\n{text}");
        }
    }
}
