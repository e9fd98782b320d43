//! Upstream and client faults through real sockets. Each ends in a clean
//! `502`/`504` with `Proxy-Status`, or a closed connection; keyhole keeps
//! serving other clients, and its open file descriptors (counted in
//! `/proc/PID/fd`) come back to where they were: no socket, and so no
//! connection task, is left behind.
//!
//! The upstreams here are scripts (`support/scripted.rs`) that misbehave
//! on purpose, all on 127.0.0.1.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use support::client::{self, NoBody, Tunnel};
use support::config::{Config, Credential};
use support::proxy::Keyhole;
use support::scripted::{on_request, scripted, Conn, Ctx, Scripted, SCRIPT_LIMIT};
use support::upstream::{Alpn, TestCa};
use support::world::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const SECRET: &str = "sek_faults_8e21b7c4";
const PLACEHOLDER: &str = "kh_pinned_faults_0123456789";
/// How long keyhole gets to release sockets after a fault.
const SETTLE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------
// The world: keyhole, a scripted upstream and a well-behaved one
// ---------------------------------------------------------------------

/// keyhole with `api.example.test`, `tunnel.test` and `plain.test` at a
/// scripted upstream and `good.test` at a well-behaved one.
struct Faults {
    world: World,
    script: Scripted,
    /// keyhole's open descriptors once warmed up (one pooled connection to
    /// the good upstream included).
    baseline: usize,
}

/// [`Faults`] with `script` for the scripted upstream and `extra` flags.
async fn world<F, Fut>(extra: &[&str], script: F) -> Faults
where
    F: Fn(TcpStream, Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ca = TestCa::new();
    let script = scripted(&ca, &["api.example.test", "tunnel.test"], script).await;
    let config = Config::new()
        .egress(&["api.example.test", "good.test", "tunnel.test", "plain.test"])
        .credential(
            Credential::new("vcrd_api")
                .secret("API_TOKEN", SECRET)
                .placeholder(PLACEHOLDER)
                .allowed_hosts(&["api.example.test", "good.test"]),
        );
    let world = World::builder()
        .ca(ca)
        .config(config)
        .names(&["good.test"])
        .alpn(Alpn::H1)
        .resolve("api.example.test", script.port())
        .resolve("tunnel.test", script.port())
        .resolve("plain.test", script.port())
        .args(extra)
        .start()
        .await;
    let mut w = Faults {
        world,
        script,
        baseline: 0,
    };
    w.serves_others().await;
    w.baseline = settled_fds(&w.world.keyhole).await;
    assert!(
        w.baseline > 0,
        "cannot count keyhole's descriptors in /proc"
    );
    w
}

impl Faults {
    /// `api.example.test:PORT`, at the scripted upstream.
    fn api(&self) -> String {
        format!("api.example.test:{}", self.script.port())
    }

    /// An intercepted TLS connection to `api.example.test`, by `alpn`.
    async fn open(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        let tunnel = Tunnel::to(self.api()).alpn(alpn);
        tunnel.open(&self.world).await.expect("intercepted tunnel")
    }

    /// An intercepted HTTP/1.1 connection to `api.example.test` with a
    /// request head written on it: `request` (`GET /path`), `Host`, then
    /// `headers`.
    async fn start_request(&self, request: &str, headers: &[&str]) -> TlsStream<TcpStream> {
        let mut head = format!("{request} HTTP/1.1\r\nHost: {}\r\n", self.api());
        for h in headers {
            head.push_str(&format!("{h}\r\n"));
        }
        head.push_str("\r\n");
        let mut tls = self.open(b"http/1.1").await;
        tls.write_all(head.as_bytes())
            .await
            .expect("write the head");
        tls
    }

    /// A byte-for-byte tunnel to `tunnel.test` (no credential applies) at
    /// the scripted upstream.
    async fn tunnel(&self) -> TcpStream {
        let authority = format!("tunnel.test:{}", self.script.port());
        let tunnel = client::connect(self.world.keyhole.addr, &authority).await;
        tunnel.expect("a tunnel")
    }

    /// A GET to the scripted upstream through keyhole; the response and
    /// its whole body, or the client's error.
    async fn get(&self, alpn: &[u8], path: &str) -> Result<(http::Response<()>, String), String> {
        let tls = self.open(alpn).await;
        let mut req = Request::get(format!("https://{}{path}", self.api()))
            .header("authorization", format!("Bearer {PLACEHOLDER}"));
        req = if alpn == b"h2" {
            req.version(Version::HTTP_2)
        } else {
            req.header("host", self.api())
        };
        let req = req.empty();
        let got = tokio::time::timeout(Duration::from_secs(10), client::send(tls, req))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?;
        // Whatever happened, no secret comes back: not in an upstream's
        // answer, not in keyhole's own error pages.
        if let Ok((res, body)) = &got {
            assert!(!body.contains(SECRET), "{path}: a secret in {body}");
            for v in res.headers().values() {
                assert!(!String::from_utf8_lossy(v.as_bytes()).contains(SECRET));
            }
        }
        got
    }

    /// A GET of `path` on `api.example.test` for an HTTP/2 connection.
    fn h2_get(&self, path: &str) -> Request<Empty<Bytes>> {
        Request::get(format!("https://{}{path}", self.api()))
            .version(Version::HTTP_2)
            .body(Empty::new())
            .unwrap()
    }

    /// keyhole still answers another client, intercepted, on both versions.
    async fn serves_others(&self) {
        let w = &self.world;
        for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
            let req = Request::get(w.url("good.test", "/"))
                .version(if alpn == b"h2" {
                    Version::HTTP_2
                } else {
                    Version::HTTP_11
                })
                .header("authorization", format!("Bearer {PLACEHOLDER}"))
                .empty();
            let tunnel = w.tunnel("good.test").alpn(alpn);
            let (res, _) = tunnel.send(w, req).await.expect("the good upstream");
            assert_eq!(res.status(), 200);
        }
        assert_eq!(
            w.last().header("authorization").as_deref(),
            Some(&*format!("Bearer {SECRET}"))
        );
    }

    /// The script's note that keyhole closed its connection, once there;
    /// fails (with `what` and the notes) after [`SETTLE`] without one.
    async fn closed_note(&self, what: &str) -> String {
        let note = self.script.wait_note("closed", SETTLE).await;
        note.unwrap_or_else(|| panic!("{what}: {:?}", self.script.notes()))
    }

    /// keyhole serves others, and its descriptors come back to the baseline.
    async fn assert_nothing_left_behind(&self, what: &str) {
        let keyhole = &self.world.keyhole;
        self.serves_others().await;
        let deadline = Instant::now() + SETTLE;
        let mut now = open_fds(keyhole);
        while now.len() > self.baseline && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            now = open_fds(keyhole);
        }
        assert!(
            now.len() <= self.baseline,
            "{what}: keyhole holds {} descriptors, {} before: {now:?}\nnotes: {:?}",
            now.len(),
            self.baseline,
            self.script.notes()
        );
        let log = keyhole.log();
        assert!(!log.contains("panicked"), "{what}: {log}");
        assert!(!log.contains(SECRET), "{what}: a secret in the log");
    }
}

/// keyhole's open file descriptors, with what each one is.
fn open_fds(k: &Keyhole) -> Vec<String> {
    let dir = format!("/proc/{}/fd", k.pid());
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    std::fs::read_link(e.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The descriptor count once it has stopped changing for 200 ms.
async fn settled_fds(k: &Keyhole) -> usize {
    let mut last = open_fds(k).len();
    let mut stable = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = open_fds(k).len();
        if now == last {
            stable += 1;
            if stable >= 4 {
                break;
            }
        } else {
            stable = 0;
            last = now;
        }
    }
    last
}

fn proxy_status(res: &http::Response<()>) -> String {
    res.headers()
        .get("proxy-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------
// Upstream faults
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn upstream_reset_mid_body_cuts_the_client_off() {
    let w = world(
        &[],
        on_request(|mut c, _, ctx| async move {
            c.send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\n",
            )
            .await;
            c.send(&[b'x'; 1000]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.reset();
            ctx.note("reset");
        }),
    )
    .await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        // The status line is already out when the body breaks: the client
        // must see an error, never a short body that looks complete.
        let got = w.get(alpn, "/reset").await;
        match got {
            Err(e) => assert!(e.contains("body"), "{alpn:?}: {e}"),
            Ok(got) => panic!("{alpn:?}: a cut body looked complete: {got:?}"),
        }
    }
    w.assert_nothing_left_behind("reset mid-body").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_stalling_before_headers_gets_504() {
    let w = world(
        &["--response-header-timeout", "0.5"],
        on_request(|mut c, _, ctx| async move {
            ctx.note("stalling");
            ctx.note_close(&mut c).await;
        }),
    )
    .await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let start = Instant::now();
        let (res, body) = w.get(alpn, "/stall").await.expect("an answer");
        assert_eq!(res.status(), 504, "{alpn:?}: {body}");
        assert_eq!(
            proxy_status(&res),
            "keyhole; error=http_response_timeout",
            "{alpn:?}"
        );
        assert!(body.contains("--response-header-timeout"), "{body}");
        assert!(start.elapsed() < Duration::from_secs(3), "{alpn:?}");
    }
    // keyhole gave up on the upstream connections too.
    let deadline = Instant::now() + SETTLE;
    while w
        .script
        .notes()
        .iter()
        .filter(|n| *n == "closed by keyhole")
        .count()
        < 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        w.script
            .notes()
            .iter()
            .filter(|n| *n == "closed by keyhole")
            .count(),
        2,
        "{:?}",
        w.script.notes()
    );
    w.assert_nothing_left_behind("stall before headers").await;
}

/// Headers and a little of a long body, then silence until keyhole closes.
async fn stall_after_headers(mut c: Conn, _head: String, ctx: Ctx) {
    c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst chunk\n")
        .await;
    ctx.note("stalling");
    ctx.note_close(&mut c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_stalling_after_headers_is_released_when_the_client_gives_up() {
    let w = world(&[], on_request(stall_after_headers)).await;
    // HTTP/1.1: the client reads the head and a little, then hangs up.
    {
        let auth = format!("Authorization: Bearer {PLACEHOLDER}");
        let mut tls = w.start_request("GET /stall", &[&auth]).await;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        // A trailing byte that could begin a secret would be held back by
        // the scrubber until the next one; a newline cannot.
        while !String::from_utf8_lossy(&got).contains("first chunk\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                .await
                .expect("the head and first bytes")
                .unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }
    assert_eq!(
        w.closed_note("HTTP/1.1").await,
        "closed by keyhole",
        "HTTP/1.1: {:?}",
        w.script.notes()
    );
    w.assert_nothing_left_behind("stall after headers, HTTP/1.1 client gone")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_stalling_after_headers_is_released_when_an_http2_stream_is_reset() {
    let w = world(&[], on_request(stall_after_headers)).await;
    // HTTP/2: the client resets the stream but keeps its connection; keyhole
    // must still let go of the upstream connection.
    let (mut sender, conn) = client::http2(w.open(b"h2").await).await.unwrap();
    let req = w.h2_get("/stall");
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a first frame");
    assert!(first.is_some());
    drop(body); // RST_STREAM(CANCEL)
    assert_eq!(
        w.closed_note("HTTP/2").await,
        "closed by keyhole",
        "HTTP/2: {:?}",
        w.script.notes()
    );
    // The client's connection is still usable.
    let req = w.h2_get("/again");
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("an answer on the same connection")
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
    w.assert_nothing_left_behind("stall after headers, HTTP/2 stream reset")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_answering_garbage_or_nothing_gets_502() {
    let w = world(
        &[],
        on_request(|mut c, head, _| async move {
            // `/nothing` closes without a byte.
            if head.starts_with("GET /nothing") {
                return;
            }
            c.send(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02\xff not http at all\r\n\r\n")
                .await;
            // `/hold` keeps the connection open after the garbage.
            if head.starts_with("GET /hold") {
                let _ = c.wait_for_close().await;
            }
        }),
    )
    .await;
    for path in ["/close", "/hold", "/nothing"] {
        for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
            let (res, body) = w.get(alpn, path).await.expect("an answer");
            assert_eq!(res.status(), 502, "{path} {alpn:?}: {body}");
            let status = proxy_status(&res);
            assert!(
                status.starts_with("keyhole; error=http_protocol_error"),
                "{path} {alpn:?}: {status}"
            );
        }
    }
    // Plain http:// is forwarded by the same client: same answer.
    let mut tcp = TcpStream::connect(w.world.keyhole.addr).await.unwrap();
    let port = w.script.port();
    tcp.write_all(
        format!("GET http://plain.test:{port}/close HTTP/1.1\r\nHost: plain.test:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        out.contains("proxy-status: keyhole; error=http_protocol_error"),
        "{out}"
    );
    drop(tcp);
    w.assert_nothing_left_behind("garbage").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_closing_during_the_tls_handshake_gets_502() {
    // Three ways to break the handshake, chosen by connection number:
    // close at once, close after reading the ClientHello, answer it with
    // bytes that are not TLS.
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = world(&[], move |mut tcp, ctx| {
        let count = count.clone();
        async move {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut hello = vec![0u8; 4096];
            match n % 3 {
                0 => ctx.note("closed at once"),
                1 => {
                    let _ = tokio::time::timeout(SCRIPT_LIMIT, tcp.read(&mut hello)).await;
                    ctx.note("closed after the ClientHello");
                }
                _ => {
                    let _ = tokio::time::timeout(SCRIPT_LIMIT, tcp.read(&mut hello)).await;
                    let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    ctx.note("answered with plain text");
                }
            }
        }
    })
    .await;
    for case in 0..3 {
        let alpn: &[u8] = if case == 1 { b"h2" } else { b"http/1.1" };
        let (res, body) = w.get(alpn, "/handshake").await.expect("an answer");
        assert_eq!(res.status(), 502, "case {case}: {body}");
        let status = proxy_status(&res);
        assert!(
            status.starts_with("keyhole; error=tls_protocol_error"),
            "case {case}: {status} {body}"
        );
        assert!(body.contains("api.example.test"), "{body}");
    }
    w.assert_nothing_left_behind("TLS handshake broken").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_0_upstream_works() {
    let w = world(
        &[],
        on_request(|mut c, head, ctx| async move {
            ctx.note(format!("head {head}"));
            if head.starts_with("GET /length") {
                c.send(b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\nhello with 1.0\n")
                    .await;
            } else {
                // No length: the body ends when the connection does.
                c.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close\n")
                    .await;
            }
            let _ = c.shutdown().await;
        }),
    )
    .await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let (res, body) = w.get(alpn, "/close").await.expect("an answer");
        assert_eq!(
            (res.status().as_u16(), body.as_str()),
            (200, "hello until close\n")
        );
        let (res, body) = w.get(alpn, "/length").await.expect("an answer");
        assert_eq!(
            (res.status().as_u16(), body.as_str()),
            (200, "hello with 1.0\n")
        );
    }
    // The secret was substituted on the way there, as for any upstream.
    let heads = w.script.notes();
    assert!(
        heads
            .iter()
            .any(|n| n.contains(&format!("Bearer {SECRET}"))),
        "{heads:?}"
    );
    w.assert_nothing_left_behind("HTTP/1.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn informational_responses_before_the_final_one_work() {
    let w = world(&[], on_request(|mut c, _, _| async move {
        let answer = format!(
            "HTTP/1.1 100 Continue\r\n\r\n\
             HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nX-Echo: {SECRET}\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\nX-Echo: {SECRET}\r\n\r\nfinal ok\n"
        );
        c.send(answer.as_bytes()).await;
        let _ = c.shutdown().await;
    }))
    .await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let (res, body) = w.get(alpn, "/early").await.expect("an answer");
        assert_eq!(res.status(), 200, "{alpn:?}");
        assert_eq!(body, "final ok\n");
        assert_eq!(res.headers()["x-echo"], PLACEHOLDER, "scrubbed");
    }
    // Raw, to see every byte the client gets: no secret in any 1xx either.
    let mut tls = w.start_request("GET /early", &["Connection: close"]).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("200 OK") && out.contains("final ok\n"),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");
    drop(tls);
    w.assert_nothing_left_behind("1xx").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_relayed_not_followed() {
    // Threat 12: a redirect is the client's business. keyhole relays it
    // (with any secret in it scrubbed) and sends nothing anywhere else.
    let w = world(&[], on_request(|mut c, head, ctx| async move {
        // One request per connection (it says `Connection: close`), so
        // that no pooled connection outlives the test.
        ctx.note(format!("head {}", head.lines().next().unwrap_or("")));
        c.send(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: https://good.test/steal?k={SECRET}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        let _ = c.shutdown().await;
    }))
    .await;
    let good_before = w.world.upstream().received().len();
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let (res, _) = w.get(alpn, "/moved").await.expect("an answer");
        assert_eq!(res.status(), 302, "{alpn:?}");
        assert_eq!(
            res.headers()["location"],
            format!("https://good.test/steal?k={PLACEHOLDER}").as_str(),
            "{alpn:?}"
        );
    }
    let heads: Vec<String> = w
        .script
        .notes()
        .into_iter()
        .filter(|n| n.starts_with("head"))
        .collect();
    assert_eq!(heads.len(), 2, "one request per client request: {heads:?}");
    assert_eq!(
        w.world.upstream().received().len(),
        good_before,
        "the redirect was not followed"
    );
    w.assert_nothing_left_behind("redirect").await;
}

// ---------------------------------------------------------------------
// Client faults
// ---------------------------------------------------------------------

/// Reads a request's head and then its body until keyhole closes.
async fn sink(tcp: TcpStream, ctx: Ctx) {
    let Some(mut c) = ctx.accept(tcp).await else {
        return;
    };
    let start = Instant::now();
    if c.read_head().await.is_none() {
        // keyhole gave up before sending the request: as good.
        ctx.note(format!(
            "closed by keyhole before the head, after {:?}",
            start.elapsed()
        ));
        return;
    }
    ctx.note("receiving");
    match c.wait_for_close().await {
        Some(n) => ctx.note(format!("closed by keyhole after {n} bytes")),
        None => ctx.note("still open"),
    }
}

/// A request body that sends `frames` chunks of 16 KiB, waits a moment
/// (so that the request is well under way upstream), then fails.
struct Failing {
    frames: usize,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl Failing {
    fn new(frames: usize) -> Self {
        Failing {
            frames,
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(300))),
        }
    }
}

impl hyper::body::Body for Failing {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.frames == 0 {
            return match self.pause.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(std::io::Error::other("the client gave up"))))
                }
                Poll::Pending => Poll::Pending,
            };
        }
        self.frames -= 1;
        Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b'u';
            16 * 1024
        ])))))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_mid_upload_leaves_nothing_behind() {
    let w = world(&[], sink).await;
    // HTTP/1.1: a Content-Length body, cut after 256 KiB by closing.
    {
        let mut tls = w
            .start_request("POST /upload", &["Content-Length: 10000000"])
            .await;
        tls.write_all(&vec![b'u'; 256 * 1024]).await.unwrap();
        tls.flush().await.unwrap();
        assert!(w.script.wait_note("receiving", SETTLE).await.is_some());
    }
    let note = w.closed_note("HTTP/1.1").await;
    assert!(note.starts_with("closed by keyhole"), "HTTP/1.1: {note}");
    w.assert_nothing_left_behind("upload cut, HTTP/1.1").await;
    w.script.clear_notes();

    // HTTP/2: the body fails, so the stream is reset; the connection stays.
    let (mut sender, conn) = client::http2(w.open(b"h2").await).await.unwrap();
    let req = Request::post(format!("https://{}/upload", w.api()))
        .version(Version::HTTP_2)
        .body(Failing::new(16))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await;
    assert!(
        !matches!(res, Ok(Ok(ref r)) if r.status().is_success()),
        "a failed upload looked successful"
    );
    assert!(
        w.script.notes().iter().any(|n| n == "receiving"),
        "the upload was under way upstream: {:?}",
        w.script.notes()
    );
    let note = w.closed_note("HTTP/2").await;
    assert!(note.starts_with("closed by keyhole"), "HTTP/2: {note}");
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
    w.assert_nothing_left_behind("upload cut, HTTP/2").await;
}

/// Answers with an endless body until a write fails.
async fn firehose(mut c: Conn, _head: String, ctx: Ctx) {
    c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
        .await;
    ctx.note("sending");
    let chunk = vec![b'd'; 64 * 1024];
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let mut sent = 0usize;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), c.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => {
                ctx.note(format!("closed by keyhole after {sent} bytes"));
                return;
            }
            // Blocked: keyhole stopped reading. Fine as long as it closes.
            Err(_) => {}
        }
    }
    ctx.note(format!("still open after {sent} bytes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_mid_download_leaves_nothing_behind() {
    let w = world(&[], on_request(firehose)).await;
    // HTTP/1.1: read 1 MiB, then hang up.
    {
        let mut tls = w.start_request("GET /download", &[]).await;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        while total < 1024 * 1024 {
            let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                .await
                .expect("data")
                .unwrap();
            assert!(n > 0);
            total += n;
        }
    }
    w.closed_note("HTTP/1.1").await;
    w.assert_nothing_left_behind("download cut, HTTP/1.1").await;
    w.script.clear_notes();

    // HTTP/2: read 1 MiB, then reset the stream and keep the connection.
    let (mut sender, conn) = client::http2(w.open(b"h2").await).await.unwrap();
    let req = w.h2_get("/download");
    let res = sender.send_request(req).await.unwrap();
    let mut body = res.into_body();
    let mut total = 0;
    while total < 1024 * 1024 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("data")
            .expect("more")
            .unwrap();
        total += frame.data_ref().map_or(0, |d| d.len());
    }
    drop(body);
    w.closed_note("HTTP/2").await;
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
    w.assert_nothing_left_behind("download cut, HTTP/2").await;
}

// ---------------------------------------------------------------------
// Byte-for-byte tunnels (no credential applies to tunnel.test)
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_upstream_reset_closes_the_client() {
    let w = world(&[], |tcp, ctx| async move {
        let mut c = Conn::Plain(tcp);
        c.send(b"some bytes").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.reset();
        ctx.note("reset");
    })
    .await;
    let mut tcp = w.tunnel().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the client was not closed");
    assert!(out.starts_with(b"some bytes"));
    drop(tcp);
    w.assert_nothing_left_behind("tunnel upstream reset").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_whose_client_left_is_released_by_the_idle_timeout() {
    // The client sends a little and closes; the upstream reads to the end
    // and then keeps its side open, silent, as a hostile or sloppy server
    // may. keyhole cannot tell a closed client from one that only shut
    // down its sending side (and still reads, which is legal TCP), so the
    // upstream-to-client half stays open until the idle timeout closes it.
    // Today the idle timer watches the client side only, and once that
    // side's read has ended nothing polls it again.
    let w = world(&["--idle-timeout", "0.5"], |tcp, ctx| async move {
        let mut c = Conn::Plain(tcp);
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(SCRIPT_LIMIT, c.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
        ctx.note("eof");
        tokio::time::sleep(SCRIPT_LIMIT).await;
        drop(c);
    })
    .await;
    let mut tcp = w.tunnel().await;
    tcp.write_all(b"hello").await.unwrap();
    drop(tcp);
    assert!(w.script.wait_note("eof", SETTLE).await.is_some());
    w.assert_nothing_left_behind("tunnel client gone").await;
}
