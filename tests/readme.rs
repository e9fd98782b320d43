//! The README's walkthrough, step by step: a local HTTPS server, `keyhole
//! run` on the example config, `eval "$(keyhole env ...)"` and curl.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::proxy::Keyhole;
use support::upstream::TestCa;

#[test]
fn eval_keyhole_env_then_curl_gets_the_secret_substituted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf_pem(&["localhost", "127.0.0.1"]);
    let cert_path = dir.path().join("echo.pem");
    let key_path = dir.path().join("echo.key");
    let ca_path = dir.path().join("echo-ca.pem");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();

    // 1. The example echo server, on a free port.
    let mut echo = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/echo_server.py"
        ))
        .args(["--port", "0", "--cert"])
        .arg(&cert_path)
        .arg("--key")
        .arg(&key_path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let (tx, rx) = mpsc::channel();
    let stdout = echo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("echo server started");
    let port = first.rsplit(':').next().unwrap().trim().to_owned();

    // 2. keyhole on the example config, trusting the echo server's CA.
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/credentials.json"
    ))
    .unwrap();
    let keyhole = Keyhole::start(
        &config,
        &["--upstream-ca".into(), ca_path.display().to_string()],
        &[],
    );
    let config_path = keyhole.state_dir.parent().unwrap().join("config.json");

    // 3. The sandbox side, exactly as the README says.
    let script = format!(
        r#"set -e
eval "$("$KEYHOLE" env --config "$CONFIG" --state-dir "$STATE" --listen {addr})"
curl -sS --max-time 20 -H "Authorization: Bearer $LOCAL_TOKEN" https://localhost:{port}/hello
printf 'placeholder=%s\n' "$LOCAL_TOKEN""#,
        addr = keyhole.addr
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("KEYHOLE", env!("CARGO_BIN_EXE_keyhole"))
        .env("CONFIG", &config_path)
        .env("STATE", &keyhole.state_dir)
        .output()
        .unwrap();
    let _ = echo.kill();
    let _ = echo.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok\n"), "{stdout}");
    assert!(
        stdout.contains("placeholder=kh_ph_"),
        "the shell holds only the placeholder: {stdout}"
    );
    assert!(!stdout.contains("local-realsecret"));

    // The server saw the real secret.
    let seen: Vec<String> = rx.try_iter().collect();
    assert!(
        seen.iter().any(|l| l
            .trim()
            .eq_ignore_ascii_case("authorization: bearer local-realsecret")),
        "{seen:#?}"
    );
}
