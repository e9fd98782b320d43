//! `keyhole sandbox` through real network namespaces, on loopback only.
//!
//! The library's [`Namespace`] with a fake proxy shows what the namespace
//! does to traffic: TCP to any address arrives at the transparent listener
//! with its original destination, DNS reaches the answerer, other UDP and
//! IPv6 are refused at once, loopback stays inside. The real binary shows
//! the command's environment, exit status and signals, as root and as an
//! unprivileged user. Nothing leaves the machine: the namespace has no
//! interface but loopback, and every outside address used here is
//! redirected back to the test's own sockets.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables), `python3`, and `unshare`
//! and `setpriv` (util-linux). When one is missing or the kernel refuses
//! namespaces, a test says so and passes without running, except under CI
//! (the `CI` variable set), where it fails. The unprivileged case is
//! skipped, with the reason printed, only when the kernel forbids
//! unprivileged user namespaces.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use keyhole::sandbox::dns::{self, Lookup, Resolver};
use keyhole::sandbox::{Launch, Namespace, Ports, Sockets};
use support::sandbox::{cannot_run, unavailable};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

const KEYHOLE: &str = env!("CARGO_BIN_EXE_keyhole");
/// Longest any sandboxed command here may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The one name the fake resolver knows, and its address.
const ALLOWED: &str = "allowed.sandbox.test";
const ALLOWED_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// The unprivileged user the unprivileged case runs as.
const NOBODY: u32 = 65534;
/// System folders only: nobody cannot read root's home, where a PATH may
/// point (pyenv shims and the like).
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// `setpriv` arguments that run the rest as [`NOBODY`].
fn as_nobody() -> Vec<String> {
    vec![
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_owned(),
    ]
}

/// Why the kernel refuses unprivileged user namespaces, if it does.
fn unprivileged_refused() -> Option<String> {
    let probe = std::process::Command::new("setpriv")
        .args(as_nobody())
        .args(["unshare", "-rn", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if probe {
        return None;
    }
    let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_owned());
    let settings = [
        "/proc/sys/kernel/unprivileged_userns_clone",
        "/proc/sys/user/max_user_namespaces",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ]
    .iter()
    .filter_map(|p| read(p).ok().map(|v| format!("{p}={v}")))
    .collect::<Vec<_>>()
    .join(", ");
    Some(format!(
        "the kernel forbids unprivileged user namespaces (`unshare -rn` as uid {NOBODY} \
         failed; {settings})"
    ))
}

// --- the library with a fake proxy ---

/// What the fake proxy saw.
#[derive(Debug, Default)]
struct Seen {
    /// Per redirected connection: its original destination and its peer.
    transparent: Vec<(Option<SocketAddrV4>, SocketAddr)>,
    /// Connections to the proxy port.
    proxy: usize,
    /// Names the resolver was asked.
    names: Vec<String>,
}

/// Runs `command` in a sandbox whose sockets the fake proxy serves.
async fn sandboxed(command: &[&str]) -> (ExitStatus, Seen) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let launch = Launch {
        exe: KEYHOLE.into(),
        command: command.iter().map(Into::into).collect(),
        env: std::env::vars_os().collect(),
        ports: Ports::DEFAULT,
    };
    let Namespace { sockets, process } = Namespace::start(launch).await.unwrap();
    let Sockets {
        transparent,
        proxy,
        dns,
    } = sockets;
    let tasks = [
        tokio::spawn(fake_transparent(transparent, seen.clone())),
        tokio::spawn(fake_proxy(proxy, seen.clone())),
        tokio::spawn(dns::serve(
            dns,
            resolver(seen.clone()),
            std::future::pending(),
        )),
    ];
    let mut child = process.go().await.unwrap();
    let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
        .await
        .expect("the sandboxed command did not finish")
        .unwrap();
    for task in tasks {
        task.abort();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (status, seen)
}

/// Answers each redirected connection with `dst=ADDR\n`, its original
/// destination.
async fn fake_transparent(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    while let Ok((mut stream, peer)) = listener.accept().await {
        let dst = socket2::SockRef::from(&stream)
            .original_dst_v4()
            .ok()
            .and_then(|a| a.as_socket_ipv4());
        seen.lock().unwrap().transparent.push((dst, peer));
        let line = dst.map_or_else(|| "dst=none\n".to_owned(), |d| format!("dst={d}\n"));
        let _ = stream.write_all(line.as_bytes()).await;
    }
}

/// Answers each connection to the proxy port with `proxy\n`.
async fn fake_proxy(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        seen.lock().unwrap().proxy += 1;
        let _ = stream.write_all(b"proxy\n").await;
    }
}

/// Knows [`ALLOWED`] only; records every name asked.
fn resolver(seen: Arc<Mutex<Seen>>) -> Resolver {
    Arc::new(move |name: String| {
        seen.lock().unwrap().names.push(name.clone());
        Box::pin(async move {
            if name == ALLOWED {
                Lookup::Found(vec![ALLOWED_ADDR])
            } else {
                Lookup::NoSuchName
            }
        })
    })
}

fn python(script: &str) -> [&str; 3] {
    ["python3", "-c", script]
}

/// Python helpers for the scripts: a DNS query over UDP to any address.
const DNS_QUERY_PY: &str = r#"
import socket, struct, time
def query(server, name, qtype, ident=0x4b48):
    q = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.connect((server, 53))
    s.send(q)
    r = s.recv(512)
    assert r[:2] == struct.pack("!H", ident) and r[2] & 0x80, r
    return r[3] & 0x0f, struct.unpack("!H", r[6:8])[0], r
def refused_at_once(family, kind, addr, what):
    s = socket.socket(family, kind)
    s.settimeout(10)
    start = time.monotonic()
    try:
        s.connect(addr)
        s.send(b"leak?")
        s.recv(100)
    except socket.timeout:
        raise SystemExit(what + " was not refused at once")
    except OSError as e:
        assert time.monotonic() - start < 2, (what, e)
        return
    raise SystemExit(what + " got an answer")
"#;

#[tokio::test]
async fn tcp_to_any_address_arrives_at_the_transparent_listener_with_its_original_destination() {
    if cannot_run() {
        return;
    }
    let script = r#"
import socket
def ask(host, port):
    s = socket.create_connection((host, port), timeout=10)
    line = s.makefile("rb").readline()
    s.close()
    return line
got = ask("10.1.2.3", 80)
assert got == b"dst=10.1.2.3:80\n", got
got = ask("198.51.100.9", 443)
assert got == b"dst=198.51.100.9:443\n", got
got = ask("127.0.0.1", 15080)
assert got == b"proxy\n", got
"#;
    let (status, seen) = sandboxed(&python(script)).await;
    assert!(status.success(), "{status}");
    let dsts: Vec<_> = seen.transparent.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        dsts,
        [
            Some("10.1.2.3:80".parse().unwrap()),
            Some("198.51.100.9:443".parse().unwrap())
        ]
    );
    for (_, peer) in &seen.transparent {
        assert_eq!(peer.ip(), Ipv4Addr::LOCALHOST, "{peer}");
    }
    assert_eq!(seen.proxy, 1);
}

#[tokio::test]
async fn loopback_stays_inside_the_namespace() {
    if cannot_run() {
        return;
    }
    let script = r#"
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 8000))
srv.listen()
c = socket.create_connection(("127.0.0.1", 8000), timeout=10)
a, _ = srv.accept()
a.sendall(b"local\n")
assert c.makefile("rb").readline() == b"local\n"
"#;
    let (status, seen) = sandboxed(&python(script)).await;
    assert!(status.success(), "{status}");
    assert!(seen.transparent.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn dns_to_any_server_is_answered_by_keyhole() {
    if cannot_run() {
        return;
    }
    let script = format!(
        r#"{DNS_QUERY_PY}
rcode, n, r = query("192.0.2.53", "{ALLOWED}", 1)
assert (rcode, n) == (0, 1), r
assert r[-4:] == socket.inet_aton("{ALLOWED_ADDR}"), r
rcode, n, r = query("10.255.255.53", "denied.sandbox.test", 1)
assert (rcode, n) == (3, 0), r
rcode, n, r = query("192.0.2.53", "{ALLOWED}", 28)
assert (rcode, n) == (0, 0), r
# The system's resolver (resolv.conf's server, redirected too) agrees.
assert socket.gethostbyname("{ALLOWED}") == "{ALLOWED_ADDR}"
try:
    socket.gethostbyname("other.sandbox.test")
    raise SystemExit("other.sandbox.test resolved")
except socket.gaierror:
    pass
"#
    );
    let (status, seen) = sandboxed(&python(&script)).await;
    assert!(status.success(), "{status}");
    assert!(seen.names.iter().any(|n| n == ALLOWED), "{seen:?}");
    assert!(seen.names.iter().any(|n| n == "denied.sandbox.test"));
    assert!(seen.names.iter().any(|n| n == "other.sandbox.test"));
    assert!(seen.transparent.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn other_udp_is_refused_at_once_and_reaches_nothing() {
    if cannot_run() {
        return;
    }
    let script = format!(
        r#"{DNS_QUERY_PY}
refused_at_once(socket.AF_INET, socket.SOCK_DGRAM, ("10.9.9.9", 9999), "UDP to 10.9.9.9:9999")
refused_at_once(socket.AF_INET, socket.SOCK_DGRAM, ("192.0.2.1", 443), "QUIC to 192.0.2.1:443")
"#
    );
    let (status, seen) = sandboxed(&python(&script)).await;
    assert!(status.success(), "{status}");
    assert!(
        seen.names.is_empty() && seen.transparent.is_empty(),
        "{seen:?}"
    );
}

#[tokio::test]
async fn ipv6_is_refused_at_once_even_with_a_route() {
    if cannot_run() {
        return;
    }
    let probe = format!(
        r#"{DNS_QUERY_PY}
refused_at_once(socket.AF_INET6, socket.SOCK_STREAM, ("2001:db8::1", 443), "TCP to [2001:db8::1]:443")
refused_at_once(socket.AF_INET6, socket.SOCK_DGRAM, ("2001:db8::1", 53), "UDP to [2001:db8::1]:53")
"#
    );
    // First with no IPv6 route (ENETUNREACH), then with one the command
    // adds itself (it is root in its namespace): the rules refuse.
    let script = format!(
        "python3 -c '{probe}' || exit 10\n\
         ip -6 route add default dev lo src ::1 || exit 11\n\
         python3 -c '{probe}' || exit 12\n"
    );
    assert!(!probe.contains('\''), "the probe is single-quoted");
    let (status, seen) = sandboxed(&["sh", "-c", &script]).await;
    assert!(status.success(), "{status}");
    assert!(seen.transparent.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn the_command_s_exit_status_comes_back() {
    if cannot_run() {
        return;
    }
    let (status, _) = sandboxed(&["sh", "-c", "exit 7"]).await;
    assert_eq!(status.code(), Some(7));
    let (status, _) = sandboxed(&["sh", "-c", "kill -TERM $$"]).await;
    assert_eq!(status.signal(), Some(15));
    let (status, _) = sandboxed(&["keyhole-no-such-command"]).await;
    assert_eq!(status.code(), Some(127));
}

// --- the real binary ---

const SECRET: &str = "sek_sandbox_5b1e90";

/// A config with one credential, API_TOKEN, allowed on [`ALLOWED`].
fn config_json() -> String {
    format!(
        r#"{{
  "egress": {{"type": "limited", "allowed_hosts": ["{ALLOWED}"]}},
  "credentials": [
    {{"id": "vcrd_sandbox", "auth": {{"type": "environment_variable", "secret_name": "API_TOKEN",
      "secret_value": "{SECRET}",
      "networking": {{"type": "limited", "allowed_hosts": ["{ALLOWED}"]}}}}}}
  ]
}}"#
    )
}

/// A folder with `config.json`, open to every user (the unprivileged case
/// runs keyhole as [`NOBODY`] there).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, config_json()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, config)
}

/// `keyhole sandbox --config ... --state-dir ... -- COMMAND...`, with an
/// inherited ALL_PROXY that must not reach the command.
fn keyhole_sandbox(dir: &Path, config: &Path, command: &[&str]) -> Command {
    let mut cmd = Command::new(KEYHOLE);
    cmd.arg("sandbox")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--")
        .args(command)
        .env("ALL_PROXY", "socks5://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: Command) -> std::process::Output {
    tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .expect("keyhole sandbox did not finish")
        .unwrap()
}

#[tokio::test]
async fn keyhole_sandbox_gives_the_command_its_environment_and_status() {
    if cannot_run() {
        return;
    }
    let (dir, config) = workspace();
    let script = r#"echo "$HTTPS_PROXY|$https_proxy|${ALL_PROXY-unset}|$API_TOKEN"; exit 9"#;
    let out = output(keyhole_sandbox(dir.path(), &config, &["sh", "-c", script])).await;
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = stdout.trim_end().split('|').collect();
    assert_eq!(
        fields[..3],
        ["http://127.0.0.1:15080", "http://127.0.0.1:15080", "unset"]
    );
    assert!(!fields[3].is_empty() && fields[3] != SECRET, "{stdout}");

    let out = output(keyhole_sandbox(
        dir.path(),
        &config,
        &["keyhole-no-such-command"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot run keyhole-no-such-command"),
        "{stderr}"
    );
}

#[tokio::test]
async fn signals_sent_to_keyhole_sandbox_reach_the_command() {
    if cannot_run() {
        return;
    }
    let (dir, config) = workspace();
    let script = r#"trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"#;
    let mut cmd = keyhole_sandbox(dir.path(), &config, &["sh", "-c", script]);
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(COMMAND_TIMEOUT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(42));
}

#[tokio::test]
async fn an_unprivileged_user_gets_the_same_sandbox() {
    if cannot_run() {
        return;
    }
    if let Some(reason) = unprivileged_refused() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let (dir, config) = workspace();
    let probe = std::process::Command::new("setpriv")
        .args(as_nobody())
        .args([KEYHOLE, "--version"])
        .status()
        .is_ok_and(|s| s.success());
    if !probe && unavailable(&format!("uid {NOBODY} cannot run {KEYHOLE}")) {
        return;
    }
    let made = dir.path().join("made-inside");
    let script = format!(
        r#"{DNS_QUERY_PY}
import os
assert os.getuid() == 0, os.getuid()  # root of its own user namespace
# There is no way out but keyhole: this connect succeeds only redirected.
socket.create_connection(("10.1.2.3", 80), timeout=10).close()
rcode, n, r = query("192.0.2.53", "unprivileged.sandbox.test", 1, 0x5a5a)
refused_at_once(socket.AF_INET, socket.SOCK_DGRAM, ("10.9.9.9", 9999), "UDP to 10.9.9.9:9999")
refused_at_once(socket.AF_INET6, socket.SOCK_STREAM, ("2001:db8::1", 443), "TCP to [2001:db8::1]:443")
open("{made}", "w").close()
raise SystemExit(5)
"#,
        made = made.display()
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(as_nobody())
        .arg(KEYHOLE)
        .arg("sandbox")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--")
        .args(python(&script))
        .env("PATH", SYSTEM_PATH)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    // The user namespace maps root inside to the real user outside.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), NOBODY);
}
