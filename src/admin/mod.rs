//! The admin API (`--admin ADDR`): the vault API's vault and credential
//! endpoints over the config file, `/healthz` and `/metrics`.
//!
//! It has its own listener, never the proxy's, and serves HTTP/1.1. Every
//! request but `/healthz` must carry the admin token ([`auth`]). Changes go
//! through the [`Store`]: validated as a whole file, put in force for the
//! next proxied request, then written back atomically. Paths, bodies,
//! status codes and the error envelope follow the vault API
//! (`docs/VAULT-API.md`) so that the official SDKs work
//! with `base_url` pointed here.
//!
//! Module map: [`credentials`] and [`vaults`] handle the endpoints,
//! [`create`] validates create bodies, [`views`] builds every response
//! body, [`page`] parses list queries, [`error`] is the envelope,
//! [`metrics`] the Prometheus text, [`stamp`] ids and timestamps.

pub mod auth;
pub mod create;
pub mod credentials;
pub mod error;
pub mod metrics;
pub mod page;
pub mod stamp;
pub mod vaults;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use self::auth::Token;
use self::error::ApiError;
use crate::proxy::limits::{MAX_HEADER_BYTES, SHUTDOWN_GRACE};
use crate::proxy::server::{self, Http1Limits, Protocol, Tasks, WhenFull};
use crate::proxy::Proxy;
use crate::store::Store;

/// Largest request body accepted; larger ones get `413`. Credential bodies
/// are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest wait for a request's headers (also bounds an idle keep-alive
/// connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a whole request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most admin connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;

/// What the admin API's handlers share.
pub struct Admin {
    store: Arc<Store>,
    proxy: Arc<Proxy>,
    token: Token,
    /// When this process loaded the config: shown for timestamps the file
    /// does not hold.
    loaded_at: String,
}

/// A response body of the admin API.
pub type AdminBody = Full<Bytes>;

// === impl Admin ===

impl Admin {
    /// The admin API over `store`, counting from `proxy`, admitting `token`.
    pub fn new(store: Arc<Store>, proxy: Arc<Proxy>, token: Token) -> Admin {
        let loaded_at =
            stamp::format(stamp::now()).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
        Admin {
            store,
            proxy,
            token,
            loaded_at,
        }
    }

    /// The store the endpoints edit.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The proxy whose counters and MCP tokens the API reports.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The stand-in for timestamps the file does not hold.
    pub fn loaded_at(&self) -> &str {
        &self.loaded_at
    }

    /// Serves connections on `listener` until `stop` turns `true`; then
    /// stops accepting and lets each connection finish its request.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let tasks = Tasks::new();
        let shutdown = server::stopped(stop);
        let limits = Http1Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
        };
        server::accept_loop(&listener, &slots, WhenFull::Wait, &tasks, None, shutdown, {
            let stop = tasks.stop_signal();
            let admin = self.clone();
            move |tcp, peer, permit| {
                let admin = admin.clone();
                let stop = stop.clone();
                async move {
                    let _permit = permit;
                    let handler = move |req| {
                        let admin = admin.clone();
                        async move {
                            let res = admin.handle(req, peer).await;
                            res.map(|b| b.map_err(|never| match never {}).boxed())
                        }
                    };
                    if let Err(e) = server::serve(tcp, Protocol::Http1(limits), handler, stop).await
                    {
                        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                    }
                }
            }
        })
        .await;
        tasks.shutdown(SHUTDOWN_GRACE).await;
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<AdminBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let res = match self.respond(req).await {
            Ok(res) => res,
            Err(e) => json(e.status(), &e.body()),
        };
        // Never a header value, a query or a body: ids in the path only.
        // Probes and scrapes, which come every few seconds, at debug.
        let status = res.status().as_u16();
        if matches!(path.as_str(), "/healthz" | "/metrics") && status == 200 {
            tracing::debug!(%peer, %method, %path, status, "admin request");
        } else {
            tracing::info!(%peer, %method, %path, status, "admin request");
        }
        res
    }

    async fn respond(&self, req: Request<Incoming>) -> Result<Response<AdminBody>, ApiError> {
        if req.uri().path() == "/healthz" {
            return Ok(text(StatusCode::OK, "ok\n", "text/plain; charset=utf-8"));
        }
        if !self.token.admits(req.headers()) {
            return Err(ApiError::Unauthenticated);
        }
        if req.uri().path() == "/metrics" {
            if req.method() != Method::GET {
                return Err(not_allowed(req.method(), "/metrics"));
            }
            let body = metrics::render(&self.proxy);
            return Ok(text(StatusCode::OK, &body, metrics::CONTENT_TYPE));
        }
        let (parts, body) = req.into_parts();
        let body = if parts.method == Method::POST {
            read_body(&parts.headers, body).await?
        } else {
            Bytes::new()
        };
        let value = self
            .route(&parts.method, parts.uri.path(), parts.uri.query(), &body)
            .await?;
        Ok(json(StatusCode::OK, &value))
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let not_found = || {
            ApiError::NotFound(format!(
                "no endpoint {path}; the admin API serves /v1/vaults/..., /healthz and /metrics"
            ))
        };
        let rest = path.strip_prefix("/v1/vaults").ok_or_else(not_found)?;
        let segments: Vec<&str> = match rest {
            "" => Vec::new(),
            r => r
                .strip_prefix('/')
                .ok_or_else(not_found)?
                .split('/')
                .collect(),
        };
        use credentials as c;
        let m = method.clone();
        match (segments.as_slice(), m) {
            ([], Method::GET) => vaults::list(self, query).await,
            ([], Method::POST) => vaults::create(self, body).await,
            ([v], Method::GET) => vaults::retrieve(self, v).await,
            ([v], Method::POST) => vaults::update(self, v, body).await,
            ([v], Method::DELETE) => vaults::delete(self, v).await,
            ([v, "archive"], Method::POST) => vaults::archive(self, v).await,
            ([v, "credentials"], Method::GET) => c::list(self, v, query).await,
            ([v, "credentials"], Method::POST) => c::create(self, v, body).await,
            ([v, "credentials", id], Method::GET) => c::retrieve(self, v, id).await,
            ([v, "credentials", id], Method::POST) => c::update(self, v, id, body).await,
            ([v, "credentials", id], Method::DELETE) => c::delete(self, v, id).await,
            ([v, "credentials", id, "archive"], Method::POST) => c::archive(self, v, id).await,
            ([v, "credentials", id, "mcp_oauth_validate"], Method::POST) => {
                c::validate(self, v, id).await
            }
            ([] | [_] | [_, "archive" | "credentials"], _)
            | ([_, "credentials", _], _)
            | ([_, "credentials", _, "archive" | "mcp_oauth_validate"], _) => {
                Err(not_allowed(method, path))
            }
            _ => Err(not_found()),
        }
    }
}

fn not_allowed(method: &Method, path: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_owned(),
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`] within
/// [`BODY_READ_TIMEOUT`].
async fn read_body(headers: &http::HeaderMap, body: Incoming) -> Result<Bytes, ApiError> {
    let too_large = ApiError::TooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    let collect = Limited::new(body, MAX_BODY_BYTES).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
        Err(_) => Err(ApiError::Invalid(format!(
            "the request body did not arrive within {}s; send it at once",
            BODY_READ_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Ok(Err(e)) => Err(ApiError::Invalid(format!(
            "cannot read the request body: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses a JSON body; an empty body is `{}`.
pub fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::Invalid(format!(
            "the request body is not valid JSON ({e}); send a JSON object"
        ))
    })
}

/// A JSON response.
fn json(status: StatusCode, value: &Value) -> Response<AdminBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    text_bytes(status, Bytes::from(body), "application/json")
}

fn text(status: StatusCode, body: &str, content_type: &'static str) -> Response<AdminBody> {
    text_bytes(status, Bytes::from(body.to_owned()), content_type)
}

fn text_bytes(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<AdminBody> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
