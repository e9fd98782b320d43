//! Create bodies into the model, validated exactly as a config file is.
//!
//! A credential's create body is its file form without `id`, `vault_id`
//! and timestamps, so it is validated by loading a one-credential file
//! through [`crate::config::parse`]: the same rules, the same messages.
//! Problem paths are then made relative to the body. Rules that need the
//! whole file (unique `secret_name`, hosts reachable through egress) are
//! checked when the store loads the edited file.
//!
//! The file's extensions `secret_value_env`, `secret_value_file` and
//! `placeholder` are refused here: the API sets secrets by value, and must
//! not make keyhole read its own environment or files into a credential.

use std::path::Path;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::error::{relative, ApiError};
use crate::config::{self, Sources};
use crate::mcp;
use crate::model::{rules, Auth, Config, Credential, Problems};

/// Fields of a credential create body (vault API).
const CREDENTIAL_FIELDS: [&str; 3] = ["auth", "display_name", "metadata"];
/// `auth` fields that only a config file may use.
const FILE_ONLY_AUTH_FIELDS: [&str; 3] = ["secret_value_env", "secret_value_file", "placeholder"];

/// The credential a create body describes, with the given id, vault and
/// timestamps, or every problem found (paths relative to the body).
pub fn credential(
    body: &Value,
    id: &str,
    vault_id: &str,
    now: OffsetDateTime,
    at: &str,
) -> Result<Credential, Problems> {
    let mut problems = Problems::new();
    let Some(fields) = body.as_object() else {
        problems.push("", "the request body must be a JSON object with auth, and optionally display_name and metadata");
        return Err(problems);
    };
    let mut file = Map::new();
    file.insert("id".into(), json!(id));
    file.insert("vault_id".into(), json!(vault_id));
    for (key, value) in fields {
        if !CREDENTIAL_FIELDS.contains(&key.as_str()) {
            problems.push(
                key.as_str(),
                "is not a field of a credential create request; send auth, display_name and metadata only",
            );
        } else if !value.is_null() {
            file.insert(key.clone(), value.clone());
        }
    }
    if let Some(auth) = fields.get("auth").and_then(Value::as_object) {
        for key in FILE_ONLY_AUTH_FIELDS {
            if auth.contains_key(key) {
                problems.push(
                    format!("auth.{key}"),
                    "is a config-file extension the admin API does not accept; send the secret itself (secret_value), or edit the config file",
                );
            }
        }
    }
    file.insert("created_at".into(), json!(at));
    file.insert("updated_at".into(), json!(at));
    if !problems.is_empty() {
        return Err(problems);
    }
    let text = json!({"vault_id": vault_id, "credentials": [Value::Object(file)]}).to_string();
    let env = |_: &str| None;
    let sources = Sources {
        base_dir: Path::new("."),
        env: &env,
    };
    let mut config =
        config::parse(&text, &sources).map_err(|p| relative(without_lines(p), Some(0)))?;
    let credential = config.credentials.pop().ok_or_else(|| {
        Problems::from(crate::model::Problem {
            path: String::new(),
            message: "the body describes no credential; send auth".into(),
        })
    })?;
    if let Auth::McpOauth(m) = &credential.auth {
        if let Some(t) = &m.expires_at {
            if rules::parse_timestamp(t).is_some_and(|when| when <= now) {
                problems.push(
                    "auth.expires_at",
                    format!("{t:?} is not in the future; give the time the access token expires, or leave it out"),
                );
            }
        }
    }
    problems.into_result(credential)
}

/// The vault API's `409`: `c`'s vault already has an active credential for
/// the same MCP server (origin and path prefix, normalised). Checked
/// before the edit, so that the whole-file validation's `400` for the same
/// duplicate is never what the client sees. A duplicate in another vault
/// is not the API's conflict; keyhole refuses it too, with that `400`
/// ([`crate::config::validate`]), because it cannot choose between them.
pub fn conflict(config: &Config, c: &Credential) -> Result<(), ApiError> {
    match mcp::same_server_in_vault(&config.vaults, &config.credentials, c) {
        Some(other) => Err(ApiError::Conflict(format!(
            "vault {:?} already has a credential for this MCP server ({:?}); update that credential's tokens instead, or archive it first",
            c.vault_id, other.id
        ))),
        None => Ok(()),
    }
}

/// Drops the ` (line N)` that file problems end with: the body is not a file.
fn without_lines(problems: Problems) -> Problems {
    let mut out = Problems::new();
    for p in problems.iter() {
        let message = match p.message.rsplit_once(" (line ") {
            Some((m, rest)) if rest.ends_with(')') => m,
            _ => p.message.as_str(),
        };
        out.push(p.path.clone(), message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: Value) -> Result<Credential, Vec<String>> {
        let now = OffsetDateTime::now_utc();
        credential(&body, "vcrd_new", "vlt_x", now, "2026-01-01T00:00:00Z")
            .map_err(|p| p.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_valid_body_loads() {
        let c = run(
            json!({"display_name": null, "metadata": {"a": "b"}, "auth": {
            "type": "environment_variable", "secret_name": "X", "secret_value": "v",
            "networking": {"type": "unrestricted"}}}),
        )
        .unwrap();
        assert_eq!(c.id, "vcrd_new");
        assert_eq!(c.vault_id, "vlt_x");
        assert_eq!(c.created_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(c.metadata["a"], "b");
    }

    #[test]
    fn every_problem_with_a_body_path() {
        let out = run(json!({"id": "vcrd_mine", "auth": {
            "type": "environment_variable", "secret_name": "1X", "secret_value_env": "HOME",
            "networking": {"type": "unrestricted"}}}))
        .unwrap_err();
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].starts_with("id: "));
        assert!(out[1].starts_with("auth.secret_value_env: "));
        let out = run(json!({"auth": {
            "type": "environment_variable", "secret_name": "1X", "secret_value": "v",
            "networking": {"type": "limited", "allowed_hosts": ["https://x.com/", "ok.com"]}}}))
        .unwrap_err();
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].starts_with("auth.secret_name: "), "{out:?}");
        assert!(
            out[1].starts_with("auth.networking.allowed_hosts[0]: "),
            "{out:?}"
        );
        let out = run(json!({"auth": {"type": "nope"}})).unwrap_err();
        assert!(out[0].starts_with("auth.type: "), "{out:?}");
        assert!(!out[0].contains("(line"), "{out:?}");
        assert!(run(json!([1])).is_err());
    }

    #[test]
    fn a_second_credential_for_one_mcp_server_in_a_vault_is_a_conflict() {
        let mut config = crate::mcp::test_config(
            r#"{"vaults": [{"id": "vlt_x"}, {"id": "vlt_y"}], "credentials": [
                {"id": "vcrd_first", "vault_id": "vlt_x", "auth": {"type": "static_bearer",
                 "mcp_server_url": "https://mcp.example.com/sse", "token": "t"}}]}"#,
        );
        let same = json!({"auth": {"type": "mcp_oauth", "mcp_server_url": "https://MCP.example.com:443/sse/",
            "access_token": "a"}});
        let c = run(same.clone()).unwrap();
        let e = conflict(&config, &c).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::CONFLICT);
        let body = e.body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "vault \"vlt_x\" already has a credential for this MCP server (\"vcrd_first\")"
            ),
            "{message}"
        );
        // Another path, or another vault: no conflict.
        let other = run(json!({"auth": {"type": "static_bearer",
            "mcp_server_url": "https://mcp.example.com/sse2", "token": "t"}}))
        .unwrap();
        assert!(conflict(&config, &other).is_ok());
        let mut elsewhere = c.clone();
        elsewhere.vault_id = "vlt_y".into();
        assert!(conflict(&config, &elsewhere).is_ok());
        // An archived credential holds nothing.
        config.credentials[0].archived_at = Some("2026-01-01T00:00:00Z".into());
        assert!(conflict(&config, &c).is_ok());
    }

    #[test]
    fn oauth_expiry_must_be_in_the_future() {
        let out = run(
            json!({"auth": {"type": "mcp_oauth", "mcp_server_url": "https://m.example.com/",
            "access_token": "t", "expires_at": "2001-01-01T00:00:00Z"}}),
        )
        .unwrap_err();
        assert!(out[0].starts_with("auth.expires_at: "), "{out:?}");
    }
}
