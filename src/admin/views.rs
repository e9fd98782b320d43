//! Response bodies, built field by field from the model.
//!
//! These functions are the only way the admin API turns an object into
//! JSON, and they name every field they write: no secret field
//! (`secret_value`, `token`, `access_token`, `refresh_token`,
//! `client_secret`) and no keyhole file extension (`secret_value_env`,
//! `secret_value_file`, `placeholder`) is among them.
//!
//! A timestamp the file does not hold is shown as `loaded_at`, the time
//! this keyhole process first loaded the config: stable while it runs, and
//! written into the file at the object's first edit.

use serde_json::{json, Value};

use crate::config::write;
use crate::mcp::{RefreshError, RefreshOutcome};
use crate::model::{Auth, Credential, McpOauthRefresh, Vault};

/// `type: "vault_credential"`.
pub fn credential(c: &Credential, loaded_at: &str) -> Value {
    json!({
        "id": c.id,
        "type": "vault_credential",
        "vault_id": c.vault_id,
        "display_name": c.display_name,
        "metadata": c.metadata,
        "auth": auth(&c.auth),
        "created_at": c.created_at.as_deref().unwrap_or(loaded_at),
        "updated_at": c.updated_at.as_deref().unwrap_or(loaded_at),
        "archived_at": c.archived_at,
    })
}

fn auth(a: &Auth) -> Value {
    match a {
        Auth::EnvironmentVariable(e) => json!({
            "type": "environment_variable",
            "secret_name": e.secret_name,
            "networking": write::networking(&e.networking),
            "injection_location": {
                "header": e.injection_location.header,
                "body": e.injection_location.body,
            },
        }),
        Auth::StaticBearer(s) => json!({
            "type": "static_bearer",
            "mcp_server_url": s.mcp_server_url,
        }),
        Auth::McpOauth(m) => json!({
            "type": "mcp_oauth",
            "mcp_server_url": m.mcp_server_url,
            "expires_at": m.expires_at,
            "refresh": m.refresh.as_ref().map(refresh),
        }),
    }
}

fn refresh(r: &McpOauthRefresh) -> Value {
    json!({
        "client_id": r.client_id,
        "token_endpoint": r.token_endpoint,
        "token_endpoint_auth": {"type": r.token_endpoint_auth.type_name()},
        "scope": r.scope,
        "resource": r.resource,
    })
}

/// `type: "vault"`.
pub fn vault(v: &Vault, loaded_at: &str) -> Value {
    json!({
        "id": v.id,
        "type": "vault",
        "display_name": v.display_name,
        "metadata": v.metadata,
        "created_at": v.created_at.as_deref().unwrap_or(loaded_at),
        "updated_at": v.updated_at.as_deref().unwrap_or(loaded_at),
        "archived_at": v.archived_at,
    })
}

/// A list page: `{data, next_page}`.
pub fn page(data: Vec<Value>, next_page: Option<String>) -> Value {
    json!({"data": data, "next_page": next_page})
}

/// `{id, type}` of a deleted object (`vault_deleted`, `vault_credential_deleted`).
pub fn deleted(id: &str, object_type: &str) -> Value {
    json!({"id": id, "type": object_type})
}

/// The `refresh` object of a validation: what the refresh did, and for a
/// refusal the token endpoint's status and OAuth error code. Never the
/// endpoint's body, which may hold a token: only the code keyhole parsed.
pub fn refresh_outcome(outcome: &RefreshOutcome) -> Value {
    let failed = |status: u16, code: Option<&str>| {
        let body = code.map_or_else(String::new, |c| json!({ "error": c }).to_string());
        json!({
            "status": "failed",
            "http_response": {
                "status_code": status,
                "content_type": "application/json",
                "body": body,
                "body_truncated": true,
            },
        })
    };
    match outcome {
        RefreshOutcome::NotConfigured => {
            json!({"status": "no_refresh_token", "http_response": null})
        }
        RefreshOutcome::Refreshed => json!({"status": "succeeded", "http_response": null}),
        RefreshOutcome::Failed(e) => match e {
            RefreshError::InvalidGrant => failed(400, Some("invalid_grant")),
            RefreshError::Rejected { status, code } => failed(*status, code.as_deref()),
            RefreshError::Server { status } => failed(*status, None),
            RefreshError::Malformed(_) => failed(200, None),
            RefreshError::Timeout | RefreshError::Transport(_) | RefreshError::WaitTimeout => {
                json!({"status": "connect_error", "http_response": null})
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 5] = ["sv_1111", "tok_2222", "at_3333", "rt_4444", "cs_5555"];

    #[test]
    fn no_secret_in_any_view() {
        let text = format!(
            r#"{{"egress": {{"type": "unrestricted"}}, "credentials": [
              {{"auth": {{"type": "environment_variable", "secret_name": "A", "secret_value": "{}",
                "networking": {{"type": "limited", "allowed_hosts": ["a.example.com"]}}}}}},
              {{"auth": {{"type": "static_bearer", "mcp_server_url": "https://m.example.com/sse", "token": "{}"}}}},
              {{"auth": {{"type": "mcp_oauth", "mcp_server_url": "https://o.example.com/sse", "access_token": "{}",
                "expires_at": "2099-01-01T00:00:00Z",
                "refresh": {{"client_id": "c", "refresh_token": "{}", "token_endpoint": "https://o.example.com/token",
                  "token_endpoint_auth": {{"type": "client_secret_post", "client_secret": "{}"}}, "scope": "s"}}}}}}
            ]}}"#,
            SECRETS[0], SECRETS[1], SECRETS[2], SECRETS[3], SECRETS[4]
        );
        let env = |_: &str| None;
        let sources = crate::config::Sources {
            base_dir: std::path::Path::new("."),
            env: &env,
        };
        let config = crate::config::parse(&text, &sources).unwrap();
        let all: Vec<Value> = config
            .credentials
            .iter()
            .map(|c| credential(c, "2026-01-01T00:00:00Z"))
            .collect();
        let shown = serde_json::to_string(&all).unwrap();
        for s in SECRETS {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        for field in [
            "secret_value",
            "token",
            "access_token",
            "refresh_token",
            "client_secret",
        ] {
            let key = format!("\"{field}\":");
            assert!(!shown.contains(&key), "{key} in {shown}");
        }
        assert_eq!(
            all[0]["auth"]["networking"]["allowed_hosts"][0],
            "a.example.com"
        );
        assert_eq!(all[0]["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(
            all[2]["auth"]["refresh"]["token_endpoint_auth"]["type"],
            "client_secret_post"
        );
        assert_eq!(all[1]["archived_at"], Value::Null);
    }
}
