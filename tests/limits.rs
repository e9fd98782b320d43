//! Limits and timeouts, each set low by its flag and hit on purpose.

mod support;

use std::time::{Duration, Instant};

use support::client;
use support::proxy::Keyhole;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPEN: &str = r#"{"credentials": []}"#;

fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
}

/// Reads until EOF or `limit`; returns what came and how long it took.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_get_503() {
    let keyhole = Keyhole::start(OPEN, &args(&[("--max-connections", "2")]), &[]);
    let a = TcpStream::connect(keyhole.addr).await.unwrap();
    let b = TcpStream::connect(keyhole.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(keyhole.addr).await.unwrap();
    let (out, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(
        out.contains("proxy-status: keyhole; error=connection_limit_reached"),
        "{out}"
    );
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A slot is free again.
    let res = client::connect(keyhole.addr, "127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(res.starts_with("HTTP/1.1 502"), "{res}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off() {
    let keyhole = Keyhole::start(OPEN, &args(&[("--header-read-timeout", "0.5")]), &[]);
    let mut s = TcpStream::connect(keyhole.addr).await.unwrap();
    s.write_all(b"CONNECT example.test:443 HTTP/1.1\r\nHost: exa")
        .await
        .unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(keyhole.addr).await.unwrap();
    let (_, took) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(5),
        "idle connection closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_get_431() {
    let keyhole = Keyhole::start(OPEN, &args(&[("--max-header-bytes", "8192")]), &[]);
    let mut s = TcpStream::connect(keyhole.addr).await.unwrap();
    let big = "x".repeat(20_000);
    s.write_all(
        format!("GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\nX-Big: {big}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_tunnels_are_closed_after_the_idle_timeout() {
    // A plain TCP server that accepts and then says nothing.
    let quiet = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = quiet.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = quiet.accept().await {
            held.push(s);
        }
    });
    let keyhole = Keyhole::start(OPEN, &args(&[("--idle-timeout", "0.5")]), &[]);
    let mut tunnel = client::connect(keyhole.addr, &format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tunnel.write_all(b"ping").await.unwrap();
    }
    // ...silence closes it.
    let (_, took) = read_until_closed(&mut tunnel, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(5),
        "tunnel closed after {took:?}"
    );
}

#[test]
fn bad_limit_flags_are_refused() {
    for (flag, value) in [
        ("--idle-timeout", "0"),
        ("--connect-timeout=-1", ""),
        ("--max-connections", "0"),
        ("--workers", "0"),
    ] {
        // A valid config, so that only the flag can be the refusal.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keyhole.json");
        std::fs::write(&config, OPEN).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyhole"))
            .args(["run", "--config"])
            .arg(&config)
            .args(["--state-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", flag])
            .args((!value.is_empty()).then_some(value))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = flag.split('=').next().unwrap_or(flag);
        assert!(stderr.contains(name), "{flag} {value}: {stderr}");
    }
}
