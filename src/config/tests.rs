//! Compiled only under #[cfg(test)], from the parent module.
//! Loading and validation: defaults, and every refusal with its path.

use std::ffi::OsString;
use std::path::Path;

use super::*;
use crate::model::{Auth, Egress, InjectionLocation, Networking, SecretSource, DEFAULT_VAULT_ID};

fn parse_with(text: &str, dir: &Path) -> Result<Config, Problems> {
    let env = |name: &str| match name {
        "GH_TOKEN" => Some(OsString::from("ghp_fromenv")),
        _ => None,
    };
    parse(
        text,
        &Sources {
            base_dir: dir,
            env: &env,
        },
    )
}

fn ok(text: &str) -> Config {
    match parse_with(text, Path::new(".")) {
        Ok(c) => c,
        Err(p) => panic!("unexpected problems:\n{p}"),
    }
}

/// The problems' lines.
fn bad(text: &str) -> Vec<String> {
    match parse_with(text, Path::new(".")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

/// A config with one environment_variable credential whose `auth` holds `auth`.
fn with_auth(auth: &str) -> String {
    format!(r#"{{"credentials": [{{"auth": {{"type": "environment_variable", {auth}}}}}]}}"#)
}

const NET: &str = r#""networking": {"type": "limited", "allowed_hosts": ["api.github.com"]}"#;

#[test]
fn contract_example_loads_with_defaults() {
    let c = ok(include_str!("../../examples/credentials.json"));
    assert_eq!(c.vault_id, "vlt_local");
    assert!(matches!(c.egress, Egress::Limited { .. }));
    let first = &c.credentials[0];
    assert_eq!(first.id, "vcrd_github");
    let a = first.environment_variable().unwrap();
    assert_eq!(a.secret_name, "GITHUB_TOKEN");
    assert_eq!(
        a.injection_location,
        InjectionLocation {
            header: true,
            body: false
        }
    );
}

#[test]
fn minimal_credential_gets_defaults_and_a_stable_id() {
    let text = with_auth(&format!(
        r#""secret_name": "X", "secret_value": "v", {NET}"#
    ));
    let c = ok(&text);
    assert_eq!(c.vault_id, DEFAULT_VAULT_ID);
    assert_eq!(c.egress, Egress::Unrestricted);
    let cred = &c.credentials[0];
    assert!(
        cred.id.starts_with("vcrd_") && cred.id.len() == 29,
        "{}",
        cred.id
    );
    assert_eq!(cred.id, ok(&text).credentials[0].id, "same file, same id");
    assert_eq!(cred.vault_id, DEFAULT_VAULT_ID);
    assert!(cred.metadata.is_empty());
    let a = cred.environment_variable().unwrap();
    assert_eq!(a.injection_location, InjectionLocation::default());
    assert_eq!(a.secret_source, SecretSource::Inline);
    assert_eq!(a.secret_value.expose(), "v");
    let other = with_auth(&format!(
        r#""secret_name": "Y", "secret_value": "v", {NET}"#
    ));
    assert_ne!(ok(&other).credentials[0].id, cred.id);
}

#[test]
fn partial_injection_location_keeps_the_other_default() {
    let c = ok(&with_auth(&format!(
        r#""secret_name": "X", "secret_value": "v", {NET}, "injection_location": {{"body": true}}"#
    )));
    let a = c.credentials[0].environment_variable().unwrap();
    assert_eq!(
        a.injection_location,
        InjectionLocation {
            header: true,
            body: true
        }
    );
    let e = bad(&with_auth(&format!(
        r#""secret_name": "X", "secret_value": "v", {NET}, "injection_location": {{"header": false}}"#
    )));
    assert_eq!(e, ["credentials[0].auth.injection_location: turns off both header and body; set at least one to true"]);
}

#[test]
fn secrets_from_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
    let text = format!(
        r#"{{"credentials": [
            {{"auth": {{"type": "environment_variable", "secret_name": "A", "secret_value_env": "GH_TOKEN", {NET}}}}},
            {{"auth": {{"type": "environment_variable", "secret_name": "B", "secret_value_file": "tok", {NET}}}}}
        ]}}"#
    );
    let c = parse_with(&text, dir.path()).unwrap();
    let a = c.credentials[0].environment_variable().unwrap();
    assert_eq!(a.secret_value.expose(), "ghp_fromenv");
    assert_eq!(a.secret_source, SecretSource::Env("GH_TOKEN".into()));
    let b = c.credentials[1].environment_variable().unwrap();
    assert_eq!(
        b.secret_value.expose(),
        "s3cret",
        "one trailing newline dropped"
    );
}

#[test]
fn missing_secret_sources_are_explained() {
    let e = bad(&format!(
        r#"{{"credentials": [
            {{"auth": {{"type": "environment_variable", "secret_name": "A", "secret_value_env": "NOPE", {NET}}}}},
            {{"auth": {{"type": "environment_variable", "secret_name": "B", "secret_value_file": "/nonexistent/tok", {NET}}}}},
            {{"auth": {{"type": "environment_variable", "secret_name": "C", {NET}}}}},
            {{"auth": {{"type": "environment_variable", "secret_name": "D", "secret_value": "x", "secret_value_env": "GH_TOKEN", {NET}}}}}
        ]}}"#
    ));
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].starts_with(
        "credentials[0].auth.secret_value_env: keyhole's environment has no variable \"NOPE\""
    ));
    assert!(e[1].starts_with("credentials[1].auth.secret_value_file: cannot read /nonexistent/tok"));
    assert!(e[2].starts_with("credentials[2].auth: give exactly one of secret_value"));
    assert!(e[3].starts_with("credentials[3].auth: give exactly one of secret_value"));
}

#[test]
fn secret_values_with_cr_lf_nul_are_refused_without_showing_them() {
    for v in [r"ghp_abc\r\nX-Evil: 1", r"ghp_abc\n", r"ghp_\u0000abc", ""] {
        let e = bad(&with_auth(&format!(
            r#""secret_name": "X", "secret_value": "{v}", {NET}"#
        )));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("credentials[0].auth.secret_value: "),
            "{}",
            e[0]
        );
        assert!(!e[0].contains("ghp_"), "{}", e[0]);
    }
}

#[test]
fn every_problem_in_one_run_with_its_path() {
    let text = r#"{
      "vault_id": "vlt/x",
      "egress": {"type": "limited", "allowed_hosts": ["api.github.com", "*"]},
      "credentials": [
        {"display_name": "ok", "auth": {"type": "environment_variable", "secret_name": "GITHUB_TOKEN", "secret_value": "a",
          "networking": {"type": "limited", "allowed_hosts": ["api.github.com"]}}},
        {"auth": {"type": "environment_variable", "secret_name": "1BAD", "secret_value": "b",
          "networking": {"type": "limited", "allowed_hosts": ["api.github.com", "https://api.x.com", "api.github.com", ""]}}},
        {"auth": {"type": "environment_variable", "secret_nme": "X", "secret_value": "c",
          "networking": {"type": "unrestricted"}}},
        {"auth": {"type": "environment_variable", "secret_name": "GITHUB_TOKEN", "secret_value": "d",
          "networking": {"type": "limited", "allowed_hosts": []}}},
        {"display_name": "", "metadata": {"k": "v"}, "created_at": "nope",
          "auth": {"type": "vault_key", "secret_name": "Z"}}
      ]
    }"#;
    let e = bad(text);
    let expect = [
        "vault_id: \"vlt/x\" is not a valid id",
        "egress.allowed_hosts[1]: \"*\" alone would match every host",
        "credentials[1].auth.secret_name: \"1BAD\" is not an environment variable name",
        "credentials[1].auth.networking.allowed_hosts[1]: \"https://api.x.com\" is a URL; write the bare host \"api.x.com\"",
        "credentials[1].auth.networking.allowed_hosts[2]: \"api.github.com\" repeats entry [0]; remove one of them",
        "credentials[1].auth.networking.allowed_hosts[3]: the entry is empty",
        "credentials[2].auth: unknown field `secret_nme`",
        "credentials[3].auth.networking.allowed_hosts: has no entries",
        "credentials[4].auth.type: unknown variant `vault_key`, expected one of `environment_variable`, `static_bearer`, `mcp_oauth`",
        "credentials[3].auth.secret_name: \"GITHUB_TOKEN\" is already used by credentials[0]",
    ];
    for (line, want) in e.iter().zip(expect) {
        assert!(
            line.starts_with(want),
            "got  {line}\nwant {want}...\nall:\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), expect.len(), "{}", e.join("\n"));
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let top = bad(r#"{"credentails": []}"#);
    assert!(
        top[0].starts_with("credentails: unknown field `credentails`, expected one of"),
        "{top:?}"
    );
    let cred = bad(r#"{"credentials": [{"nme": 1, "auth": {}}]}"#);
    assert!(
        cred[0].starts_with("credentials[0].nme: unknown field `nme`"),
        "{cred:?}"
    );
    let net = bad(&with_auth(
        r#""secret_name": "X", "secret_value": "v", "networking": {"type": "unrestricted", "allowed_hosts": ["a.com"]}"#,
    ));
    assert!(net[0].contains("unknown field `allowed_hosts`"), "{net:?}");
    let egress = bad(r#"{"egress": {"type": "limited", "hosts": []}}"#);
    assert!(
        egress[0].starts_with("egress: unknown field `hosts`") && egress[0].ends_with("(line 1)"),
        "{egress:?}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let e = bad("{\n  \"vault_id\": \"x\",\n  oops\n}");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("the file is not valid JSON: ") && e[0].ends_with("(line 3)"),
        "{e:?}"
    );
    let e = bad("{\"credentials\": [\n{},\n{\"auth\": 5}\n]}");
    assert!(
        e[0].starts_with("credentials[0]: missing field `auth` (line 2)"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("credentials[1].auth: invalid type: integer `5`"),
        "{e:?}"
    );
    assert!(e[1].ends_with("(line 3)"), "{e:?}");
}

#[test]
fn display_name_metadata_and_timestamps() {
    let long = "x".repeat(256);
    let keys: Vec<String> = (0..17).map(|i| format!("\"k{i}\": \"v\"")).collect();
    let e = bad(&format!(
        r#"{{"credentials": [{{"display_name": "{long}", "metadata": {{{}}}, "archived_at": "soon",
            "auth": {{"type": "environment_variable", "secret_name": "X", "secret_value": "v", {NET}}}}}]}}"#,
        keys.join(",")
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].starts_with("credentials[0].display_name: has 256 characters"));
    assert!(e[1].starts_with("credentials[0].metadata: has 17 pairs"));
    assert!(e[2].starts_with("credentials[0].archived_at: \"soon\" is not an RFC 3339 timestamp"));
}

#[test]
fn mcp_credentials_load() {
    let c = ok(r#"{"credentials": [
        {"id": "vcrd_sb", "auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "t"}},
        {"auth": {"type": "mcp_oauth", "mcp_server_url": "https://mcp.example.com/mcp", "access_token": "a",
          "expires_at": "2030-01-01T00:00:00Z",
          "refresh": {"client_id": "c", "refresh_token": "r", "token_endpoint": "https://auth.example.com/token",
            "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": "s"}, "scope": "read"}}}
    ]}"#);
    assert!(matches!(c.credentials[0].auth, Auth::StaticBearer(_)));
    let Auth::McpOauth(o) = &c.credentials[1].auth else {
        panic!()
    };
    assert_eq!(
        o.refresh.as_ref().unwrap().token_endpoint_auth.type_name(),
        "client_secret_basic"
    );
    let e = bad(r#"{"credentials": [
        {"auth": {"type": "static_bearer", "mcp_server_url": "mcp.example.com", "token": ""}},
        {"auth": {"type": "mcp_oauth", "mcp_server_url": "https://m.example.com", "access_token": "a",
          "refresh": {"client_id": "", "refresh_token": "r", "token_endpoint": "https://a.example.com/t",
            "token_endpoint_auth": {"type": "client_secret_post"}}}}
    ]}"#);
    assert!(
        e[0].starts_with(
            "credentials[0].auth.mcp_server_url: \"mcp.example.com\" is not an http(s) URL"
        ),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("credentials[0].auth.token: is empty"),
        "{e:#?}"
    );
    assert!(
        e[2].starts_with("credentials[1].auth: missing field `client_secret`"),
        "{e:#?}"
    );
}

#[test]
fn duplicate_ids_and_unreachable_hosts() {
    let e = bad(&format!(
        r#"{{"egress": {{"type": "limited", "allowed_hosts": ["*.github.com"]}},
           "credentials": [
            {{"id": "vcrd_a", "auth": {{"type": "environment_variable", "secret_name": "A", "secret_value": "v",
              "networking": {{"type": "limited", "allowed_hosts": ["api.github.com", "github.com", "*.api.github.com"]}}}}}},
            {{"id": "vcrd_a", "auth": {{"type": "environment_variable", "secret_name": "B", "secret_value": "v", {NET}}}}}
        ]}}"#
    ));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].starts_with("credentials[1].id: \"vcrd_a\" is already the id of credentials[0]"));
    assert!(e[1].starts_with(
        "credentials[0].auth.networking.allowed_hosts[1]: \"github.com\" is not reachable"
    ));
    assert!(e[1].contains("credential_host_unreachable_error"));
}

#[test]
fn egress_extras_make_hosts_reachable() {
    let c = ok(
        r#"{"egress": {"type": "limited", "allow_package_managers": true, "allow_mcp_servers": true},
        "credentials": [
          {"auth": {"type": "environment_variable", "secret_name": "P", "secret_value": "v",
            "networking": {"type": "limited", "allowed_hosts": ["pypi.org", "mcp.example.com"]}}},
          {"auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "t"}}
        ]}"#,
    );
    assert!(
        matches!(c.credentials[0].environment_variable().unwrap().networking, Networking::Limited(ref h) if h.len() == 2)
    );
}

#[test]
fn empty_file_object_is_a_valid_config() {
    let c = ok("{}");
    assert!(c.credentials.is_empty());
    assert_eq!(c.egress, Egress::Unrestricted);
}

#[test]
fn load_reports_unreadable_files() {
    let e = load(Path::new("/nonexistent/keyhole.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cannot read the config file /nonexistent/keyhole.json"),
        "{e}"
    );
}

#[test]
fn pinned_placeholders_are_checked() {
    let c = ok(&with_auth(&format!(
        r#""secret_name": "X", "secret_value": "v", "placeholder": "kh_pinned_0123456789", {NET}"#
    )));
    assert_eq!(
        c.credentials[0]
            .environment_variable()
            .unwrap()
            .placeholder
            .as_deref(),
        Some("kh_pinned_0123456789")
    );
    for (p, want) in [
        ("short", "not a usable placeholder"),
        ("has space 0123456789", "not a usable placeholder"),
        ("xx_realsecret_value_xx", "contains the secret value"),
    ] {
        let e = bad(&with_auth(&format!(
            r#""secret_name": "X", "secret_value": "realsecret_value", "placeholder": "{p}", {NET}"#
        )));
        assert!(
            e[0].starts_with("credentials[0].auth.placeholder: ") && e[0].contains(want),
            "{e:?}"
        );
        assert!(!e[0].contains("realsecret_value\""), "{e:?}");
    }
    let e = bad(&format!(
        r#"{{"credentials": [
            {{"auth": {{"type": "environment_variable", "secret_name": "A", "secret_value": "v", "placeholder": "kh_pinned_0123456789", {NET}}}}},
            {{"auth": {{"type": "environment_variable", "secret_name": "B", "secret_value": "w", "placeholder": "kh_pinned_0123456789_b", {NET}}}}}
        ]}}"#
    ));
    assert!(e[0].starts_with("credentials[1].auth.placeholder: \"kh_pinned_0123456789_b\" overlaps the placeholder of credentials[0]"), "{e:?}");
}

#[test]
fn a_secret_of_the_wrong_type_is_not_echoed() {
    for field in ["secret_value", "token"] {
        let text = if field == "token" {
            r#"{"credentials": [{"auth": {"type": "static_bearer", "mcp_server_url": "https://m.example.com", "token": 987654321}}]}"#.to_owned()
        } else {
            with_auth(
                r#""secret_name": "X", "secret_value": 987654321, "networking": {"type": "unrestricted"}"#,
            )
        };
        let e = bad(&text);
        assert!(
            e[0].contains("must be a JSON string") && !e[0].contains("987654"),
            "{e:?}"
        );
    }
}

/// A `static_bearer` credential for `url` in `vault` (`vlt_local` or `vlt_b`).
fn bearer_in(vault: &str, url: &str) -> String {
    format!(
        r#"{{"vault_id": "{vault}", "auth": {{"type": "static_bearer", "mcp_server_url": "{url}", "token": "t"}}}}"#
    )
}

fn with_vaults(credentials: &[String]) -> String {
    format!(
        r#"{{"vaults": [{{"id": "vlt_local"}}, {{"id": "vlt_b"}}, {{"id": "vlt_old", "archived_at": "2026-01-01T00:00:00Z"}}],
            "credentials": [{}]}}"#,
        credentials.join(",")
    )
}

#[test]
fn mcp_server_urls_keyhole_cannot_match_are_refused() {
    let e = bad(&with_vaults(&[
        bearer_in("vlt_local", "https://a.example.com/sse?key=1"),
        bearer_in("vlt_local", "https://b.example.com/sse#x"),
        bearer_in("vlt_local", "https://user:hunter2@c.example.com/"),
        bearer_in("vlt_local", "https://d.example.com/sse/../admin"),
        bearer_in("vlt_local", "e.example.com"),
    ]));
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("credentials[0].auth.mcp_server_url: has a query"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("credentials[1].auth.mcp_server_url: has a fragment"),
        "{e:#?}"
    );
    assert!(
        e[2].starts_with("credentials[2].auth.mcp_server_url: holds a user name or password"),
        "{e:#?}"
    );
    assert!(!e[2].contains("hunter2"), "{e:#?}");
    assert!(
        e[3].starts_with("credentials[3].auth.mcp_server_url: has a path with '.'"),
        "{e:#?}"
    );
    assert!(e[4].contains("is not an http(s) URL"), "{e:#?}");
}

#[test]
fn mcp_tokens_must_fit_in_a_header() {
    let e = bad(r#"{"credentials": [
        {"auth": {"type": "static_bearer", "mcp_server_url": "https://a.example.com/", "token": "tok\u0001en"}},
        {"auth": {"type": "mcp_oauth", "mcp_server_url": "https://b.example.com/", "access_token": "at\u007f"}}
    ]}"#);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("credentials[0].auth.token: holds a control character"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("credentials[1].auth.access_token: holds a control character"),
        "{e:#?}"
    );
}

#[test]
fn one_vault_has_one_credential_per_mcp_server() {
    // "/sse" and "/sse/" (and the explicit default port) are the same server.
    let e = bad(&with_vaults(&[
        bearer_in("vlt_local", "https://mcp.example.com/sse"),
        bearer_in("vlt_local", "https://MCP.example.com:443/sse/"),
    ]));
    assert_eq!(
        e,
        [
            "credentials[1].auth.mcp_server_url: vault \"vlt_local\" already has a credential for this MCP server (credentials[0].auth.mcp_server_url, the same https://mcp.example.com/sse after normalising); keep one: update that credential's tokens instead, or archive one of them"
        ]
    );
}

#[test]
fn two_vaults_cannot_share_an_mcp_server_prefix() {
    let e = bad(&with_vaults(&[
        bearer_in("vlt_local", "https://mcp.example.com/sse"),
        bearer_in("vlt_b", "https://mcp.example.com/sse/"),
    ]));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("credentials[1].auth.mcp_server_url: credentials[0].auth.mcp_server_url (vault \"vlt_local\") is for the same MCP server (https://mcp.example.com/sse after normalising); keyhole serves every vault at once"),
        "{e:#?}"
    );
}

#[test]
fn distinct_mcp_prefixes_and_inactive_duplicates_are_fine() {
    // Different lengths: the longest prefix chooses. Other scheme or port:
    // another origin. Archived credentials and vaults do not count.
    let mut archived = bearer_in("vlt_local", "https://mcp.example.com/sse");
    archived.insert_str(1, r#""archived_at": "2026-01-01T00:00:00Z", "#);
    let c = ok(&with_vaults(&[
        bearer_in("vlt_local", "https://mcp.example.com/sse"),
        bearer_in("vlt_local", "https://mcp.example.com/"),
        bearer_in("vlt_b", "https://mcp.example.com/sse/x"),
        bearer_in("vlt_b", "http://mcp.example.com/sse"),
        bearer_in("vlt_b", "https://mcp.example.com:8443/sse"),
        archived,
        bearer_in("vlt_old", "https://mcp.example.com/sse"),
    ]));
    assert_eq!(c.credentials.len(), 7);
}
