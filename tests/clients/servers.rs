//! The local servers the client matrix talks to through keyhole, each a TLS
//! server on 127.0.0.1:0 certified by the test CA (served as every test
//! server is, by [`serve_tls`]), that demands HTTP Basic
//! auth with the real secret and records every request it gets:
//!
//! - [`git_server`]: `git http-backend` (CGI) over a folder of bare
//!   repositories, for `git clone` and `git push` over smart HTTP;
//! - [`package_index`]: a PEP 503 simple index serving one wheel, for
//!   `pip install`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use crate::support::upstream::{serve_tls, tls_acceptor, whole_body, Alpn, TestCa, LOOPBACK};

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header, lower-case names, values as text.
    pub headers: Vec<(String, String)>,
    /// The user and password of `Authorization: Basic`, decoded.
    pub basic: Option<(String, String)>,
    /// Whether the credentials were accepted.
    pub authorized: bool,
}

impl Seen {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Who may in: HTTP Basic with this password, and this user when given.
#[derive(Debug, Clone)]
pub struct Basic {
    /// The user name required, if any.
    pub user: Option<String>,
    /// The password required.
    pub password: String,
}

impl Basic {
    /// HTTP Basic with exactly this user and password.
    pub fn new(user: &str, password: &str) -> Basic {
        Basic {
            user: Some(user.to_owned()),
            password: password.to_owned(),
        }
    }
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// What a server serves once the request is authorized.
enum App {
    /// `git http-backend` over the bare repositories under `root`.
    Git { root: PathBuf },
    /// A simple index holding one wheel of one project.
    Index {
        project: String,
        file_name: String,
        wheel: Bytes,
        sha256: String,
    },
}

/// `git http-backend` over the bare repositories in `root` (each pushable:
/// the server sets `REMOTE_USER` once Basic auth passed), at `name`.
pub async fn git_server(ca: &TestCa, name: &str, root: &Path, auth: Basic) -> Server {
    serve(
        ca,
        name,
        auth,
        App::Git {
            root: root.to_owned(),
        },
    )
    .await
}

/// A PEP 503 index at `name` with `/simple/`, `/simple/PROJECT/` and the
/// wheel at `/packages/FILE` (linked with its `#sha256=`).
pub async fn package_index(
    ca: &TestCa,
    name: &str,
    project: &str,
    wheel_path: &Path,
    auth: Basic,
) -> Server {
    let wheel = std::fs::read(wheel_path).expect("read wheel");
    let sha256 = ring::digest::digest(&ring::digest::SHA256, &wheel)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file_name = wheel_path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("wheel file name")
        .to_owned();
    serve(
        ca,
        name,
        auth,
        App::Index {
            project: project.to_owned(),
            file_name,
            wheel: Bytes::from(wheel),
            sha256,
        },
    )
    .await
}

async fn serve(ca: &TestCa, name: &str, auth: Basic, app: App) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new((auth, app, seen.clone()));
    let (addr, _) = serve_tls(
        LOOPBACK,
        tls_acceptor(ca, &[name], Alpn::Both),
        move |req| {
            let state = state.clone();
            async move {
                let (auth, app, seen) = &*state;
                Ok::<_, std::convert::Infallible>(handle(auth, app, seen, req).await)
            }
        },
    )
    .await;
    Server { addr, seen }
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("response")
}

async fn handle(
    auth: &Basic,
    app: &App,
    seen: &Mutex<Vec<Seen>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = whole_body(body).await;
    let basic = basic_credentials(&parts);
    let authorized = basic.as_ref().is_some_and(|(user, password)| {
        *password == auth.password && auth.user.as_ref().is_none_or(|u| u == user)
    });
    seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        basic,
        authorized,
    });
    if !authorized {
        let mut res = text(StatusCode::UNAUTHORIZED, "authentication required\n");
        res.headers_mut().insert(
            "www-authenticate",
            http::HeaderValue::from_static("Basic realm=\"keyhole client tests\""),
        );
        return res;
    }
    match app {
        App::Git { root } => git_cgi(root, &parts, body).await,
        App::Index {
            project,
            file_name,
            wheel,
            sha256,
        } => {
            let path = parts.uri.path();
            if path == "/simple/" {
                let html = format!(
                    "<!DOCTYPE html>\n<html><body><a href=\"/simple/{project}/\">{project}</a></body></html>\n"
                );
                html_page(html)
            } else if path == format!("/simple/{project}/") {
                let html = format!(
                    "<!DOCTYPE html>\n<html><body><a href=\"/packages/{file_name}#sha256={sha256}\">{file_name}</a></body></html>\n"
                );
                html_page(html)
            } else if path == format!("/packages/{file_name}") {
                Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(Full::new(wheel.clone()))
                    .expect("response")
            } else {
                text(StatusCode::NOT_FOUND, "not found\n")
            }
        }
    }
}

fn html_page(html: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "text/html")
        .body(Full::new(Bytes::from(html)))
        .expect("response")
}

/// Runs `git http-backend` for one request, as a web server's CGI would.
async fn git_cgi(root: &Path, parts: &Parts, body: Bytes) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header("content-type") {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git http-backend: {e}\n"),
            )
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // Written beside the reads below: a CGI may answer before it has
        // read its whole input.
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
    }
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git http-backend: {e}\n"),
            )
        }
    };
    cgi_response(&out.stdout).unwrap_or_else(|| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "git http-backend gave no CGI response: {}\n",
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
}

/// A CGI's output (headers, a blank line, the body) as a response.
fn cgi_response(out: &[u8]) -> Option<Response<Full<Bytes>>> {
    let (head_len, sep) = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|sep| {
            out.windows(sep.len())
                .position(|w| w == *sep)
                .map(|p| (p, sep.len()))
        })
        .min()?;
    let head = std::str::from_utf8(&out[..head_len]).ok()?;
    let mut res = Response::builder();
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse::<u16>().ok()?;
            res = res.status(code);
        } else {
            res = res.header(name.trim(), value);
        }
    }
    res.body(Full::new(Bytes::copy_from_slice(&out[head_len + sep..])))
        .ok()
}
