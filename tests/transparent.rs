//! Transparent mode end to end: `keyhole sandbox` runs a script whose
//! clients ignore every proxy variable (`--noproxy '*'`, the variables
//! unset), and keyhole still decides each of their connections by its
//! original destination and its SNI or `Host`.
//!
//! The upstreams listen on a TEST-NET-1 address of a dummy interface made
//! for the test ([`LocalAddress`]): local to this machine, but not
//! loopback, so the sandbox reaches it only through keyhole's redirect,
//! and nothing leaves the machine. Needs root and the sandbox's tools;
//! under CI a missing one fails the test.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::config::{Config, Credential};
use support::sandbox::{cannot_run, LocalAddress};
use support::upstream::{listen_at, plain_upstream_at, tls_upstream_at, Alpn, TestCa, Upstream};

const SECRET: &str = "sek_transparent_41c9e2";
/// An address no name resolves to, and no dummy interface ever gets.
const NOWHERE: &str = "192.0.2.254";
/// Longest the sandboxed script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The test's machine: upstreams on a local non-loopback address.
struct Net {
    local: LocalAddress,
    ca: TestCa,
    tls: Upstream,
    plain: Upstream,
    raw: SocketAddr,
    raw_accepted: Arc<AtomicUsize>,
}

impl Net {
    async fn start() -> Net {
        let local = LocalAddress::new();
        let ca = TestCa::new();
        let names = ["api.example.test", "other.test", "tunnel.test"];
        let tls = tls_upstream_at(local.ip, &ca, &names, Alpn::Both).await;
        let plain = plain_upstream_at(local.ip).await;
        let raw_accepted = Arc::new(AtomicUsize::new(0));
        let count = raw_accepted.clone();
        let raw = listen_at(local.ip, move |_tcp| {
            count.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .await;
        Net {
            local,
            ca,
            tls,
            plain,
            raw,
            raw_accepted,
        }
    }

    fn config(&self) -> String {
        Config::new()
            .egress(&[
                "api.example.test",
                "other.test",
                "tunnel.test",
                "plain.test",
            ])
            .credential(
                Credential::new("vcrd_api")
                    .secret("API_TOKEN", SECRET)
                    .allowed_hosts(&["api.example.test"]),
            )
            // Makes other.test intercepted: API_TOKEN's placeholder must
            // pass there unchanged.
            .credential(
                Credential::new("vcrd_other")
                    .secret("OTHER_TOKEN", "sek_other_77e1a0")
                    .allowed_hosts(&["other.test"]),
            )
            .json()
    }

    /// `--resolve` for every name, to the local address.
    fn resolve_flags(&self) -> Vec<String> {
        let ip = self.local.ip;
        let (tls, plain) = (self.tls.port(), self.plain.port());
        ["api.example.test", "other.test", "tunnel.test"]
            .iter()
            .map(|n| format!("{n}:{tls}:{ip}"))
            .chain([format!("plain.test:{plain}:{ip}")])
            .flat_map(|r| ["--resolve".to_owned(), r])
            .collect()
    }
}

/// The probes, one line each; every client ignores the proxy variables.
const SCRIPT: &str = r#"
u() { env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy -u ALL_PROXY \
      curl -sS --noproxy '*' --max-time 15 "$@"; }
echo "dns=$(getent hosts api.example.test | cut -d' ' -f1)"
echo "api=$(u -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_TOKEN" https://api.example.test:$TLS/api)"
echo "other=$(u -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_TOKEN" https://other.test:$TLS/other)"
echo "plain=$(u -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_TOKEN" http://plain.test:$PLAIN/plain)"
echo "pinned=$(u -o /dev/null -w '%{http_code}' --cacert "$TEST_CA" https://tunnel.test:$TLS/pinned)"
u -o /dev/null --connect-to "api.example.test:$TLS:$NOWHERE:$TLS" https://api.example.test:$TLS/mismatch 2>/dev/null
echo "mismatch=$?"
echo "host=$(u -o /dev/null -w '%{http_code}' -H 'Host: other.test' http://plain.test:$PLAIN/host)"
python3 - <<'PY'
import os, socket
s = socket.create_connection((os.environ["LOCAL_IP"], int(os.environ["RAW"])), timeout=10)
s.sendall(b"hello, not http\r\n")
try:
    got = s.recv(100)
    print("raw=" + ("closed" if got == b"" else "data"))
except OSError as e:
    print("raw=closed")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", (os.environ["NOWHERE"], 9999))
    print("udp=sent")
except OSError as e:
    print("udp=refused")
PY
"#;

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_ignore_the_proxy_go_through_keyhole() {
    if cannot_run() {
        return;
    }
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, net.config()).unwrap();
    let test_ca = dir.path().join("test-ca.pem");
    std::fs::write(&test_ca, &net.ca.cert_pem).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyhole"));
    cmd.arg("sandbox")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--upstream-ca")
        .arg(&test_ca)
        .args(net.resolve_flags())
        .args(["--", "sh", "-c", SCRIPT])
        .env("RUST_LOG", "info")
        .env("TLS", net.tls.port().to_string())
        .env("PLAIN", net.plain.port().to_string())
        .env("RAW", net.raw.port().to_string())
        .env("LOCAL_IP", net.local.ip.to_string())
        .env("NOWHERE", NOWHERE)
        .env("TEST_CA", &test_ca)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .expect("the sandboxed script did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // keyhole's log, and the script's own errors.
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{log}");
    let probe = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= line in\n{stdout}\n{log}"))
            .to_owned()
    };
    let seen = |path: &str| {
        let all = net.tls.received().into_iter().chain(net.plain.received());
        all.filter(|r| r.path.starts_with(path))
            .map(|r| r.header("authorization").unwrap_or_default())
            .collect::<Vec<_>>()
    };

    // Names resolve in the sandbox, through keyhole, to the pinned address.
    assert_eq!(probe("dns"), net.local.ip.to_string());
    // The allowed host gets the secret; another host and plain HTTP the
    // placeholder, as through HTTPS_PROXY.
    assert_eq!(probe("api"), "200");
    assert_eq!(seen("/api"), [format!("Bearer {SECRET}")]);
    assert_eq!(probe("other"), "200");
    let other = seen("/other");
    assert_eq!(other.len(), 1);
    assert!(
        other[0].starts_with("Bearer ") && !other[0].contains(SECRET),
        "{other:?}"
    );
    assert_eq!(probe("plain"), "200");
    assert_eq!(seen("/plain"), other);
    // A client that trusts only its own CA is tunnelled where no
    // credential applies: it sees the real certificate.
    assert_eq!(probe("pinned"), "200");
    assert_eq!(seen("/pinned").len(), 1);
    // An SNI that does not belong to the address connected to is refused,
    // and nothing is sent anywhere.
    assert_ne!(probe("mismatch"), "0");
    assert!(seen("/mismatch").is_empty());
    assert!(
        log.contains("the SNI does not resolve to the address"),
        "{log}"
    );
    // Plain HTTP whose Host names another host than the address: 421.
    assert_eq!(probe("host"), "421");
    assert!(seen("/host").is_empty());
    // Bytes that are neither TLS nor HTTP, to an address egress does not
    // allow: closed, never dialled.
    assert_eq!(probe("raw"), "closed");
    assert_eq!(net.raw_accepted.load(Ordering::SeqCst), 0);
    // UDP other than DNS does not leave the sandbox.
    assert_eq!(probe("udp"), "refused");
    // The sandbox never saw the secret.
    assert!(
        !stdout.contains(SECRET) && !log.contains(SECRET),
        "{stdout}\n{log}"
    );
}
