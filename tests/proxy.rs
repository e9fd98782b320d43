//! The proxy through real sockets: keyhole's binary, curl and a Rust
//! client, against TLS upstreams certified by a test CA, all on 127.0.0.1.

mod support;

use bytes::Bytes;
use http::{Request, Version};
use support::client::{self, NoBody, Tunnel};
use support::config::{Config, Credential, Injection};
use support::upstream::{Alpn, Chunks};
use support::world::{World, WorldBuilder};

const API_SECRET: &str = "sek_api_9c1d7e33";
const WILD_SECRET: &str = "sek_wild_4b2a9f11";
const IP_SECRET: &str = "sek_ip_77aa01de";
const OTHER_SECRET: &str = "sek_other_5e5e0c";
const SECRETS: [&str; 4] = [API_SECRET, WILD_SECRET, IP_SECRET, OTHER_SECRET];
const API_PLACEHOLDER: &str = "kh_pinned_api_0123456789";

/// Every name the test upstream's certificate covers.
const NAMES: [&str; 8] = [
    "api.example.test",
    "x.wild.example.test",
    "a.b.wild.example.test",
    "wild.example.test",
    "other.test",
    "evil.test",
    "tunnel.test",
    "127.0.0.1",
];

/// Egress to every name of [`NAMES`] (the wildcard covering both
/// `wild` subdomains); four credentials, each on one host entry: an exact
/// name (with a pinned placeholder), a wildcard (headers and bodies), an
/// IP address, and another exact name.
fn config() -> Config {
    Config::new()
        .egress(&[
            "api.example.test",
            "*.wild.example.test",
            "wild.example.test",
            "other.test",
            "evil.test",
            "tunnel.test",
            "127.0.0.1",
        ])
        .credential(
            Credential::new("vcrd_api")
                .secret("API_TOKEN", API_SECRET)
                .placeholder(API_PLACEHOLDER)
                .allowed_hosts(&["api.example.test"]),
        )
        .credential(
            Credential::new("vcrd_wild")
                .secret("WILD_TOKEN", WILD_SECRET)
                .allowed_hosts(&["*.wild.example.test"])
                .injection(Injection::HeaderAndBody),
        )
        .credential(
            Credential::new("vcrd_ip")
                .secret("IP_TOKEN", IP_SECRET)
                .allowed_hosts(&["127.0.0.1"]),
        )
        .credential(
            Credential::new("vcrd_other")
                .secret("OTHER_TOKEN", OTHER_SECRET)
                .allowed_hosts(&["other.test"]),
        )
}

/// `Bearer TOKEN`, an Authorization value.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// keyhole on [`config`] in front of one TLS upstream for every name in
/// [`NAMES`], offering `alpn`.
fn world(alpn: Alpn) -> WorldBuilder {
    World::builder().config(config()).names(&NAMES).alpn(alpn)
}

#[tokio::test(flavor = "multi_thread")]
async fn env_and_run_agree_on_placeholders() {
    let w = world(Alpn::Both).start().await;
    assert_eq!(w.placeholder("API_TOKEN"), API_PLACEHOLDER);
    for name in ["WILD_TOKEN", "IP_TOKEN", "OTHER_TOKEN"] {
        let p = w.placeholder(name);
        assert!(
            p.len() >= 24 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{p}"
        );
    }
    assert_eq!(w.env()["HTTPS_PROXY"], w.keyhole.url());
    assert_eq!(w.env()["NODE_USE_ENV_PROXY"], "1");
    let bundle = std::fs::read_to_string(&w.env()["SSL_CERT_FILE"]).unwrap();
    assert!(
        bundle.starts_with(&w.keyhole.ca_pem()),
        "the bundle starts with keyhole's CA"
    );
    // A second `env` gives the same placeholders.
    assert_eq!(&w.keyhole.env(), w.env());
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_host_gets_its_secret_in_a_header() {
    let w = world(Alpn::Both).start().await;
    let auth = format!("Authorization: Bearer {API_PLACEHOLDER}");
    let body = w
        .curl_ok(&["-H", &auth, &w.url("api.example.test", "/user?q=1")])
        .await;
    let rec = w.last();
    assert_eq!(rec.header("authorization"), Some(bearer(API_SECRET)));
    assert_eq!(rec.authority, w.authority("api.example.test"));
    assert!(
        body.contains(API_SECRET) || body.contains("authorization"),
        "reflected: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_matches_subdomains_at_any_depth_but_not_the_bare_domain() {
    let w = world(Alpn::Both).start().await;
    let ph = w.placeholder("WILD_TOKEN").to_owned();
    let header = format!("X-Api-Key: {ph}");
    for host in [
        "x.wild.example.test",
        "a.b.wild.example.test",
        "X.WILD.Example.TEST",
    ] {
        w.curl_ok(&["-H", &header, &w.url(host, "/")]).await;
        assert_eq!(
            w.last().header("x-api-key").as_deref(),
            Some(WILD_SECRET),
            "{host}"
        );
    }
    // The bare domain: no credential applies, so keyhole tunnels and the
    // placeholder arrives as it was sent.
    w.curl_ok(&["-H", &header, &w.url("wild.example.test", "/")])
        .await;
    assert_eq!(w.last().header("x-api-key").as_deref(), Some(&*ph));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placeholder_only_becomes_its_own_secret() {
    let w = world(Alpn::Both).start().await;
    let wild = w.placeholder("WILD_TOKEN").to_owned();
    let other = w.placeholder("OTHER_TOKEN").to_owned();
    // On other.test: OTHER's placeholder is replaced, WILD's and API's pass unchanged.
    w.curl_ok(&[
        "-H",
        &format!("X-A: {API_PLACEHOLDER}"),
        "-H",
        &format!("X-B: {wild}"),
        "-H",
        &format!("X-C: {other}"),
        "-H",
        &format!("X-{other}: name"),
        &w.url("other.test", "/"),
    ])
    .await;
    let rec = w.last();
    assert_eq!(rec.header("x-a").as_deref(), Some(API_PLACEHOLDER));
    assert_eq!(rec.header("x-b").as_deref(), Some(&*wild));
    assert_eq!(rec.header("x-c").as_deref(), Some(OTHER_SECRET));
    assert_eq!(
        rec.header(&format!("x-{other}")).as_deref(),
        Some("name"),
        "names are never substituted"
    );
    for s in [API_SECRET, WILD_SECRET, IP_SECRET] {
        assert!(!rec.all_text().contains(s));
    }
    w.keyhole.wait_log("placeholder passed unsubstituted");
    let mut w = w;
    tokio::task::block_in_place(|| w.keyhole.terminate());
    let log = w.keyhole.log();
    assert!(
        log.contains("substituted=1") && log.contains("passed_unsubstituted=3"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_payload_is_substituted() {
    let w = world(Alpn::Both).start().await;
    let user = format!("x-access-token:{API_PLACEHOLDER}");
    w.curl_ok(&[
        "-u",
        &user,
        &w.url("api.example.test", "/repo.git/info/refs"),
    ])
    .await;
    use base64::Engine;
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{API_SECRET}"));
    assert_eq!(
        w.last().header("authorization").as_deref(),
        Some(&*format!("Basic {want}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_on_both_legs() {
    let w = world(Alpn::H2).start().await;
    let auth = format!("Authorization: Bearer {API_PLACEHOLDER}");
    w.curl_ok(&[
        "--http2",
        "-w",
        "%{http_version}",
        "-o",
        "/dev/null",
        "-H",
        &auth,
        &w.url("api.example.test", "/"),
    ])
    .await;
    let rec = w.last();
    assert_eq!(rec.version, Version::HTTP_2, "upstream leg");
    assert_eq!(rec.header("authorization"), Some(bearer(API_SECRET)));
    // Client leg: the Rust client negotiates h2 with keyhole.
    let tls = w.tunnel("api.example.test").h2().open(&w).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let req = Request::get(w.url("api.example.test", "/h2"))
        .version(Version::HTTP_2)
        .header("authorization", format!("Bearer {API_PLACEHOLDER}"))
        .empty();
    let (res, _) = client::send(tls, req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(w.last().header("authorization"), Some(bearer(API_SECRET)));
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_upstream_behind_an_http2_client() {
    let w = world(Alpn::H1).start().await;
    let auth = format!("Authorization: Bearer {API_PLACEHOLDER}");
    w.curl_ok(&["--http2", "-H", &auth, &w.url("api.example.test", "/")])
        .await;
    let rec = w.last();
    assert_eq!(rec.version, Version::HTTP_11);
    assert_eq!(rec.header("authorization"), Some(bearer(API_SECRET)));
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv4_target_gets_an_ip_certificate_and_its_secret() {
    let w = world(Alpn::Both).start().await;
    let ph = w.placeholder("IP_TOKEN").to_owned();
    w.curl_ok(&["-H", &format!("X-Key: {ph}"), &w.url("127.0.0.1", "/ip")])
        .await;
    assert_eq!(w.last().header("x-key").as_deref(), Some(IP_SECRET));
    // Another spelling of the same address goes to the same place.
    let req = Request::get("/ip2")
        .header("host", w.authority("127.0.0.1"))
        .header("x-key", &ph)
        .empty();
    let (res, _) = Tunnel::to(format!("2130706433:{}", w.upstream().port()))
        .no_sni("127.0.0.1")
        .send(&w, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(w.last().header("x-key").as_deref(), Some(IP_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn fronting_is_refused_both_ways() {
    let w = world(Alpn::Both).start().await;
    let port = w.upstream().port();
    let before = w.upstream().received().len();
    // CONNECT to the allowed host, Host naming another: 421, nothing forwarded.
    let req = Request::get("/")
        .header("host", format!("evil.test:{port}"))
        .header("authorization", API_PLACEHOLDER)
        .empty();
    let (res, body) = w.tunnel("api.example.test").send(&w, req).await.unwrap();
    assert_eq!(res.status(), 421);
    assert!(res.headers()["proxy-status"]
        .to_str()
        .unwrap()
        .starts_with("keyhole; error=http_request_denied"));
    assert!(body.contains("open a new tunnel"), "{body}");
    // Same over HTTP/2 with a differing :authority.
    let req = Request::get(format!("https://evil.test:{port}/"))
        .version(Version::HTTP_2)
        .header("authorization", API_PLACEHOLDER)
        .empty();
    let (res, _) = w
        .tunnel("api.example.test")
        .h2()
        .send(&w, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    // Another port of the same host is another destination.
    let tls = w.tunnel("api.example.test").open(&w).await.unwrap();
    let req = Request::get("/")
        .header("host", "api.example.test:1")
        .empty();
    assert_eq!(client::send(tls, req).await.unwrap().0.status(), 421);
    assert_eq!(
        w.upstream().received().len(),
        before,
        "nothing was forwarded"
    );
    // CONNECT to a host no credential applies to, Host naming the allowed
    // one: keyhole tunnels to the CONNECT host, and the secret never appears.
    let req = Request::get("/")
        .header("host", format!("api.example.test:{port}"))
        .header("authorization", API_PLACEHOLDER)
        .empty();
    let (res, _) = w
        .tunnel("evil.test")
        .trust(std::slice::from_ref(&w.ca.cert_der))
        .send(&w, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        w.last().header("authorization").as_deref(),
        Some(API_PLACEHOLDER)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_must_name_the_connect_host() {
    let w = world(Alpn::Both).start().await;
    let tunnel = w.tunnel("api.example.test");
    for (sni, wrong) in [
        ("other.test", tunnel.clone().sni("other.test")),
        ("none", tunnel.no_sni("127.0.0.1")),
    ] {
        let err = wrong.open(&w).await;
        assert!(err.is_err(), "SNI {sni:?} was accepted");
    }
    w.keyhole.wait_log("SNI");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnelled_hosts_show_their_real_certificate() {
    let w = world(Alpn::Both).start().await;
    // Trusting only the test CA: the handshake works, so this is the
    // upstream's own certificate, not one keyhole made.
    let tunnel = w.tunnel("tunnel.test");
    let tls = tunnel
        .clone()
        .trust(std::slice::from_ref(&w.ca.cert_der))
        .open(&w)
        .await
        .unwrap();
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    assert_ne!(chain[0].as_ref(), w.keyhole.ca_der().as_ref());
    let keyhole_leaf = tunnel.open(&w).await;
    assert!(keyhole_leaf.is_err(), "a tunnelled host is not intercepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_upstream_gets_502_and_nothing_is_sent() {
    // No --upstream-ca: the test CA is not trusted.
    let w = world(Alpn::Both).untrusted_upstream().start().await;
    let req = Request::get("/")
        .header("host", w.authority("api.example.test"))
        .header("authorization", API_PLACEHOLDER)
        .empty();
    let (res, body) = w.tunnel("api.example.test").send(&w, req).await.unwrap();
    assert_eq!(res.status(), 502);
    let status = res.headers()["proxy-status"].to_str().unwrap();
    assert!(
        status.starts_with("keyhole; error=tls_certificate_error; details="),
        "{status}"
    );
    assert!(
        body.contains("api.example.test") && body.contains("nothing was sent"),
        "{body}"
    );
    assert!(w.upstream().received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_denied_gets_403_before_anything_else() {
    let w = world(Alpn::Both).start().await;
    let (ok, _, err) = w.curl(&["-f", "https://denied.test/"]).await;
    assert!(!ok);
    assert!(err.contains("403"), "{err}");
    let res = client::connect(w.keyhole.addr, "denied.test:443")
        .await
        .unwrap_err();
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    assert!(
        res.contains("proxy-status: keyhole; error=http_request_denied"),
        "{res}"
    );
    assert!(res.contains("egress does not allow denied.test"), "{res}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_http_is_forwarded_but_never_substituted() {
    let w = world(Alpn::Both).plain(&["api.example.test"]).start().await;
    let url = format!("http://api.example.test:{}/plain", w.plain().port());
    w.curl_ok(&[
        "-H",
        &format!("Authorization: Bearer {API_PLACEHOLDER}"),
        &url,
    ])
    .await;
    let rec = w.plain().received().pop().unwrap();
    assert_eq!(rec.header("authorization"), Some(bearer(API_PLACEHOLDER)));
    w.keyhole.wait_log("plain http:// never carries a secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_tls_bytes_in_an_intercepted_tunnel_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world(Alpn::Both).start().await;
    let mut tcp = client::connect(w.keyhole.addr, &w.authority("api.example.test"))
        .await
        .unwrap();
    tcp.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: {API_PLACEHOLDER}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("error=tls_protocol_error"), "{out}");
    assert!(w.upstream().received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_in_flight_finish_and_exits_zero() {
    let mut w = world(Alpn::Both).start().await;
    let mut curl = w.curl_command(&[&w.url("api.example.test", "/slow")]);
    let slow = tokio::spawn(async move { curl.output().await.unwrap() });
    // Let the request reach the upstream, which holds it for 1.5 s.
    for _ in 0..100 {
        if !w.upstream().received().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let code = tokio::task::block_in_place(|| w.keyhole.terminate());
    assert_eq!(code, Some(0));
    let log = w.keyhole.log();
    assert!(
        log.contains("totals") && log.contains("intercepts=1"),
        "{log}"
    );
    let out = slow.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"version\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_hold_no_secret() {
    let w = world(Alpn::Both).var("RUST_LOG", "trace").start().await;
    let wild = w.placeholder("WILD_TOKEN").to_owned();
    let ip = w.placeholder("IP_TOKEN").to_owned();
    w.curl(&[
        "-H",
        &format!("Authorization: Bearer {API_PLACEHOLDER}"),
        &w.url("api.example.test", "/a?token=x"),
    ])
    .await;
    // Bodies both ways: substituted upstream, reflected and scrubbed back.
    for http in ["--http1.1", "--http2"] {
        w.curl(&[
            http,
            "--data-binary",
            &format!("{{\"k\": \"{wild}\"}}"),
            &w.url("x.wild.example.test", "/echo-body"),
        ])
        .await;
        w.curl(&[
            http,
            "-H",
            &format!("Authorization: Bearer {API_PLACEHOLDER}"),
            &w.url("api.example.test", "/chunked"),
        ])
        .await;
    }
    w.curl(&[
        "--http2",
        "-u",
        &format!("u:{wild}"),
        &w.url("x.wild.example.test", "/b"),
    ])
    .await;
    w.curl(&["-H", &format!("X-Key: {ip}"), &w.url("127.0.0.1", "/c")])
        .await;
    w.curl(&[
        "-H",
        &format!("X-Key: {API_PLACEHOLDER}"),
        &w.url("other.test", "/d"),
    ])
    .await;
    let received = w.upstream().received();
    assert!(
        received
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(WILD_SECRET)),
        "a body secret did reach the upstream"
    );
    assert!(
        received.iter().any(|r| r.all_text().contains(API_SECRET)),
        "the secrets did reach the upstream"
    );
    let log =
        w.keyhole.log() + &std::fs::read_to_string(&w.keyhole.stdout_path).unwrap_or_default();
    assert!(
        log.lines().count() > 50,
        "trace logging is on: {} lines",
        log.lines().count()
    );
    for s in SECRETS {
        assert!(!log.contains(s), "a secret is in the log");
    }
    assert!(!log.contains("token=x"), "a query string is in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstreams_get_502_with_the_error_type() {
    // A port with nothing listening: bind, note the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = World::builder()
        .config(config())
        .resolve("api.example.test", closed)
        .resolve("tunnel.test", closed)
        .start()
        .await;
    // Tunnelled host: keyhole dials before answering the CONNECT.
    let res = client::connect(w.keyhole.addr, &format!("tunnel.test:{closed}"))
        .await
        .unwrap_err();
    assert!(res.starts_with("HTTP/1.1 502"), "{res}");
    assert!(
        res.contains("proxy-status: keyhole; error=connection_refused"),
        "{res}"
    );
    // Intercepted host: the request gets the 502.
    let req = Request::get("/")
        .header("host", format!("api.example.test:{closed}"))
        .empty();
    let (res, body) = Tunnel::to(format!("api.example.test:{closed}"))
        .send(&w, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.headers()["proxy-status"],
        "keyhole; error=connection_refused"
    );
    assert!(body.contains("refused the connection"), "{body}");
    // A name that does not resolve.
    let res = client::connect(w.keyhole.addr, "tunnel.test:1")
        .await
        .unwrap_err();
    assert!(
        res.contains("error=dns_error") || res.contains("error=connection_refused"),
        "{res}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_line_per_request() {
    let w = world(Alpn::Both)
        .args(&["--log-format", "json"])
        .start()
        .await;
    let auth = format!("Authorization: Bearer {API_PLACEHOLDER}");
    w.curl_ok(&["-H", &auth, &w.url("api.example.test", "/json?secret=q")])
        .await;
    let log = w.keyhole.wait_log("\"message\":\"request\"");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "request")
        .unwrap_or_else(|| panic!("no request line in {log}"));
    assert_eq!(request["method"], "GET");
    assert_eq!(request["host"], "api.example.test");
    assert_eq!(request["status"], 200);
    assert_eq!(request["substituted"], "vcrd_api");
    assert!(request["ms"].is_u64());
    assert!(!log.contains("secret=q") && !log.contains(API_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_gets_504() {
    let w = world(Alpn::Both)
        .args(&["--response-header-timeout", "0.3"])
        .start()
        .await;
    let out = w
        .curl_ok(&["-i", &w.url("api.example.test", "/slow")])
        .await;
    assert!(
        out.contains("HTTP/2 504") || out.contains("HTTP/1.1 504"),
        "{out}"
    );
    assert!(
        out.contains("proxy-status: keyhole; error=http_response_timeout"),
        "{out}"
    );
}

/// Upstream connections opened for `clients` client connections in turn,
/// each with one intercepted request, with `--workers workers`.
async fn upstream_connections_for(workers: &str, clients: usize) -> usize {
    let w = world(Alpn::Both)
        .args(&["--workers", workers])
        .start()
        .await;
    for _ in 0..clients {
        w.curl_ok(&[
            "-H",
            &format!("Authorization: Bearer {API_PLACEHOLDER}"),
            &w.url("api.example.test", "/pool"),
        ])
        .await;
    }
    assert_eq!(w.upstream().received().len(), clients);
    w.upstream().connections()
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_pooled_across_clients() {
    let opened = upstream_connections_for("1", 3).await;
    assert_eq!(
        opened, 1,
        "three client connections, one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_worker_pools_its_own_upstream_connections() {
    // Client connections are dealt to the two workers in turn; each keeps
    // the upstream connection its first request opened.
    let opened = upstream_connections_for("2", 6).await;
    assert_eq!(opened, 2, "one upstream connection per worker");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_is_relayed_with_substituted_headers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world(Alpn::Both).start().await;
    let authority = w.authority("api.example.test");
    let tls = w.tunnel("api.example.test").open(&w).await.unwrap();
    let (mut sender, _) = client::http1(tls).await.unwrap();
    let req = Request::get("/ws")
        .header("host", &authority)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("authorization", format!("Bearer {API_PLACEHOLDER}"))
        .empty();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 101);
    let rec = w.last();
    assert_eq!(rec.version, Version::HTTP_11);
    assert_eq!(rec.header("authorization"), Some(bearer(API_SECRET)));
    assert_eq!(rec.header("upgrade").as_deref(), Some("websocket"));
    // Frames (here raw bytes) pass both ways unchanged, placeholders included.
    let mut io = hyper_util::rt::TokioIo::new(hyper::upgrade::on(res).await.unwrap());
    let frame = format!("\u{81}\u{05}hello {API_PLACEHOLDER}");
    io.write_all(frame.as_bytes()).await.unwrap();
    let mut back = vec![0u8; frame.len()];
    io.read_exact(&mut back).await.unwrap();
    assert_eq!(back, frame.as_bytes());

    // h2c (or any other upgrade) is refused.
    let req = Request::get("/")
        .header("host", &authority)
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .empty();
    let (res, body) = w.tunnel("api.example.test").send(&w, req).await.unwrap();
    assert_eq!(res.status(), 400, "{body}");
}

/// The Rust client, sending `chunks` as separate body frames (and so, with
/// HTTP/1.1, separate chunked pieces / TCP writes).
async fn post_chunks(
    w: &World,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
    alpn: &[u8],
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    let authority = w.authority(host);
    let tls = w.tunnel(host).alpn(alpn).open(w).await.unwrap();
    let body = Chunks(chunks.into_iter().map(Bytes::from).collect());
    let mut req = Request::post(format!("https://{authority}{path}")).header("host", &authority);
    if alpn == b"h2" {
        req = req.version(Version::HTTP_2);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).unwrap();
    let res = if alpn == b"h2" {
        let (mut sender, _) = client::http2(tls).await.unwrap();
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, _) = client::http1(tls).await.unwrap();
        sender.send_request(req).await.unwrap()
    };
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn body_placeholders_split_anywhere_are_substituted_and_reflections_scrubbed() {
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let w = world(Alpn::Both).start().await;
        let ph = w.placeholder("WILD_TOKEN").to_owned();
        let text = format!(
            "{{\"token\": \"{ph}\", \"again\": \"{ph}\", \"other\": \"{API_PLACEHOLDER}\"}}"
        );
        // Split the body inside both placeholders, down to single bytes.
        let bytes = text.as_bytes();
        let cut1 = text.find(&ph).unwrap() + 5;
        let cut2 = text.rfind(&ph).unwrap() + 20;
        let chunks = vec![
            bytes[..cut1].to_vec(),
            bytes[cut1..cut1 + 1].to_vec(),
            bytes[cut1 + 1..cut2].to_vec(),
            bytes[cut2..].to_vec(),
        ];
        let (status, headers, body) = post_chunks(
            &w,
            "x.wild.example.test",
            "/echo-body",
            &[("content-type", "application/json")],
            chunks,
            alpn,
        )
        .await;
        assert_eq!(status, 200);
        let rec = w.last();
        assert_eq!(
            rec.header("accept-encoding").as_deref(),
            Some("identity"),
            "a secret was sent: identity asked for"
        );
        // The upstream got the secret twice; API's placeholder (not allowed there) passed.
        let want = text.replace(&ph, WILD_SECRET);
        // The reflecting upstream echoed the body: the client sees placeholders again.
        assert_eq!(
            String::from_utf8_lossy(&rec.body),
            want,
            "the upstream got both secrets, API's placeholder unchanged"
        );
        let body = String::from_utf8(body).unwrap();
        assert_eq!(body, text, "{alpn:?}");
        assert!(!body.contains(WILD_SECRET));
        assert!(headers.get("content-length").is_none() || alpn == b"h2");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reflected_secrets_never_reach_the_client() {
    for alpn in [Alpn::H1, Alpn::H2] {
        let w = world(alpn).start().await;
        // Headers reflected in a JSON body (Content-Length framed upstream).
        let auth = format!("Authorization: Bearer {API_PLACEHOLDER}");
        let body = w
            .curl_ok(&[
                "-H",
                &auth,
                "-H",
                &format!("X-Copy: {API_PLACEHOLDER}"),
                &w.url("api.example.test", "/reflect"),
            ])
            .await;
        assert!(
            w.last().all_text().contains(API_SECRET),
            "the upstream got the secret"
        );
        assert!(!body.contains(API_SECRET), "{body}");
        assert!(body.contains(API_PLACEHOLDER), "{body}");
        // Reflected in a response header.
        let out = w
            .curl_ok(&[
                "-i",
                "-H",
                &auth,
                &w.url("api.example.test", "/reflect-header"),
            ])
            .await;
        assert!(!out.contains(API_SECRET), "{out}");
        assert!(
            out.to_lowercase().contains(&format!(
                "x-echo: bearer {}",
                API_PLACEHOLDER.to_lowercase()
            )),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_bodies_are_never_altered_and_compressed_answers_refused_after_a_secret() {
    let w = world(Alpn::Both).start().await;
    let ph = w.placeholder("WILD_TOKEN").to_owned();
    // A "gzip" request body holding a placeholder arrives byte for byte.
    let payload: Vec<u8> = [
        &b"\x1f\x8b\x08\x00"[..],
        ph.as_bytes(),
        &[0xff, 0x00, 0x7f][..],
    ]
    .concat();
    let (status, _, body) = post_chunks(
        &w,
        "x.wild.example.test",
        "/echo-body",
        &[("content-encoding", "gzip")],
        vec![payload.clone()],
        b"http/1.1",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        w.last().body,
        payload,
        "the upstream got the encoded body byte for byte"
    );
    assert_eq!(body, payload, "and echoed it back untouched");
    // An upstream that answers gzip after keyhole sent a secret: 502.
    let out = w
        .curl_ok(&[
            "-i",
            "-H",
            &format!("Authorization: Bearer {ph}"),
            &w.url("x.wild.example.test", "/gzip"),
        ])
        .await;
    assert!(out.contains("502"), "{out}");
    assert!(out.contains("error=http_response_content_coding"), "{out}");
    // Without a secret sent, an encoded answer passes.
    let out = w
        .curl_ok(&["-i", &w.url("x.wild.example.test", "/gzip")])
        .await;
    assert!(out.contains("content-encoding: gzip"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_placeholders_pass_where_only_headers_are_enabled() {
    let w = world(Alpn::Both).start().await;
    let text = format!("transcript mentions {API_PLACEHOLDER} in passing");
    let (status, _, body) = post_chunks(
        &w,
        "api.example.test",
        "/echo-body",
        &[],
        vec![text.clone().into_bytes()],
        b"http/1.1",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_reflections_are_scrubbed_across_frames() {
    let w = world(Alpn::H1).start().await;
    let auth = format!("Authorization: Bearer {API_PLACEHOLDER}");
    // The upstream reflects the headers as JSON in 7-byte chunks: every
    // secret straddles several frames.
    let out = w
        .curl_ok(&[
            "-i",
            "-H",
            &auth,
            "-H",
            &format!("X-A: {API_PLACEHOLDER}x{API_PLACEHOLDER}"),
            &w.url("api.example.test", "/chunked"),
        ])
        .await;
    assert!(w.last().all_text().contains(API_SECRET));
    assert!(!out.contains(API_SECRET), "{out}");
    assert_eq!(out.matches(API_PLACEHOLDER).count(), 3, "{out}");
}

/// A body generated on the fly: `frames` copies of one chunk (shared, not
/// copied), so the test holds 64 KiB however much it sends.
struct Generated {
    chunk: Bytes,
    frames: usize,
}

impl hyper::body::Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.frames == 0 {
            return std::task::Poll::Ready(None);
        }
        self.frames -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.clone()))))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_256_mib_body_crosses_with_bounded_memory() {
    use http_body_util::BodyExt;
    const CHUNK: usize = 64 * 1024;
    const FRAMES: usize = 4096; // 256 MiB
    let w = world(Alpn::H1).start().await;
    let ph = w.placeholder("WILD_TOKEN").to_owned();
    // Each chunk holds a placeholder that straddles into the next chunk,
    // and one inside it.
    let mut chunk = vec![b'a'; CHUNK];
    chunk[100..100 + ph.len()].copy_from_slice(ph.as_bytes());
    let tail = &ph.as_bytes()[..10];
    chunk[CHUNK - 10..].copy_from_slice(tail);
    chunk[..ph.len() - 10].copy_from_slice(&ph.as_bytes()[10..]);
    let authority = w.authority("x.wild.example.test");
    let tls = w.tunnel("x.wild.example.test").open(&w).await.unwrap();
    let (mut sender, _) = client::http1(tls).await.unwrap();
    let req = Request::post("/discard")
        .header("host", &authority)
        .body(Generated {
            chunk: Bytes::from(chunk),
            frames: FRAMES,
        })
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let count: usize =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap()
            .parse()
            .unwrap();
    // Per chunk one whole placeholder; the straddling ones join across
    // chunks (FRAMES - 1 of them), and the first chunk's head and the last
    // chunk's tail are fragments.
    let shrink = ph.len() - WILD_SECRET.len();
    assert_eq!(count, CHUNK * FRAMES - shrink * (FRAMES + FRAMES - 1));
    let peak = w.keyhole.peak_rss_kib();
    eprintln!("keyhole peak RSS after 256 MiB: {peak} KiB");
    assert!(peak > 0 && peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_keeps_working() {
    let w = world(Alpn::Both).start().await;
    let ph = w.placeholder("WILD_TOKEN").to_owned();
    let body = format!("{}{ph}{}", "x".repeat(300_000), "y".repeat(300_000));
    let file = w.keyhole.write("upload.bin", &body);
    for http in ["--http1.1", "--http2"] {
        let out = w
            .curl_ok(&[
                http,
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                &format!("@{}", file.display()),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &w.url("x.wild.example.test", "/discard"),
            ])
            .await;
        assert_eq!(out, "200", "{http}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_resolves_to_an_allowed_ip_gets_no_secret() {
    // vcrd_ip allows 127.0.0.1; evil.test resolves to 127.0.0.1. Entries
    // match names as names: the IP credential never applies to evil.test.
    let w = world(Alpn::Both).start().await;
    let ph = w.placeholder("IP_TOKEN").to_owned();
    w.curl_ok(&[
        "-H",
        &format!("X-Key: {ph}"),
        &w.url("evil.test", "/by-name"),
    ])
    .await;
    let last = w.last();
    assert_eq!(last.path, "/by-name");
    assert_eq!(last.header("x-key").as_deref(), Some(ph.as_str()));
    assert!(!last.all_text().contains(IP_SECRET));
    // The same address by its own spelling does get it.
    w.curl_ok(&["-H", &format!("X-Key: {ph}"), &w.url("127.0.0.1", "/by-ip")])
        .await;
    assert_eq!(w.last().header("x-key").as_deref(), Some(IP_SECRET));
}

/// A TLS 1.3 ClientHello, built by hand because rustls never sends an IP
/// address as SNI: `sni` goes into the server_name extension as a
/// host_name, whatever it holds.
fn client_hello(sni: &str) -> Vec<u8> {
    fn vec16(body: &[u8]) -> Vec<u8> {
        let mut v = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }
    fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend(vec16(body));
        v
    }
    let mut name = vec![0u8]; // host_name
    name.extend(vec16(sni.as_bytes()));
    let mut key_share = 0x001du16.to_be_bytes().to_vec(); // x25519
    key_share.extend(vec16(&[9u8; 32]));
    let mut exts = Vec::new();
    exts.extend(ext(0x0000, &vec16(&name)));
    exts.extend(ext(0x002b, &[2, 0x03, 0x04])); // supported_versions: TLS 1.3
    exts.extend(ext(0x000a, &vec16(&[0x00, 0x1d]))); // supported_groups
    exts.extend(ext(0x000d, &vec16(&[0x04, 0x03, 0x08, 0x04]))); // signature_algorithms
    exts.extend(ext(0x0033, &vec16(&key_share)));
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend(vec16(&[0x13, 0x01])); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend(vec16(&exts));
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(vec16(&handshake));
    record
}

/// The first bytes keyhole answers a hand-made ClientHello with, through
/// `CONNECT authority` (empty when it closed the connection).
async fn answer_to_hello(w: &World, authority: &str, sni: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = client::connect(w.keyhole.addr, authority).await.unwrap();
    tcp.write_all(&client_hello(sni)).await.unwrap();
    let mut buf = vec![0u8; 5];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("keyhole neither answered nor closed")
        .unwrap_or(0);
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ip_address_as_sni_is_refused_for_a_named_target() {
    let w = world(Alpn::Both).start().await;
    let port = w.upstream().port();
    // The same hello with the target's own name gets a ServerHello (a
    // handshake record), so the hand-made hello is sound.
    let named = answer_to_hello(&w, &format!("api.example.test:{port}"), "api.example.test").await;
    assert_eq!(named.first(), Some(&0x16), "{named:?}");
    // An IP address as SNI for a named target: no handshake.
    let by_ip = answer_to_hello(&w, &format!("api.example.test:{port}"), "127.0.0.1").await;
    assert_ne!(by_ip.first(), Some(&0x16), "{by_ip:?}");
    // For an IP target, an IP "SNI" is no SNI at all (RFC 6066 forbids
    // addresses there): the handshake goes on, with the IP's certificate.
    let ip_target = answer_to_hello(&w, &format!("127.0.0.1:{port}"), "127.0.0.1").await;
    assert_eq!(ip_target.first(), Some(&0x16), "{ip_target:?}");
    w.keyhole.wait_log("TLS refused");
}
