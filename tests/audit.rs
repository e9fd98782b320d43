//! The audit log: one JSON line per substitution and per placeholder passed
//! on, with no value in it.

mod support;

use std::time::Duration;

use support::proxy::Keyhole;
use support::upstream::{plain_upstream, tls_upstream, Alpn, TestCa};

const SECRET: &str = "sek_audit_4e4e4e";
const BODY_SECRET: &str = "sek_audit_body_7a7a";
const PH: &str = "kh_pinned_audit_0123456789";
const BODY_PH: &str = "kh_pinned_audit_body_012345";

#[tokio::test(flavor = "multi_thread")]
async fn every_substitution_and_pass_is_a_json_line_without_values() {
    let ca = TestCa::new();
    let upstream = tls_upstream(&ca, &["api.example.test", "other.test"], Alpn::Both).await;
    let plain = plain_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("upstream-ca.pem");
    let audit_path = dir.path().join("audit.jsonl");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let config = format!(
        r#"{{"credentials": [
  {{"id": "vcrd_h", "auth": {{"type": "environment_variable", "secret_name": "H_TOKEN", "secret_value": "{SECRET}", "placeholder": "{PH}",
    "networking": {{"type": "limited", "allowed_hosts": ["api.example.test"]}}}}}},
  {{"id": "vcrd_b", "auth": {{"type": "environment_variable", "secret_name": "B_TOKEN", "secret_value": "{BODY_SECRET}", "placeholder": "{BODY_PH}",
    "networking": {{"type": "limited", "allowed_hosts": ["api.example.test", "other.test"]}}, "injection_location": {{"header": false, "body": true}}}}}}
]}}"#
    );
    let mut args: Vec<String> = vec![
        "--upstream-ca".into(),
        ca_path.display().to_string(),
        "--audit-log".into(),
        audit_path.display().to_string(),
    ];
    for h in ["api.example.test", "other.test"] {
        args.push("--resolve".into());
        args.push(format!("{h}:{}:127.0.0.1", upstream.port()));
    }
    args.push("--resolve".into());
    args.push(format!("api.example.test:{}:127.0.0.1", plain.port()));
    let keyhole = Keyhole::start_in(dir, &config, &args, &[]);
    let bundle = keyhole.write(
        "bundle.pem",
        &format!("{}{}", keyhole.ca_pem(), ca.cert_pem),
    );
    let curl = |extra: Vec<String>| {
        let proxy = keyhole.url();
        let bundle = bundle.clone();
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "20", "--proxy", &proxy, "--cacert"])
                .arg(&bundle)
                .args(&extra)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let port = upstream.port();
    // Header substituted; the body credential's placeholder in a header passes (location).
    curl(vec![
        "-H".into(),
        format!("Authorization: Bearer {PH}"),
        "-H".into(),
        format!("X-B: {BODY_PH}"),
        format!("https://api.example.test:{port}/v1/x?token=q"),
    ])
    .await;
    // Body substituted on other.test; the header credential's placeholder in the body passes (host).
    curl(vec![
        "--data-binary".into(),
        format!("{BODY_PH} {PH}"),
        format!("https://other.test:{port}/upload"),
    ])
    .await;
    // Plaintext: passes; the reason says whether https:// would have
    // substituted (vcrd_h: yes; vcrd_b: its header injection is off; the
    // placeholder of vcrd_b on a host it does not allow: no).
    curl(vec![
        "-H".into(),
        format!("Authorization: Bearer {PH}"),
        "-H".into(),
        format!("X-B: {BODY_PH}"),
        format!("http://api.example.test:{}/plain", plain.port()),
    ])
    .await;
    curl(vec![
        "-H".into(),
        format!("X-H: {PH}"),
        format!("http://other.test:{}/plain-other", plain.port()),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read_to_string(&audit_path).unwrap();
    for s in [SECRET, BODY_SECRET] {
        assert!(!text.contains(s), "a secret is in the audit log");
    }
    assert!(!text.contains("token=q"), "a query is in the audit log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |event: &str, credential: &str, location: &str, reason: &str| {
        lines
            .iter()
            .find(|l| {
                l["event"] == event
                    && l["credential"] == credential
                    && l["location"] == location
                    && l["reason"] == reason
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {event}/{credential}/{location}/{reason} in\n{text}"))
    };
    let h = find("substituted", "vcrd_h", "header", "allowed");
    assert_eq!(h["secret_name"], "H_TOKEN");
    assert_eq!(h["host"], "api.example.test");
    assert_eq!(h["method"], "GET");
    assert_eq!(h["path"], "/v1/x");
    assert!(h["time"].as_str().unwrap().ends_with('Z'));
    find("passed", "vcrd_b", "header", "location_disabled");
    let b = find("substituted", "vcrd_b", "body", "allowed");
    assert_eq!(
        (b["host"].as_str(), b["method"].as_str(), b["path"].as_str()),
        (Some("other.test"), Some("POST"), Some("/upload"))
    );
    find("passed", "vcrd_h", "body", "host_not_allowed");
    find("passed", "vcrd_h", "header", "plaintext");
    assert!(
        lines.iter().any(|l| l["credential"] == "vcrd_b"
            && l["path"] == "/plain"
            && l["reason"] == "location_disabled"),
        "{text}"
    );
    let elsewhere = find("passed", "vcrd_h", "header", "host_not_allowed");
    assert_eq!(elsewhere["path"], "/plain-other");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&audit_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
