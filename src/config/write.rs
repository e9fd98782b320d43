//! The model back to the file's JSON, for persisting admin API changes.
//!
//! [`credential`] and [`vault`] produce the file form of one object (the
//! API's create shape plus `id` and timestamps). Secrets set through the
//! API are written as `secret_value`; a secret read from `secret_value_env`
//! or `secret_value_file` keeps that reference, so a rewrite never copies a
//! value into the file that was not there. This is the one place where
//! secret values are turned into JSON, deliberately.
//!
//! [`merge_object`] updates an object in place, keeping the order of the
//! keys it already had, so a rewritten file stays as the user laid it out.

use serde_json::{json, Map, Value};

use crate::host::HostPattern;
use crate::model::*;
use crate::secret::Secret;

/// The file form of a credential.
pub fn credential(c: &Credential) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(c.id));
    o.insert("vault_id".into(), json!(c.vault_id));
    if let Some(d) = &c.display_name {
        o.insert("display_name".into(), json!(d));
    }
    if !c.metadata.is_empty() {
        o.insert("metadata".into(), json!(c.metadata));
    }
    o.insert("auth".into(), auth(&c.auth));
    timestamps(&mut o, &c.created_at, &c.updated_at, &c.archived_at);
    Value::Object(o)
}

/// The file form of a listed vault.
pub fn vault(v: &Vault) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(v.id));
    o.insert("display_name".into(), json!(v.display_name));
    if !v.metadata.is_empty() {
        o.insert("metadata".into(), json!(v.metadata));
    }
    timestamps(&mut o, &v.created_at, &v.updated_at, &v.archived_at);
    Value::Object(o)
}

fn timestamps(
    o: &mut Map<String, Value>,
    created: &Option<String>,
    updated: &Option<String>,
    archived: &Option<String>,
) {
    for (name, value) in [
        ("created_at", created),
        ("updated_at", updated),
        ("archived_at", archived),
    ] {
        if let Some(v) = value {
            o.insert(name.into(), json!(v));
        }
    }
}

fn auth(a: &Auth) -> Value {
    match a {
        Auth::EnvironmentVariable(e) => {
            let mut o = Map::new();
            o.insert("type".into(), json!("environment_variable"));
            o.insert("secret_name".into(), json!(e.secret_name));
            match &e.secret_source {
                SecretSource::Inline => {
                    o.insert("secret_value".into(), secret(&e.secret_value));
                }
                SecretSource::Env(name) => {
                    o.insert("secret_value_env".into(), json!(name));
                }
                SecretSource::File(path) => {
                    o.insert(
                        "secret_value_file".into(),
                        json!(path.display().to_string()),
                    );
                }
            }
            if let Some(p) = &e.placeholder {
                o.insert("placeholder".into(), json!(p));
            }
            o.insert("networking".into(), networking(&e.networking));
            o.insert(
                "injection_location".into(),
                json!({"header": e.injection_location.header, "body": e.injection_location.body}),
            );
            Value::Object(o)
        }
        Auth::StaticBearer(s) => json!({
            "type": "static_bearer",
            "mcp_server_url": s.mcp_server_url,
            "token": secret(&s.token),
        }),
        Auth::McpOauth(m) => {
            let mut o = Map::new();
            o.insert("type".into(), json!("mcp_oauth"));
            o.insert("mcp_server_url".into(), json!(m.mcp_server_url));
            o.insert("access_token".into(), secret(&m.access_token));
            if let Some(e) = &m.expires_at {
                o.insert("expires_at".into(), json!(e));
            }
            if let Some(r) = &m.refresh {
                let endpoint_auth = match &r.token_endpoint_auth {
                    TokenEndpointAuth::None => json!({"type": "none"}),
                    TokenEndpointAuth::ClientSecretBasic(s) => {
                        json!({"type": "client_secret_basic", "client_secret": secret(s)})
                    }
                    TokenEndpointAuth::ClientSecretPost(s) => {
                        json!({"type": "client_secret_post", "client_secret": secret(s)})
                    }
                };
                let mut refresh = Map::new();
                refresh.insert("client_id".into(), json!(r.client_id));
                refresh.insert("refresh_token".into(), secret(&r.refresh_token));
                refresh.insert("token_endpoint".into(), json!(r.token_endpoint));
                refresh.insert("token_endpoint_auth".into(), endpoint_auth);
                if let Some(s) = &r.scope {
                    refresh.insert("scope".into(), json!(s));
                }
                if let Some(s) = &r.resource {
                    refresh.insert("resource".into(), json!(s));
                }
                o.insert("refresh".into(), Value::Object(refresh));
            }
            Value::Object(o)
        }
    }
}

/// The networking object of the file and of API responses.
pub fn networking(n: &Networking) -> Value {
    match n {
        Networking::Unrestricted => json!({"type": "unrestricted"}),
        Networking::Limited(hosts) => {
            json!({"type": "limited", "allowed_hosts": hosts.iter().map(HostPattern::to_string).collect::<Vec<_>>()})
        }
    }
}

fn secret(s: &Secret) -> Value {
    Value::String(s.expose().to_owned())
}

/// Makes `target` hold exactly the keys of `new`: keys it has keep their
/// place (objects inside are merged the same way), new keys go at the end,
/// keys `new` lacks are removed.
pub fn merge_object(target: &mut Value, new: Value) {
    match (target, new) {
        (Value::Object(old), Value::Object(new)) => {
            old.retain(|k, _| new.contains_key(k));
            for (k, v) in new {
                match old.get_mut(&k) {
                    Some(slot) => merge_object(slot, v),
                    None => {
                        old.insert(k, v);
                    }
                }
            }
        }
        (slot, new) => *slot = new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_order_and_removes_dropped_keys() {
        let mut doc: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": 1, "x": 2}, "c": 3}"#).unwrap();
        merge_object(&mut doc, json!({"a": {"x": 5, "z": 6}, "b": 2, "d": 4}));
        assert_eq!(doc.to_string(), r#"{"b":2,"a":{"x":5,"z":6},"d":4}"#);
    }

    #[test]
    fn round_trip_through_the_loader() {
        let text = include_str!("../../examples/credentials.json");
        let env = |_: &str| None;
        let sources = super::super::Sources {
            base_dir: std::path::Path::new("."),
            env: &env,
        };
        let config = super::super::parse(text, &sources).unwrap();
        let creds: Vec<Value> = config.credentials.iter().map(credential).collect();
        let doc = json!({"vault_id": config.vault_id, "credentials": creds});
        let again = super::super::parse(&doc.to_string(), &sources).unwrap();
        assert_eq!(again.credentials.len(), config.credentials.len());
        for (a, b) in config.credentials.iter().zip(&again.credentials) {
            assert_eq!(a.id, b.id);
            assert_eq!(credential(a), credential(b));
        }
    }
}
