//! Compiled only under #[cfg(test)], from the parent module.
//! Update semantics, field by field against the seed page.

use std::ffi::OsString;
use std::path::Path;

use super::*;
use crate::config::{self, Sources};
use crate::host::HostPattern;

const FILE: &str = r#"{"credentials": [
  {"id": "env", "display_name": "GitHub", "metadata": {"team": "infra", "env": "prod"},
   "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
   "auth": {"type": "environment_variable", "secret_name": "GITHUB_TOKEN", "secret_value_env": "GH",
            "networking": {"type": "limited", "allowed_hosts": ["api.github.com"]}}},
  {"id": "bearer", "auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "tok_old"}},
  {"id": "oauth", "auth": {"type": "mcp_oauth", "mcp_server_url": "https://mcp.example.com/oauth",
    "access_token": "at_old", "expires_at": "2026-06-01T00:00:00Z",
    "refresh": {"client_id": "cid", "refresh_token": "rt_old", "token_endpoint": "https://auth.example.com/token",
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": "cs_old"}, "scope": "read"}}},
  {"id": "bare", "archived_at": "2026-02-01T00:00:00Z",
   "auth": {"type": "mcp_oauth", "mcp_server_url": "https://mcp2.example.com/", "access_token": "at"}}
]}"#;

fn cred(id: &str) -> Credential {
    let env = |name: &str| (name == "GH").then(|| OsString::from("ghp_fromenv"));
    let dir = Path::new(".");
    let config = config::parse(
        FILE,
        &Sources {
            base_dir: dir,
            env: &env,
        },
    );
    let all = config.unwrap_or_else(|p| panic!("{p}")).credentials;
    all.into_iter().find(|c| c.id == id).unwrap()
}

/// A body changing only `auth` of `type`, with `fields`.
fn auth(kind: &str, fields: &str) -> String {
    format!(r#"{{"auth": {{"type": "{kind}", {fields}}}}}"#)
}

fn ev(fields: &str) -> String {
    auth("environment_variable", fields)
}

fn mo(fields: &str) -> String {
    auth("mcp_oauth", fields)
}

fn run(c: &Credential, body: &str) -> Result<Credential, Vec<String>> {
    let update = serde_json::from_str::<CredentialUpdate>(body).unwrap();
    let now = rules::parse_timestamp("2026-03-15T10:00:00Z").unwrap();
    apply(c, update, now).map_err(|p| p.iter().map(|p| p.to_string()).collect())
}

fn ok(c: &Credential, body: &str) -> Credential {
    run(c, body).unwrap_or_else(|p| panic!("{body}\n{p:?}"))
}

/// Asserts exactly one problem, starting with `prefix`.
fn refused(c: &Credential, body: &str, prefix: &str) {
    let out = run(c, body).err().unwrap_or_default();
    let one = out.len() == 1 && out[0].starts_with(prefix);
    assert!(one, "{body}\n{out:?}");
}

fn env(c: &Credential) -> &EnvironmentVariableAuth {
    c.environment_variable().unwrap()
}

fn oauth(c: &Credential) -> &McpOauthAuth {
    match &c.auth {
        Auth::McpOauth(a) => a,
        _ => panic!("not mcp_oauth"),
    }
}

fn refresh(c: &Credential) -> &McpOauthRefresh {
    oauth(c).refresh.as_ref().unwrap()
}

/// The main secret of any auth type.
fn secret(c: &Credential) -> &str {
    match &c.auth {
        Auth::EnvironmentVariable(a) => a.secret_value.expose(),
        Auth::StaticBearer(a) => a.token.expose(),
        Auth::McpOauth(a) => a.access_token.expose(),
    }
}

fn expiry(c: &Credential) -> Option<&str> {
    oauth(c).expires_at.as_deref()
}

fn tea(c: &Credential) -> String {
    match &refresh(c).token_endpoint_auth {
        TokenEndpointAuth::None => "none".to_owned(),
        TokenEndpointAuth::ClientSecretBasic(s) => format!("basic {}", s.expose()),
        TokenEndpointAuth::ClientSecretPost(s) => format!("post {}", s.expose()),
    }
}

#[test]
fn metadata_patch_upserts_deletes_and_keeps() {
    let e = cred("env");
    let c = ok(
        &e,
        r#"{"metadata": {"team": "x", "env": null, "new": "y", "no": null}}"#,
    );
    let pairs: Vec<String> = c.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(pairs, ["new=y", "team=x"]);
    assert_eq!(ok(&e, r#"{"metadata": null}"#).metadata, e.metadata);
}

#[test]
fn metadata_result_must_meet_the_limits() {
    let e = cred("env");
    let many: Vec<String> = (0..15).map(|i| format!(r#""k{i}": "v""#)).collect();
    let body = format!(r#"{{"metadata": {{{}}}}}"#, many.join(","));
    refused(&e, &body, "metadata: has 17 pairs; at most 16");
    let body = format!(r#"{{"metadata": {{"team": "{}"}}}}"#, "v".repeat(513));
    refused(&e, &body, "metadata.team: the value has 513");
}

#[test]
fn display_name_replaces_clears_and_keeps() {
    let e = cred("env");
    let name = |body: &str| ok(&e, body).display_name;
    assert_eq!(name(r#"{"display_name": "New"}"#).as_deref(), Some("New"));
    assert_eq!(name(r#"{"display_name": null}"#), None);
    assert_eq!(name("{}").as_deref(), Some("GitHub"));
    refused(&e, r#"{"display_name": ""}"#, "display_name: is empty");
    let long = format!(r#"{{"display_name": "{}"}}"#, "x".repeat(256));
    refused(&e, &long, "display_name: has 256 characters");
}

#[test]
fn networking_replaces_as_a_whole_and_null_keeps() {
    let e = cred("env");
    let net = |n: &str| {
        env(&ok(&e, &ev(&format!(r#""networking": {n}"#))))
            .networking
            .clone()
    };
    let hosts = ["*.example.com", "192.0.2.1"].map(|h| HostPattern::parse(h).unwrap());
    let limited = r#"{"type": "limited", "allowed_hosts": ["*.example.com", "192.0.2.1"]}"#;
    assert_eq!(net(limited), Networking::Limited(hosts.to_vec()));
    assert_eq!(net(r#"{"type": "unrestricted"}"#), Networking::Unrestricted);
    assert_eq!(net("null"), env(&e).networking);
}

#[test]
fn networking_hosts_are_checked_with_their_paths() {
    let e = cred("env");
    let limited = |h: &str| {
        ev(&format!(
            r#""networking": {{"type": "limited", "allowed_hosts": [{h}]}}"#
        ))
    };
    let hosts = limited(r#""a.com", "b.com", "https://c.com/""#);
    refused(&e, &hosts, "auth.networking.allowed_hosts[2]: ");
    let want = "auth.networking.allowed_hosts: has no entries";
    refused(&e, &limited(""), want);
}

#[test]
fn secret_value_replaces_and_becomes_inline_null_keeps() {
    let e = cred("env");
    assert_eq!(env(&e).secret_source, SecretSource::Env("GH".into()));
    let c = ok(&e, &ev(r#""secret_value": "ghp_new""#));
    assert_eq!(secret(&c), "ghp_new");
    assert_eq!(env(&c).secret_source, SecretSource::Inline);
    let c = ok(&e, &ev(r#""secret_value": null"#));
    assert_eq!(secret(&c), "ghp_fromenv");
    assert_eq!(env(&c).secret_source, SecretSource::Env("GH".into()));
}

#[test]
fn invalid_secret_value_is_refused_without_showing_it() {
    let e = cred("env");
    let body = ev(r#""secret_value": "ghp_leak\r\nX: y""#);
    refused(&e, &body, "auth.secret_value: holds a CR, LF or NUL");
    assert!(!run(&e, &body).unwrap_err()[0].contains("ghp_leak"));
}

#[test]
fn immutable_fields_are_refused_by_name() {
    let message = "is immutable; create a new credential to change it";
    for name in [r#""GITHUB_TOKEN""#, "null"] {
        let body = ev(&format!(r#""secret_name": {name}"#));
        refused(&cred("env"), &body, &format!("auth.secret_name: {message}"));
    }
    let url = r#""mcp_server_url": "https://x.com/""#;
    let want = format!("auth.mcp_server_url: {message}");
    refused(&cred("bearer"), &auth("static_bearer", url), &want);
    refused(&cred("oauth"), &mo(url), &want);
}

#[test]
fn auth_type_cannot_change() {
    let body = auth("static_bearer", r#""token": "t""#);
    let want = "auth.type: is \"static_bearer\" but the credential's auth type is \"environment_variable\"; the type cannot change";
    refused(&cred("env"), &body, want);
}

#[test]
fn injection_location_merges_and_keeps_one_on() {
    let at = |l: &str| ev(&format!(r#""injection_location": {l}"#));
    let loc = |c: &Credential| env(c).injection_location;
    let c = ok(&cred("env"), &at(r#"{"body": true}"#));
    assert!(loc(&c).header && loc(&c).body);
    let c = ok(&c, &at(r#"{"header": false, "body": null}"#));
    assert!(!loc(&c).header && loc(&c).body);
    let want = "auth.injection_location: would turn off both header and body";
    refused(&cred("env"), &at(r#"{"header": false}"#), want);
}

#[test]
fn static_bearer_token_replaces_and_null_keeps() {
    let b = cred("bearer");
    let body = |t: &str| auth("static_bearer", &format!(r#""token": {t}"#));
    assert_eq!(secret(&ok(&b, &body(r#""tok_new""#))), "tok_new");
    assert_eq!(secret(&ok(&b, &body("null"))), "tok_old");
    refused(&b, &body(r#""""#), "auth.token: is empty");
}

#[test]
fn access_token_with_and_without_expiry() {
    let o = cred("oauth");
    let c = ok(&o, &mo(r#""access_token": "at_new""#));
    assert_eq!(secret(&c), "at_new");
    assert_eq!(expiry(&c), Some("2026-06-01T00:00:00Z"), "old expiry stays");
    let c = ok(
        &o,
        &mo(r#""access_token": "at_2", "expires_at": "2026-04-01T00:00:00+02:00""#),
    );
    assert_eq!(secret(&c), "at_2");
    assert_eq!(expiry(&c), Some("2026-04-01T00:00:00+02:00"));
    let c = ok(&o, &mo(r#""expires_at": null"#));
    assert_eq!(secret(&c), "at_old");
    assert_eq!(expiry(&c), None);
}

#[test]
fn expires_at_must_be_a_future_rfc3339_time() {
    let o = cred("oauth");
    let body = |t: &str| mo(&format!(r#""access_token": "a", "expires_at": "{t}""#));
    let now = body("2026-03-15T10:00:00Z");
    refused(
        &o,
        &now,
        "auth.expires_at: \"2026-03-15T10:00:00Z\" is not in",
    );
    let past = body("2020-01-01T00:00:00Z");
    refused(
        &o,
        &past,
        "auth.expires_at: \"2020-01-01T00:00:00Z\" is not in",
    );
    let bad = body("tomorrow");
    refused(&o, &bad, "auth.expires_at: \"tomorrow\" is not an RFC 3339");
}

#[test]
fn refresh_fields_update_and_null_changes_nothing() {
    let o = cred("oauth");
    let c = ok(
        &o,
        &mo(r#""refresh": {"refresh_token": "rt_new", "scope": "write"}"#),
    );
    assert_eq!(refresh(&c).refresh_token.expose(), "rt_new");
    assert_eq!(refresh(&c).scope.as_deref(), Some("write"));
    assert_eq!(refresh(&c).client_id, "cid");
    let c = ok(&c, &mo(r#""refresh": {"scope": null}"#));
    assert_eq!(refresh(&c).scope, None);
    let c = ok(&o, &mo(r#""refresh": null"#));
    assert_eq!(refresh(&c).refresh_token.expose(), "rt_old");
    let body = mo(r#""refresh": {"refresh_token": "a\nb"}"#);
    refused(&o, &body, "auth.refresh.refresh_token: holds a CR");
}

#[test]
fn refresh_needs_a_stored_refresh_configuration() {
    let bare = cred("bare");
    let want = "auth.refresh: the credential has no refresh configuration; create a new credential with one";
    refused(&bare, &mo(r#""refresh": {"scope": "x"}"#), want);
    let c = ok(&bare, &mo(r#""refresh": {}"#));
    assert!(oauth(&c).refresh.is_none());
}

#[test]
fn token_endpoint_auth_same_type_and_switch() {
    let o = cred("oauth");
    let body = |a: &str| mo(&format!(r#""refresh": {{"token_endpoint_auth": {a}}}"#));
    let same = body(r#"{"type": "client_secret_basic", "client_secret": null}"#);
    assert_eq!(tea(&ok(&o, &same)), "basic cs_old");
    let post = body(r#"{"type": "client_secret_post"}"#);
    let switched = ok(&o, &post);
    assert_eq!(tea(&switched), "post cs_old", "a switch keeps the secret");
    let new = body(r#"{"type": "client_secret_basic", "client_secret": "cs_new"}"#);
    assert_eq!(tea(&ok(&switched, &new)), "basic cs_new");
    let mut none = o.clone();
    if let Auth::McpOauth(McpOauthAuth {
        refresh: Some(r), ..
    }) = &mut none.auth
    {
        r.token_endpoint_auth = TokenEndpointAuth::None;
    }
    let want = "auth.refresh.token_endpoint_auth.client_secret: is required";
    refused(&none, &post, want);
    let given = body(r#"{"type": "client_secret_post", "client_secret": "s"}"#);
    assert_eq!(tea(&ok(&none, &given)), "post s");
}

#[test]
fn unknown_fields_are_refused_by_serde() {
    for body in [
        r#"{"name": "x"}"#.to_owned(),
        ev(r#""secret_value_env": "X""#),
        ev(r#""networking": {"type": "unrestricted", "allowed_hosts": []}"#),
        ev(r#""injection_location": {"query": true}"#),
        mo(r#""refresh": {"client_id": "c"}"#),
        mo(r#""refresh": {"token_endpoint_auth": {"type": "none"}}"#),
        auth("vault", r#""x": 1"#),
    ] {
        let parsed = serde_json::from_str::<CredentialUpdate>(&body);
        assert!(parsed.is_err(), "{body}");
    }
    let err = parse(r#"{"metadata": {"a": 1}}"#).unwrap_err().to_string();
    assert!(
        err.starts_with("metadata.a: invalid type: integer"),
        "{err}"
    );
    let err = parse(r#"{"vault_id": "v"}"#).unwrap_err().to_string();
    assert!(err.starts_with("vault_id: unknown field"), "{err}");
    assert!(parse("{} x").is_err());
    assert!(parse(r#"{"auth": null}"#).unwrap().auth.is_none());
}

#[test]
fn every_problem_is_reported_in_one_call() {
    let body = r#"{"display_name": "", "auth": {"type": "environment_variable",
        "secret_name": "X", "secret_value": "", "injection_location": {"header": false},
        "networking": {"type": "limited", "allowed_hosts": ["a.com", "a.com"]}}}"#;
    let out = run(&cred("env"), body).unwrap_err();
    let paths: Vec<&str> = out.iter().filter_map(|p| p.split(": ").next()).collect();
    let net = "auth.networking.allowed_hosts[1]";
    let want = [
        "display_name",
        "auth.secret_name",
        "auth.secret_value",
        net,
        "auth.injection_location",
    ];
    assert_eq!(paths, want);
    let key = "k".repeat(65);
    let body = format!(r#"{{"metadata": {{"{key}": "v"}}, "auth": {{"type": "mcp_oauth"}}}}"#);
    assert_eq!(run(&cred("env"), &body).unwrap_err().len(), 2);
}

#[test]
fn original_is_untouched_and_identity_kept() {
    let e = cred("env");
    let body = r#"{"display_name": "X", "metadata": {"a": "b"}, "auth": {"type": "environment_variable", "secret_value": "new"}}"#;
    let after = ok(&e, body);
    assert_eq!(e.display_name.as_deref(), Some("GitHub"));
    assert_eq!(e.metadata.len(), 2);
    assert_eq!(secret(&e), "ghp_fromenv");
    assert_eq!(e.updated_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(after.id, "env");
    assert_eq!(after.vault_id, "vlt_local");
    assert_eq!(after.created_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(after.updated_at.as_deref(), Some("2026-03-15T10:00:00Z"));
    assert_eq!(after.archived_at, None);
}

#[test]
fn archived_credentials_can_be_updated_and_stay_archived() {
    let body = mo(r#""access_token": "x""#).replacen('{', r#"{"display_name": "old", "#, 1);
    let c = ok(&cred("bare"), &body);
    assert_eq!(c.archived_at.as_deref(), Some("2026-02-01T00:00:00Z"));
    assert_eq!(c.display_name.as_deref(), Some("old"));
    assert_eq!(secret(&c), "x");
}
