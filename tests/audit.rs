//! The audit log: one JSON line per substitution and per placeholder passed
//! on, with no value in it.

mod support;

use std::time::Duration;

use support::config::{Config, Credential, Injection};
use support::world::World;

const SECRET: &str = "sek_audit_4e4e4e";
const BODY_SECRET: &str = "sek_audit_body_7a7a";
const PH: &str = "kh_pinned_audit_0123456789";
const BODY_PH: &str = "kh_pinned_audit_body_012345";

#[tokio::test(flavor = "multi_thread")]
async fn every_substitution_and_pass_is_a_json_line_without_values() {
    // vcrd_h: headers on api.example.test; vcrd_b: bodies only, on both.
    let config = Config::new()
        .credential(
            Credential::new("vcrd_h")
                .secret("H_TOKEN", SECRET)
                .placeholder(PH)
                .allowed_hosts(&["api.example.test"]),
        )
        .credential(
            Credential::new("vcrd_b")
                .secret("B_TOKEN", BODY_SECRET)
                .placeholder(BODY_PH)
                .allowed_hosts(&["api.example.test", "other.test"])
                .injection(Injection::BodyOnly),
        );
    let w = World::builder()
        .config(config)
        .names(&["api.example.test", "other.test"])
        .plain(&["api.example.test"])
        .audit_log()
        .start()
        .await;
    let plain = w.plain().port();
    // The header credential's placeholder, and the body credential's.
    let (auth, x_b) = (
        format!("Authorization: Bearer {PH}"),
        format!("X-B: {BODY_PH}"),
    );
    // Header substituted; the body credential's placeholder in a header passes (location).
    w.curl_ok(&[
        "-H",
        &auth,
        "-H",
        &x_b,
        &w.url("api.example.test", "/v1/x?token=q"),
    ])
    .await;
    // Body substituted on other.test; the header credential's placeholder in the body passes (host).
    let body = format!("{BODY_PH} {PH}");
    w.curl_ok(&["--data-binary", &body, &w.url("other.test", "/upload")])
        .await;
    // Plaintext: passes; the reason says whether https:// would have
    // substituted (vcrd_h: yes; vcrd_b: its header injection is off; the
    // placeholder of vcrd_b on a host it does not allow: no).
    w.curl_ok(&[
        "-H",
        &auth,
        "-H",
        &x_b,
        &format!("http://api.example.test:{plain}/plain"),
    ])
    .await;
    w.curl_ok(&[
        "-H",
        &format!("X-H: {PH}"),
        &format!("http://other.test:{plain}/plain-other"),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read_to_string(w.audit_log()).unwrap();
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
        std::fs::metadata(w.audit_log())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}
