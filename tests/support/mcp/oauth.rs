//! A local OAuth token endpoint (RFC 6749 section 6) for one client.
//!
//! It checks every refresh request byte for byte against what RFC 6749
//! and keyhole's documented order say it must be, with an encoder of its
//! own (`application/x-www-form-urlencoded`: unreserved characters stay,
//! a space becomes `+`, every other byte `%XX`):
//! `grant_type=refresh_token&refresh_token=RT[&scope=S][&resource=R]`,
//! then by client authentication
//! - `none`: `&client_id=ID`, no `Authorization`;
//! - `client_secret_post`: `&client_id=ID&client_secret=SECRET`, no
//!   `Authorization`;
//! - `client_secret_basic`: nothing more in the body, and
//!   `Authorization: Basic base64(encode(ID) ":" encode(SECRET))`.
//!
//! A request that differs is a *problem* (the test asserts there is none)
//! and is answered `401 invalid_client`. A refresh token other than the
//! one currently valid is answered `400 invalid_grant`, as a real server
//! would; a rotation makes the new one the valid one. Otherwise the next
//! scripted [`Answer`] is played; a call with no answer left is a problem.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::support::upstream::{serve_tls, tls_acceptor, whole_body, Alpn, TestCa, LOOPBACK};

/// The host name token endpoints are reached by.
pub const AUTH_HOST: &str = "auth.test";

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client: `client_id` in the body.
    None,
    /// `client_secret_basic` with this secret.
    Basic(String),
    /// `client_secret_post` with this secret.
    Post(String),
}

/// The OAuth client a token endpoint serves, and what it expects.
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// The client authentication.
    pub auth: ClientAuth,
    /// `scope`, sent only when configured.
    pub scope: Option<String>,
    /// `resource` (RFC 8707), sent only when configured.
    pub resource: Option<String>,
    /// The refresh token valid at first.
    pub refresh_token: String,
}

impl Client {
    /// A client `id` authenticating with `auth`, holding `refresh_token`.
    pub fn new(id: &str, auth: ClientAuth, refresh_token: &str) -> Client {
        Client {
            id: id.to_owned(),
            auth,
            scope: None,
            resource: None,
            refresh_token: refresh_token.to_owned(),
        }
    }

    /// With a `scope`.
    pub fn scope(mut self, scope: &str) -> Client {
        self.scope = Some(scope.to_owned());
        self
    }

    /// With a `resource`.
    pub fn resource(mut self, resource: &str) -> Client {
        self.resource = Some(resource.to_owned());
        self
    }

    /// What is wrong with a refresh request presenting `refresh_token`
    /// (decoded from its body): nothing, when it is byte for byte right.
    fn problems(
        &self,
        head: &http::request::Parts,
        body: &str,
        refresh_token: &str,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let header = |name| {
            head.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        if head.method != http::Method::POST || head.uri.path() != "/oauth/token" {
            problems.push(format!("{} {}", head.method, head.uri));
        }
        let content_type = header(CONTENT_TYPE);
        if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
            problems.push(format!("content-type {content_type:?}"));
        }
        let mut expected = format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(refresh_token)
        );
        for (name, value) in [("scope", &self.scope), ("resource", &self.resource)] {
            if let Some(value) = value {
                expected += &format!("&{name}={}", form_encode(value));
            }
        }
        let basic = match &self.auth {
            ClientAuth::None => {
                expected += &format!("&client_id={}", form_encode(&self.id));
                None
            }
            ClientAuth::Post(secret) => {
                expected += &format!(
                    "&client_id={}&client_secret={}",
                    form_encode(&self.id),
                    form_encode(secret)
                );
                None
            }
            ClientAuth::Basic(secret) => {
                let pair = format!("{}:{}", form_encode(&self.id), form_encode(secret));
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(format!("Basic {b64}"))
            }
        };
        let authorization = header(AUTHORIZATION);
        if authorization != basic {
            problems.push(format!(
                "authorization {authorization:?}, expected {basic:?}"
            ));
        }
        if body != expected {
            problems.push(format!("body {body:?}, expected {expected:?}"));
        }
        problems
    }
}

/// What the endpoint answers to one refresh.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `200` with a new access token.
    Token {
        /// `access_token`.
        access: String,
        /// `expires_in`, when sent.
        expires_in: Option<u64>,
        /// A rotated `refresh_token`, when sent.
        refresh: Option<String>,
    },
    /// `400 {"error": "invalid_grant", ...}`, its description naming the
    /// refresh token presented (which keyhole must never repeat).
    InvalidGrant,
    /// This status (a 5xx), with an OAuth error body.
    Status(u16),
    /// The answer, sent only once the test calls [`TokenServer::release`]
    /// (within 20 s): a refresh that takes as long as the test needs.
    Held(Box<Answer>),
}

impl Answer {
    /// A new access token valid for an hour, the refresh token kept.
    pub fn token(access: &str) -> Answer {
        Answer::Token {
            access: access.to_owned(),
            expires_in: Some(3600),
            refresh: None,
        }
    }

    /// A new access token and a rotated refresh token, valid for an hour.
    pub fn rotating(access: &str, refresh: &str) -> Answer {
        Answer::Token {
            access: access.to_owned(),
            expires_in: Some(3600),
            refresh: Some(refresh.to_owned()),
        }
    }

    /// A new access token with no `expires_in` and no refresh token.
    pub fn no_expiry(access: &str) -> Answer {
        Answer::Token {
            access: access.to_owned(),
            expires_in: None,
            refresh: None,
        }
    }
}

struct State {
    client: Client,
    valid_refresh: Mutex<String>,
    script: Mutex<VecDeque<Answer>>,
    calls: AtomicUsize,
    presented: Mutex<Vec<String>>,
    problems: Mutex<Vec<String>>,
    released: watch::Sender<bool>,
}

/// A running token endpoint. See the module documentation.
pub struct TokenServer {
    state: Arc<State>,
    port: u16,
}

impl TokenServer {
    /// Starts it for `client`, with a certificate from `ca` for [`AUTH_HOST`].
    pub async fn start(ca: &TestCa, client: Client) -> TokenServer {
        let state = Arc::new(State {
            valid_refresh: Mutex::new(client.refresh_token.clone()),
            client,
            script: Mutex::new(VecDeque::new()),
            calls: AtomicUsize::new(0),
            presented: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            released: watch::channel(false).0,
        });
        let handler = {
            let state = state.clone();
            move |req| answer(state.clone(), req)
        };
        let acceptor = tls_acceptor(ca, &[AUTH_HOST], Alpn::Both);
        let (addr, _) = serve_tls(LOOPBACK, acceptor, handler).await;
        TokenServer {
            state,
            port: addr.port(),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://auth.test:PORT/oauth/token`.
    pub fn url(&self) -> String {
        format!("https://{AUTH_HOST}:{}/oauth/token", self.port)
    }

    /// The client it serves.
    pub fn client(&self) -> &Client {
        &self.state.client
    }

    /// Queues the answer to a later call.
    pub fn script(&self, answer: Answer) {
        self.state.script.lock().unwrap().push_back(answer);
    }

    /// Lets [`Answer::Held`] answers go.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// How many refresh requests it received.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The refresh token of each request, in order.
    pub fn presented(&self) -> Vec<String> {
        self.state.presented.lock().unwrap().clone()
    }

    /// Panics if any request was not byte for byte right, or came with no
    /// answer scripted.
    pub fn assert_no_problem(&self) {
        let problems = self.state.problems.lock().unwrap();
        assert!(problems.is_empty(), "token endpoint: {problems:#?}");
    }
}

/// `application/x-www-form-urlencoded`, written independently of keyhole's.
pub fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out += &format!("%{b:02X}"),
        }
    }
    out
}

/// The decoded value of `name` in a form body.
fn form_value(body: &str, name: &str) -> Option<String> {
    let raw = body
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))?;
    let mut out = Vec::new();
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// A JSON answer with `status`.
fn reply(status: u16, value: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("a valid response")
}

/// Checks the request, then refuses it or plays the next answer.
async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let (head, body) = req.into_parts();
    let body = String::from_utf8_lossy(&whole_body(body).await).into_owned();
    let presented = form_value(&body, "refresh_token").unwrap_or_default();
    state.presented.lock().unwrap().push(presented.clone());
    let problems = state.client.problems(&head, &body, &presented);
    if !problems.is_empty() {
        state.problems.lock().unwrap().extend(problems);
        return Ok(reply(401, json!({"error": "invalid_client"})));
    }
    if presented != *state.valid_refresh.lock().unwrap() {
        return Ok(play(&state, Answer::InvalidGrant, &presented).await);
    }
    let next = state.script.lock().unwrap().pop_front();
    let Some(next) = next else {
        state
            .problems
            .lock()
            .unwrap()
            .push("a call with no answer scripted".into());
        return Ok(reply(500, json!({"error": "server_error"})));
    };
    Ok(play(&state, next, &presented).await)
}

/// The response for `answer` to a request presenting `presented`.
async fn play(state: &State, answer: Answer, presented: &str) -> Response<Full<Bytes>> {
    let mut answer = answer;
    while let Answer::Held(inner) = answer {
        let mut released = state.released.subscribe();
        let wait = released.wait_for(|go| *go);
        if tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .is_err()
        {
            state
                .problems
                .lock()
                .unwrap()
                .push("a held answer was never released".into());
        }
        answer = *inner;
    }
    match answer {
        Answer::Token {
            access,
            expires_in,
            refresh,
        } => {
            let mut body = Map::new();
            body.insert("access_token".into(), json!(access));
            body.insert("token_type".into(), json!("Bearer"));
            if let Some(seconds) = expires_in {
                body.insert("expires_in".into(), json!(seconds));
            }
            if let Some(refresh) = refresh {
                body.insert("refresh_token".into(), json!(refresh));
                *state.valid_refresh.lock().unwrap() = refresh;
            }
            reply(200, Value::Object(body))
        }
        Answer::InvalidGrant => reply(
            400,
            json!({"error": "invalid_grant", "error_description": format!("refresh token {presented} is revoked")}),
        ),
        Answer::Status(status) => reply(status, json!({"error": "temporarily_unavailable"})),
        Answer::Held(_) => unreachable!("unwrapped above"),
    }
}
