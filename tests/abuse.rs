//! Protocol abuse through real sockets: raw bytes written to keyhole's
//! listener, or inside an intercepted TLS tunnel, each refused with the
//! status RFC 9112 calls for, and never anything forwarded upstream.
//!
//! Covered elsewhere, not repeated here: a CONNECT to keyhole's own
//! listener (`tests/destination.rs::a_connect_to_keyhole_itself_is_a_loop`)
//! and an HTTP/2 stream whose `:authority` differs from the tunnel's host
//! (`tests/proxy.rs::fronting_is_refused_both_ways`).

mod support;

use std::time::Duration;

use support::client::{self, NoBody};
use support::config::{Config, Credential};
use support::upstream::Alpn;
use support::world::World;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const SECRET: &str = "sek_abuse_31f0c9d2";
const PLACEHOLDER: &str = "kh_pinned_abuse_0123456789";
/// Longest wait for one answer from keyhole.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// keyhole between a recording TLS upstream (`api.example.test`,
/// `other.test`, intercepted) and a recording plain one (`plain.test`).
async fn world() -> World {
    let config = Config::new()
        .egress(&["api.example.test", "other.test", "plain.test"])
        .credential(
            Credential::new("vcrd_api")
                .secret("API_TOKEN", SECRET)
                .placeholder(PLACEHOLDER)
                .allowed_hosts(&["api.example.test"]),
        );
    World::builder()
        .config(config)
        .names(&["api.example.test", "other.test"])
        .alpn(Alpn::H1)
        .plain(&["plain.test"])
        .start()
        .await
}

/// `api.example.test:PORT`, the intercepted authority.
fn api(w: &World) -> String {
    w.authority("api.example.test")
}

/// `plain.test:PORT`, the plain upstream's authority.
fn plain_authority(w: &World) -> String {
    format!("plain.test:{}", w.plain().port())
}

/// An intercepted HTTP/1.1 tunnel to `api.example.test`, wrapped for
/// line reading.
async fn tunnel(w: &World) -> BufReader<TlsStream<TcpStream>> {
    let tls = w.tunnel("api.example.test").open(w).await;
    BufReader::new(tls.expect("intercepted tunnel"))
}

/// A plain TCP connection to keyhole's listener, wrapped for line reading.
async fn listener(w: &World) -> BufReader<TcpStream> {
    let tcp = TcpStream::connect(w.keyhole.addr).await;
    BufReader::new(tcp.expect("connect to keyhole"))
}

/// Nothing reached either upstream: no connection, no request.
fn assert_nothing_forwarded(w: &World, what: &str) {
    let (tls, plain) = (w.upstream(), w.plain());
    assert!(
        tls.received().is_empty() && plain.received().is_empty(),
        "{what}: a request reached the upstream: {:?} {:?}",
        tls.received(),
        plain.received()
    );
    assert_eq!(
        (tls.connections(), plain.connections()),
        (0, 0),
        "{what}: keyhole connected to an upstream"
    );
}

/// One response as read off the wire.
struct Answer {
    status: u16,
    /// Status line and headers, as text, one per line.
    head: String,
    body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} + body {:?}", self.head, self.body_text())
    }
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response is keyhole's own, with an RFC 9209 `Proxy-Status`.
    fn assert_keyhole(&self, error: &str) {
        let status = self.header("proxy-status").unwrap_or_default();
        assert!(
            status.starts_with(&format!("keyhole; error={error}")),
            "want Proxy-Status error={error}: {self:?}"
        );
    }
}

/// Reads one HTTP/1.1 response (1xx included as its own answer), framed by
/// `Content-Length`, chunked encoding, or the end of the connection.
async fn read_answer<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Answer, String> {
    tokio::time::timeout(ANSWER_TIMEOUT, read_answer_inner(r))
        .await
        .map_err(|_| "no answer within the time limit".to_owned())?
}

async fn read_answer_inner<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Answer, String> {
    let mut head = String::new();
    for _ in 0..200 {
        let mut line = Vec::new();
        let n = r
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection closed; got {head:?}"));
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(line.trim_end());
        head.push('\n');
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    let mut answer = Answer {
        status,
        head,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(answer);
    }
    let chunked = answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        for _ in 0..100_000 {
            let mut size = String::new();
            r.read_line(&mut size).await.map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            if size == 0 {
                let mut end = String::new();
                r.read_line(&mut end).await.map_err(|e| e.to_string())?;
                return Ok(answer);
            }
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).await.map_err(|e| e.to_string())?;
            answer.body.extend_from_slice(&chunk[..size]);
        }
        return Err("too many chunks".into());
    }
    if let Some(len) = answer.header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad length {len:?}"))?;
        answer.body = vec![0u8; len];
        r.read_exact(&mut answer.body)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(answer);
    }
    r.read_to_end(&mut answer.body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

/// Writes `bytes` in one write and reads one answer.
///
/// keyhole may answer a head past its limits and close before it has read
/// all of it, and the write then fails (broken pipe) with the answer
/// already here: it is read all the same, and the write's error only
/// reported if no answer comes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    bytes: &[u8],
) -> Result<Answer, String> {
    let written = match s.get_mut().write_all(bytes).await {
        Ok(()) => s.get_mut().flush().await,
        Err(e) => Err(e),
    };
    read_answer(s).await.map_err(|e| match written {
        Err(w) => format!("writing: {w}; reading: {e}"),
        Ok(()) => e,
    })
}

/// Writes `request` on a new connection on `way` and reads one answer.
async fn ask(w: &World, way: Way, request: &str) -> Answer {
    let answer = match way {
        Way::Tunnel => exchange(&mut tunnel(w).await, request.as_bytes()).await,
        Way::Listener => exchange(&mut listener(w).await, request.as_bytes()).await,
    };
    answer.unwrap_or_else(|e| panic!("{way:?} {request:?}: {e}"))
}

/// Which side of keyhole a raw request is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Inside an intercepted TLS tunnel to `api.example.test`.
    Tunnel,
    /// keyhole's listener, in plain TCP.
    Listener,
}

/// Writes `bytes` in one write on a new connection; returns the answer and
/// whether keyhole then closed the connection (after a malformed message
/// it must: nothing may be smuggled after it).
async fn one_shot(w: &World, way: Way, bytes: &[u8]) -> Result<(Answer, bool), String> {
    match way {
        Way::Tunnel => one_shot_on(tunnel(w).await, bytes).await,
        Way::Listener => one_shot_on(listener(w).await, bytes).await,
    }
}

async fn one_shot_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: BufReader<S>,
    bytes: &[u8],
) -> Result<(Answer, bool), String> {
    let answer = exchange(&mut s, bytes).await?;
    let mut rest = Vec::new();
    let closed = match tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await
    {
        Ok(_) => rest.is_empty(),
        Err(_) => false,
    };
    Ok((answer, closed))
}

/// A request in origin form for the tunnel (`Host: api`) and in absolute
/// form for the plain listener (`http://plain.test`), with `lines` (each
/// ending in CRLF) after `Host` and `body` after the head.
fn both_forms(w: &World, method: &str, lines: &[u8], body: &[u8]) -> [(Way, Vec<u8>); 2] {
    let tunnel = [
        format!(
            "{method} /abuse HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n",
            api(w)
        )
        .as_bytes(),
        lines,
        b"\r\n",
        body,
    ]
    .concat();
    let plain = [
        format!(
            "{method} http://{0}/abuse HTTP/1.1\r\nHost: {0}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n",
            plain_authority(w)
        )
        .as_bytes(),
        lines,
        b"\r\n",
        body,
    ]
    .concat();
    [(Way::Tunnel, tunnel), (Way::Listener, plain)]
}

/// Sends each case both inside an intercepted tunnel and to the plain
/// listener, expecting `status` and a closed connection, and nothing
/// forwarded.
async fn refused_both_ways(cases: &[(&str, &[u8], &[u8])], status: u16) {
    let w = world().await;
    for (name, lines, body) in cases {
        for (way, bytes) in both_forms(&w, "POST", lines, body) {
            let what = format!("{name} ({way:?})");
            let (answer, closed) = one_shot(&w, way, &bytes)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(answer.status, status, "{what}: {answer:?}");
            assert!(
                closed,
                "{what}: the connection stayed open after a malformed message"
            );
            assert_nothing_forwarded(&w, &what);
        }
    }
    assert!(!w.keyhole.log().contains(SECRET));
}

/// A request carrying both `Content-Length` and `Transfer-Encoding: chunked`.
const CL_TE: [(&str, &[u8], &[u8]); 2] = [
    (
        "CL then TE",
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "TE then CL",
        b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_is_refused() {
    // RFC 9112 6.3: both together "ought to be handled as an error" (a
    // proxy that forwards must first drop Content-Length). Issue 7 asks
    // keyhole to refuse.
    refused_both_ways(&CL_TE, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_never_reaches_the_upstream_with_both() {
    // Whatever keyhole answers, the upstream never sees two framings: the
    // body is decoded as chunked (the Transfer-Encoding wins) and keyhole
    // re-frames it itself, so client and upstream cannot disagree on where
    // the request ends. The client's connection is closed afterwards.
    let w = world().await;
    for (name, lines, body) in CL_TE {
        for (way, bytes) in both_forms(&w, "POST", lines, body) {
            let what = format!("{name} ({way:?})");
            w.upstream().clear();
            w.plain().clear();
            let (a, closed) = one_shot(&w, way, &bytes)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(closed, "{what}: the connection stayed open: {a:?}");
            let upstream = if way == Way::Tunnel {
                w.upstream()
            } else {
                w.plain()
            };
            for r in upstream.received() {
                let framings = r
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "content-length" || n == "transfer-encoding")
                    .count();
                assert!(framings <= 1, "{what}: {:?}", r.headers);
                assert_eq!(r.body, b"hello", "{what}");
            }
            if a.status == 200 {
                assert_eq!(upstream.received().len(), 1, "{what}");
            } else {
                assert_eq!(a.status, 400, "{what}: {a:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_encoding_not_ending_in_chunked_is_refused() {
    // RFC 9112 6.3: a request whose final coding is not chunked: 400.
    refused_both_ways(
        &[
            ("TE gzip", b"Transfer-Encoding: gzip\r\n", b"xxxx"),
            (
                "TE chunked, gzip",
                b"Transfer-Encoding: chunked, gzip\r\n",
                b"0\r\n\r\n",
            ),
        ],
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_differing_content_length_is_refused() {
    refused_both_ways(
        &[
            (
                "two headers",
                b"Content-Length: 4\r\nContent-Length: 5\r\n",
                b"hello",
            ),
            ("one list", b"Content-Length: 4, 5\r\n", b"hello"),
        ],
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_content_length_is_refused() {
    refused_both_ways(
        &[
            ("letters", b"Content-Length: abc\r\n", b"abc"),
            ("negative", b"Content-Length: -1\r\n", b""),
            ("plus sign", b"Content-Length: +4\r\n", b"abcd"),
            ("hex", b"Content-Length: 0x4\r\n", b"abcd"),
            (
                "overflow",
                b"Content-Length: 99999999999999999999999\r\n",
                b"",
            ),
            ("inner space", b"Content-Length: 1 2\r\n", b""),
        ],
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn obsolete_line_folding_is_refused() {
    // RFC 9112 5.2: a server not inside a message/http body must reject obs-fold.
    refused_both_ways(
        &[
            ("space fold", b"X-Folded: first\r\n second\r\n", b""),
            ("tab fold", b"X-Folded: first\r\n\tsecond\r\n", b""),
            (
                "a fold carrying a host",
                b"X-Before: 1\r\n other.test\r\n",
                b"",
            ),
        ],
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_header_bytes_are_refused() {
    refused_both_ways(
        &[
            ("NUL in a value", b"X-Bad: a\0b\r\n", b""),
            ("bare CR in a value", b"X-Bad: a\rb\r\n", b""),
            ("space before the colon", b"X-Bad : a\r\n", b""),
            ("NUL in a name", b"X-B\0ad: a\r\n", b""),
            ("no colon", b"X-Bad a\r\n", b""),
        ],
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_connect_inside_a_tunnel_is_refused() {
    let w = world().await;
    let port = w.upstream().port();
    // HTTP/1.1: to the tunnel's own host, 405; to another host the host
    // check answers first, 421.
    for (target, want) in [(api(&w), 405), (format!("other.test:{port}"), 421)] {
        let a = ask(
            &w,
            Way::Tunnel,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        )
        .await;
        assert_eq!(a.status, want, "{target}: {a:?}");
        a.assert_keyhole("http_request_denied");
    }
    // HTTP/2: a CONNECT stream inside the intercepted connection.
    let tls = w.tunnel("api.example.test").h2().open(&w).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let req = http::Request::connect(api(&w))
        .version(http::Version::HTTP_2)
        .empty();
    let (res, _) = client::send(tls, req).await.unwrap();
    assert_eq!(res.status(), 405);
    assert_nothing_forwarded(&w, "nested CONNECT");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_upgrade_inside_a_tunnel_is_refused() {
    let w = world().await;
    let mut s = tunnel(&w).await;
    let a = exchange(
        &mut s,
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
            api(&w)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 400, "{a:?}");
    a.assert_keyhole("http_request_denied");
    // An upgrade named without `Connection: upgrade` is refused too.
    let a = exchange(
        &mut s,
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: h2c\r\n\r\n",
            api(&w)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 400, "{a:?}");
    assert_nothing_forwarded(&w, "h2c upgrade");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http2_preface_on_an_http1_connection_is_refused() {
    // HTTP/2 with prior knowledge where HTTP/1.1 was negotiated (inside the
    // tunnel) or on the HTTP/1.1 listener: hyper drops the connection.
    let w = world().await;
    for way in [Way::Tunnel, Way::Listener] {
        match one_shot(&w, way, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await {
            Ok((a, closed)) => {
                assert!([400, 505].contains(&a.status), "{way:?}: {a:?}");
                assert!(closed, "{way:?}: the connection stayed open");
            }
            Err(e) => assert!(!e.contains("time limit"), "{way:?}: {e}"),
        }
    }
    assert_nothing_forwarded(&w, "h2 preface");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_in_a_tunnel_are_each_checked() {
    let w = world().await;
    let port = w.upstream().port();
    let mut s = tunnel(&w).await;
    // Three requests in one write: the allowed host, another host, the
    // allowed host again.
    let pipelined = format!(
        "GET /first HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n\
         GET /second HTTP/1.1\r\nHost: other.test:{port}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n\
         GET /third HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
        api = api(&w)
    );
    let first = exchange(&mut s, pipelined.as_bytes()).await.unwrap();
    let second = read_answer(&mut s).await.unwrap();
    let third = read_answer(&mut s).await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(second.status, 421, "{second:?}");
    second.assert_keyhole("http_request_denied");
    assert_eq!(third.status, 200, "{third:?}");
    let received = w.upstream().received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/first", "/third"],
        "only the checked requests went out"
    );
    for r in &received {
        assert_eq!(r.authority, api(&w));
        assert_eq!(
            r.header("authorization").as_deref(),
            Some(&*format!("Bearer {SECRET}"))
        );
    }
    // The secret reflected in the answers was scrubbed.
    for a in [&first, &third] {
        assert!(!a.body_text().contains(SECRET), "{a:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cannot_smuggle_a_second_request() {
    // A request whose body (by Content-Length) looks like another request:
    // it is a body, forwarded as one, and the "inner" request never runs.
    let w = world().await;
    let port = w.upstream().port();
    let inner = format!("GET /smuggled HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n");
    let outer = format!(
        "POST /echo-body HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{inner}",
        api(&w),
        inner.len()
    );
    let a = ask(&w, Way::Tunnel, &outer).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body_text(), inner);
    let received = w.upstream().received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path, "/echo-body");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_on_the_listener_are_each_checked() {
    let w = world().await;
    let pipelined = format!(
        "GET http://{p}/one HTTP/1.1\r\nHost: {p}\r\n\r\n\
         GET http://denied.test/two HTTP/1.1\r\nHost: denied.test\r\n\r\n\
         GET http://{p}/three HTTP/1.1\r\nHost: {p}\r\n\r\n",
        p = plain_authority(&w)
    );
    let mut s = listener(&w).await;
    let one = exchange(&mut s, pipelined.as_bytes()).await.unwrap();
    let two = read_answer(&mut s).await.unwrap();
    let three = read_answer(&mut s).await.unwrap();
    assert_eq!((one.status, two.status, three.status), (200, 403, 200));
    two.assert_keyhole("http_request_denied");
    let paths: Vec<String> = w.plain().received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/one", "/three"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn absurd_ports_are_refused() {
    let w = world().await;
    for port in [
        "0", "65536", "99999999", "-1", "+443", "", "443 ", "0x1bb", "00000443",
    ] {
        let authority = format!("api.example.test:{port}");
        let res = client::connect(w.keyhole.addr, &authority).await;
        let res = match res {
            Ok(_) => panic!("CONNECT {authority:?} was accepted"),
            Err(e) => e,
        };
        assert!(res.starts_with("HTTP/1.1 400"), "{authority:?}: {res}");
    }
    // The same ports in a request's Host inside a tunnel, and in an
    // absolute-form http:// URL on the listener.
    for port in ["0", "65536", "99999999"] {
        let a = ask(
            &w,
            Way::Tunnel,
            &format!("GET / HTTP/1.1\r\nHost: api.example.test:{port}\r\n\r\n"),
        )
        .await;
        assert!([400, 421].contains(&a.status), "Host port {port}: {a:?}");
        let a = ask(
            &w,
            Way::Listener,
            &format!("GET http://plain.test:{port}/ HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n"),
        )
        .await;
        assert_eq!(a.status, 400, "http:// port {port}: {a:?}");
    }
    assert_nothing_forwarded(&w, "absurd ports");
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_https_on_the_listener_is_refused() {
    let w = world().await;
    let a = ask(
        &w,
        Way::Listener,
        &format!(
            "GET https://{0}/ HTTP/1.1\r\nHost: {0}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
            api(&w)
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    a.assert_keyhole("http_request_error");
    assert!(a.body_text().contains("CONNECT"), "{a:?}");
    assert_nothing_forwarded(&w, "https:// absolute form");
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_form_requests_to_the_listener_are_refused() {
    let w = world().await;
    for request in [
        format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", plain_authority(&w)),
        format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", w.keyhole.addr),
        "OPTIONS * HTTP/1.1\r\nHost: plain.test\r\n\r\n".to_owned(),
    ] {
        let a = ask(&w, Way::Listener, &request).await;
        assert_eq!(a.status, 400, "{request:?}: {a:?}");
        a.assert_keyhole("http_request_error");
    }
    assert_nothing_forwarded(&w, "origin form");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_schemes_on_the_listener_are_refused() {
    let w = world().await;
    for url in [
        "ftp://plain.test/x",
        "ws://plain.test/x",
        "file:///etc/passwd",
    ] {
        let a = ask(
            &w,
            Way::Listener,
            &format!("GET {url} HTTP/1.1\r\nHost: plain.test\r\n\r\n"),
        )
        .await;
        assert_eq!(a.status, 400, "{url}: {a:?}");
    }
    assert_nothing_forwarded(&w, "other schemes");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_headers_are_refused() {
    // keyhole's --max-header-bytes (64 KiB by default) and hyper's 100
    // headers: past them hyper answers 431 itself (RFC 6585); a long URI
    // gets 414, or 431 when the head outgrows the buffer first.
    let w = world().await;
    let big = format!("X-Big: {}\r\n", "a".repeat(1024 * 1024));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (name, lines) in [
        ("one 1 MiB header", big.as_bytes()),
        ("200 headers", many.as_bytes()),
    ] {
        for (way, bytes) in both_forms(&w, "GET", lines, b"") {
            let (a, closed) = one_shot(&w, way, &bytes)
                .await
                .unwrap_or_else(|e| panic!("{name} ({way:?}): {e}"));
            assert_eq!(a.status, 431, "{name} ({way:?}): {a:?}");
            assert!(closed, "{name} ({way:?}) left the connection open");
        }
    }
    let long_uri = format!("/{}", "u".repeat(100_000));
    for (way, bytes) in [
        (
            Way::Tunnel,
            format!("GET {long_uri} HTTP/1.1\r\nHost: {}\r\n\r\n", api(&w)),
        ),
        (
            Way::Listener,
            format!(
                "GET http://{0}{long_uri} HTTP/1.1\r\nHost: {0}\r\n\r\n",
                plain_authority(&w)
            ),
        ),
    ] {
        let (a, closed) = one_shot(&w, way, bytes.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("long URI ({way:?}): {e}"));
        assert!([414, 431].contains(&a.status), "long URI ({way:?}): {a:?}");
        assert!(closed, "long URI ({way:?}) left the connection open");
    }
    assert_nothing_forwarded(&w, "huge headers");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_a_proxy_status() {
    let w = world().await;
    let big = format!("X-Big: {}\r\n", "a".repeat(1024 * 1024));
    for (lines, body) in [
        (
            &b"Content-Length: 4\r\nContent-Length: 5\r\n"[..],
            &b"hello"[..],
        ),
        (b"X-Folded: first\r\n second\r\n", b""),
        (big.as_bytes(), b""),
    ] {
        for (way, bytes) in both_forms(&w, "POST", lines, body) {
            let (a, _) = one_shot(&w, way, &bytes).await.unwrap();
            assert!(a.status >= 400, "{way:?}: {a:?}");
            a.assert_keyhole("http_request_error");
            assert!(!a.body.is_empty(), "{way:?}: {a:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn placeholders_in_the_request_target_pass_unchanged() {
    // Threat 8: only header values are substituted. A placeholder in the
    // path or query reaches the upstream as it was; one in userinfo makes
    // the target unusable and nothing is forwarded.
    let w = world().await;
    let target = format!("/p/{PLACEHOLDER}/x?token={PLACEHOLDER}&b={PLACEHOLDER}");
    let a = ask(
        &w,
        Way::Tunnel,
        &format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nX-Key: {PLACEHOLDER}\r\n\r\n",
            api(&w)
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let rec = w.upstream().received().pop().expect("forwarded");
    assert_eq!(rec.path, target, "the target is passed as it was");
    assert_eq!(
        rec.header("x-key").as_deref(),
        Some(SECRET),
        "the credential applies here"
    );
    let before = w.upstream().received().len();
    // Userinfo, inside the tunnel and on the listener.
    let a = ask(
        &w,
        Way::Tunnel,
        &format!(
            "GET https://u:{PLACEHOLDER}@{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n",
            api(&w)
        ),
    )
    .await;
    assert!([400, 421].contains(&a.status), "{a:?}");
    let a = ask(
        &w,
        Way::Listener,
        &format!(
            "GET http://u:{PLACEHOLDER}@{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n",
            plain_authority(&w)
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(w.upstream().received().len(), before);
    assert!(w.plain().received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_or_conflicting_host_inside_a_tunnel_is_refused() {
    // Threat 1 through the back door: two Host headers, or an absolute
    // URI naming one host and Host another.
    let w = world().await;
    let port = w.upstream().port();
    for (request, want) in [
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nHost: other.test:{port}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
                api(&w)
            ),
            400,
        ),
        (
            format!(
                "GET https://other.test:{port}/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
                api(&w)
            ),
            421,
        ),
        (
            format!(
                "GET https://{}/ HTTP/1.1\r\nHost: other.test:{port}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
                api(&w)
            ),
            421,
        ),
    ] {
        let a = ask(&w, Way::Tunnel, &request).await;
        assert_eq!(a.status, want, "{request:?}: {a:?}");
        assert!(
            a.header("proxy-status")
                .is_some_and(|v| v.starts_with("keyhole; error=")),
            "{a:?}"
        );
    }
    assert_nothing_forwarded(&w, "conflicting hosts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placeholder_split_across_tcp_segments_is_substituted() {
    // Threat 9: the request head arrives a few bytes per TLS record (and
    // TCP segment), cutting the placeholder; keyhole reads the whole head
    // before it decides.
    let w = world().await;
    let request = format!(
        "GET /split HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
        api(&w)
    );
    let mut s = tunnel(&w).await;
    for piece in request.as_bytes().chunks(5) {
        s.get_mut().write_all(piece).await.unwrap();
        s.get_mut().flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let a = read_answer(&mut s).await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    let rec = w.upstream().received().pop().expect("forwarded");
    assert_eq!(
        rec.header("authorization").as_deref(),
        Some(&*format!("Bearer {SECRET}"))
    );
    assert!(!a.body_text().contains(SECRET), "scrubbed: {a:?}");
}
