//! `keyhole exec` through real processes: the proxy starts on a free port,
//! the command gets the environment (overriding what it inherited), real
//! curl reaches a TLS upstream with the secret substituted, signals are
//! passed on and the command's exit status comes back.

mod support;

use std::process::Stdio;

use support::config::{Config, Credential};
use support::upstream::{tls_upstream, Alpn, TestCa};
use support::world::resolve_flags;
use support::{Run, Workspace};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SECRET: &str = "sek_exec_31f0a9c2";
const OTHER_SECRET: &str = "sek_exec_other_77d1";
const HOST: &str = "api.exec.test";

/// A config whose API_TOKEN is allowed on [`HOST`] and whose OTHER_TOKEN is
/// allowed elsewhere only.
fn config() -> String {
    Config::new()
        .egress(&[HOST, "other.exec.test"])
        .credential(
            Credential::new("vcrd_api")
                .secret("API_TOKEN", SECRET)
                .allowed_hosts(&[HOST]),
        )
        .credential(
            Credential::new("vcrd_other")
                .secret("OTHER_TOKEN", OTHER_SECRET)
                .allowed_hosts(&["other.exec.test"]),
        )
        .json()
}

/// `keyhole exec --config ... --state-dir ... EXTRA... -- COMMAND...`, with
/// inherited proxy and CA variables that point nowhere: exec must override
/// them.
fn exec(w: &Workspace, extra: &[String], command: &[&str]) -> Command {
    let config = w.file("config.json", &config());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyhole"));
    cmd.arg("exec")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(w.path().join("state"))
        .args(extra)
        .arg("--")
        .args(command)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "socks5://127.0.0.1:9")
        .env("NO_PROXY", "*")
        .env("SSL_CERT_FILE", "/nonexistent/bundle.pem")
        .env("CURL_CA_BUNDLE", "/nonexistent/bundle.pem")
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_curl_with_the_secret_substituted_and_returns_its_status() {
    let ca = TestCa::new();
    let upstream = tls_upstream(&ca, &[HOST], Alpn::Both).await;
    let w = Workspace::new();
    let upstream_ca = w.file("upstream-ca.pem", &ca.cert_pem);
    let mut extra = vec![
        "--upstream-ca".to_owned(),
        upstream_ca.display().to_string(),
    ];
    extra.extend(resolve_flags(&[(HOST, upstream.port())]));
    let script = format!(
        r#"echo "proxy=$HTTPS_PROXY|$https_proxy|all=$ALL_PROXY|no=$NO_PROXY|ca=$SSL_CERT_FILE"
curl -sS --max-time 20 -H "Authorization: Bearer $API_TOKEN" -H "X-Other: $OTHER_TOKEN" \
  https://{HOST}:{}/exec || exit 90
exit 5"#,
        upstream.port()
    );
    let out = exec(&w, &extra, &["sh", "-c", &script])
        .output()
        .await
        .expect("run keyhole exec");
    let Run {
        code,
        stdout,
        stderr,
    } = out.into();
    assert_eq!(code, 5, "stdout: {stdout}\nstderr: {stderr}");

    // The command saw keyhole's environment, not what it inherited.
    let first = stdout.lines().next().unwrap_or_default();
    let proxy = first
        .strip_prefix("proxy=http://127.0.0.1:")
        .unwrap_or_else(|| panic!("proxy not overridden: {first}"));
    let port = proxy.split('|').next().unwrap_or_default();
    assert!(port.parse::<u16>().is_ok_and(|p| p != 9), "{first}");
    assert!(
        first.contains(&format!("|http://127.0.0.1:{port}|")),
        "{first}"
    );
    assert!(first.contains("|all=|no=|ca=/"), "{first}");
    assert!(first.ends_with("/state/ca-bundle.pem"), "{first}");

    // The upstream got the secret where allowed and the placeholder elsewhere.
    let got = upstream.received();
    let last = got.last().expect("the upstream received nothing");
    assert_eq!(last.path, "/exec");
    assert_eq!(
        last.header("authorization").as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let other = last.header("x-other").unwrap_or_default();
    assert!(other.starts_with("kh_ph_"), "{other}");
    assert!(!last.all_text().contains(OTHER_SECRET));
    // The response reached curl, without a secret in it.
    assert!(
        stdout.contains("/exec") || stdout.contains("headers"),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_passes_sigterm_on_and_keeps_serving_through_sigint() {
    let w = Workspace::new();
    // The command reports each signal it gets, and exits 3 on SIGTERM.
    let script = r#"trap 'echo got-int' INT
trap 'echo got-term; exit 3' TERM
echo ready
while :; do sleep 0.05; done"#;
    let mut child = exec(&w, &[], &["sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keyhole exec");
    let pid = child.id().expect("pid").to_string();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.expect("read").unwrap_or_default();
    assert_eq!(first, "ready");

    // SIGINT to keyhole alone: keyhole neither dies nor passes it on.
    let kill = |sig: &'static str, pid: String| async move {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .await
            .expect("kill");
        assert!(ok.success());
    };
    kill("-INT", pid.clone()).await;
    // SIGUSR1 would end a shell without a trap: proof it is passed on comes
    // from SIGTERM below, which the command traps.
    kill("-TERM", pid).await;
    let mut seen = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    let status = child.wait().await.expect("wait");
    assert_eq!(seen, ["got-term"], "the command saw: {seen:?}");
    assert_eq!(status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_reports_failures_with_distinct_statuses() {
    let w = Workspace::new();
    // Not found: 127.
    let out = exec(&w, &[], &["keyhole-test-no-such-command"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot run keyhole-test-no-such-command")
    );

    // Ended by a signal: 128 + N.
    let out = exec(&w, &[], &["sh", "-c", "kill -KILL $$"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(137));

    // keyhole cannot start (its listen address is taken): 125, and the
    // command never runs.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let marker = w.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let out = exec(
        &w,
        &[
            "--listen".to_owned(),
            taken.local_addr().expect("addr").to_string(),
        ],
        &["sh", "-c", &touch],
    )
    .output()
    .await
    .expect("run");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    assert!(!marker.exists(), "the command ran without the proxy");
}
