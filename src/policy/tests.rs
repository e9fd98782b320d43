//! Compiled only under #[cfg(test)], from the parent module.
//! The compiled policy and `explain`, on small configs.

use std::path::Path;

use super::*;
use crate::config::{parse, Sources};

fn policy(text: &str) -> Policy {
    let env = |_: &str| None;
    match parse(
        text,
        &Sources {
            base_dir: Path::new("."),
            env: &env,
        },
    ) {
        Ok(c) => Policy::new(c),
        Err(p) => panic!("{p}"),
    }
}

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

fn env_cred(name: &str, networking: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "vcrd_{name}", {extra} "auth": {{"type": "environment_variable", "secret_name": "{name}", "secret_value": "v_{name}", "networking": {networking}}}}}"#
    )
}

fn limited(hosts: &[&str]) -> String {
    let list: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        r#"{{"type": "limited", "allowed_hosts": [{}]}}"#,
        list.join(",")
    )
}

const UNRESTRICTED: &str = r#"{"type": "unrestricted"}"#;

#[test]
fn deny_tunnel_intercept() {
    let p = policy(&format!(
        r#"{{"egress": {}, "credentials": [{}]}}"#,
        limited(&["api.github.com", "*.example.com", "203.0.113.9"]),
        env_cred("GH", &limited(&["api.github.com"]), "")
    ));
    assert_eq!(p.decide(&host("api.github.com")), Action::Intercept(&[0]));
    assert_eq!(p.decide(&host("API.GITHUB.COM.")), Action::Intercept(&[0]));
    assert_eq!(p.decide(&host("x.example.com")), Action::Tunnel);
    assert_eq!(p.decide(&host("0xcb.0.113.9")), Action::Tunnel);
    assert_eq!(p.decide(&host("example.com")), Action::Deny);
    assert_eq!(p.decide(&host("github.com")), Action::Deny);
    assert_eq!(p.decide(&host("[::1]")), Action::Deny);
}

#[test]
fn several_credentials_on_one_host_come_in_file_order() {
    let p = policy(&format!(
        r#"{{"credentials": [{}, {}, {}, {}]}}"#,
        env_cred("A", &limited(&["*.example.com"]), ""),
        env_cred("B", UNRESTRICTED, ""),
        env_cred("C", &limited(&["api.example.com"]), ""),
        env_cred("D", &limited(&["other.org"]), "")
    ));
    assert_eq!(p.credentials_for(&host("api.example.com")), [0, 1, 2]);
    assert_eq!(p.credentials_for(&host("www.example.com")), [0, 1]);
    assert_eq!(p.credentials_for(&host("other.org")), [1, 3]);
    assert_eq!(p.credentials_for(&host("nowhere.net")), [1]);
    assert_eq!(p.credentials_for(&host("[::1]")), [1]);
}

#[test]
fn archived_credentials_never_apply_and_mcp_servers_are_intercepted() {
    let p = policy(&format!(
        r#"{{"credentials": [{}, {}]}}"#,
        env_cred(
            "A",
            &limited(&["api.example.com"]),
            r#""archived_at": "2026-01-01T00:00:00Z","#
        ),
        r#"{"auth": {"type": "static_bearer", "mcp_server_url": "https://api.example.com/mcp", "token": "t"}}"#
    ));
    // No placeholder can be substituted there, but the MCP credential's
    // token is injected: the host is intercepted.
    assert_eq!(p.credentials_for(&host("api.example.com")), &[] as &[u32]);
    assert_eq!(p.decide(&host("api.example.com")), Action::Intercept(&[]));
    assert_eq!(p.decide(&host("other.example.com")), Action::Tunnel);
}

#[test]
fn egress_extras() {
    let p = policy(&format!(
        r#"{{"egress": {{"type": "limited", "allow_package_managers": true, "allow_mcp_servers": true}}, "credentials": [{}]}}"#,
        r#"{"auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "t"}}"#
    ));
    assert!(p.egress_allows(&host("pypi.org")));
    assert!(p.egress_allows(&host("mcp.example.com")));
    assert!(!p.egress_allows(&host("example.com")));
    for h in PACKAGE_MANAGER_HOSTS {
        assert!(HostPattern::parse(h).is_ok(), "{h}");
    }
}

#[test]
fn explain_names_the_entry_and_the_reason() {
    let p = policy(&format!(
        r#"{{"egress": {}, "credentials": [{}, {}, {}]}}"#,
        limited(&["api.github.com", "*.githubusercontent.com", "example.org"]),
        env_cred(
            "GH",
            &limited(&["api.github.com", "*.githubusercontent.com"]),
            ""
        ),
        env_cred("OTHER", &limited(&["example.org"]), ""),
        r#"{"id": "vcrd_mcp", "auth": {"type": "static_bearer", "mcp_server_url": "https://example.org/mcp", "token": "t"}}"#
    ));
    let e = explain(&p, "https://raw.githubusercontent.com/o/r/main/x").unwrap();
    assert_eq!(
        (e.host.as_str(), e.action, e.egress.allowed),
        ("raw.githubusercontent.com", "intercept", true)
    );
    assert_eq!(e.egress.matched.as_deref(), Some("*.githubusercontent.com"));
    assert!(e.credentials[0].substituted);
    assert_eq!(
        e.credentials[0].matched.as_deref(),
        Some("*.githubusercontent.com")
    );
    assert!(!e.credentials[1].substituted);
    assert!(e.credentials[1]
        .reason
        .contains("matches none of its allowed_hosts"));
    assert!(e.credentials[2]
        .reason
        .contains("its mcp_server_url names another host"));

    let e = explain(&p, "https://example.org/mcp/tools").unwrap();
    assert!(e.credentials[2].substituted, "{}", e.credentials[2].reason);
    assert_eq!(
        e.credentials[2].matched.as_deref(),
        Some("https://example.org/mcp")
    );
    let e = explain(&p, "https://example.org/messages?x=1").unwrap();
    assert!(!e.credentials[2].substituted);
    assert_eq!(
        e.credentials[2].reason,
        "same origin, path outside the credential's"
    );
    let e = explain(&p, "http://example.org/mcp").unwrap();
    assert!(!e.credentials[2].substituted);
    assert!(e.credentials[2].reason.contains("plaintext"));

    let e = explain(&p, "http://api.github.com/").unwrap();
    assert_eq!(e.action, "forward");
    assert!(!e.credentials[0].substituted);
    assert!(e.credentials[0].reason.contains("plaintext"));

    let e = explain(&p, "evil.com:443").unwrap();
    assert_eq!(
        (e.action, e.egress.allowed, e.port),
        ("deny", false, Some(443))
    );

    let e = explain(&p, "example.org").unwrap();
    assert_eq!(e.action, "intercept");
    assert!(e.credentials[1].substituted);

    assert!(explain(&p, "ftp://example.org/")
        .unwrap_err()
        .to_string()
        .contains("scheme"));
    assert!(explain(&p, "api%2egithub.com").is_err());
    let e = explain(&p, "https://user:pw@API.github.com:8443/x?y").unwrap();
    assert_eq!((e.host.as_str(), e.port), ("api.github.com", Some(8443)));
}
