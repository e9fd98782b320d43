//! From raw serde structs to the validated model, collecting every problem.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::raw::*;
use super::Sources;
use crate::host::HostPattern;
use crate::mcp::{self, McpTarget};
use crate::model::problem::{field, index};
use crate::model::rules::{self, MAX_CREDENTIAL_HOSTS, MAX_EGRESS_HOSTS};
use crate::model::*;
use crate::policy;
use crate::secret::Secret;

/// Parses and validates a whole file.
pub fn config(text: &str, sources: &Sources<'_>) -> Result<Config, Problems> {
    let mut problems = Problems::new();
    let raw: RawConfig<'_> = match deserialize(text, text, "", &mut problems) {
        Some(raw) => raw,
        None => return Err(problems),
    };
    let vault_id = raw.vault_id.unwrap_or_else(|| DEFAULT_VAULT_ID.to_owned());
    rules::id("vault_id", &vault_id, &mut problems);

    let egress = match raw.egress {
        None => Egress::Unrestricted,
        Some(value) => deserialize::<RawEgress>(text, value.get(), "egress", &mut problems)
            .map(|e| egress(e, &mut problems))
            .unwrap_or(Egress::Unrestricted),
    };

    let mut vaults: Vec<Vault> = Vec::with_capacity(raw.vaults.len() + 1);
    for (i, value) in raw.vaults.iter().enumerate() {
        let path = index("vaults", i);
        if let Some(rv) = deserialize::<RawVault>(text, value.get(), &path, &mut problems) {
            let v = vault(&path, rv, &mut problems);
            if vaults.iter().any(|other| other.id == v.id) {
                problems.push(
                    field(&path, "id"),
                    format!(
                        "{:?} is already the id of another vault; give each vault its own id",
                        v.id
                    ),
                );
            } else {
                vaults.push(v);
            }
        }
    }
    if !vaults.iter().any(|v| v.id == vault_id) {
        vaults.insert(
            0,
            Vault {
                id: vault_id.clone(),
                display_name: vault_id.clone(),
                metadata: BTreeMap::new(),
                created_at: None,
                updated_at: None,
                archived_at: None,
                listed: false,
            },
        );
    }

    let mut credentials = Vec::with_capacity(raw.credentials.len());
    // For each credential's limited hosts: (JSON path, pattern), checked
    // against egress once everything is known.
    let mut reach: Vec<(String, HostPattern)> = Vec::new();
    for (i, value) in raw.credentials.iter().enumerate() {
        let path = index("credentials", i);
        if let Some(rc) = deserialize::<RawCredential>(text, value.get(), &path, &mut problems) {
            let c = credential(&path, rc, &vault_id, sources, &mut reach, &mut problems);
            credentials.push((path, c));
        }
    }

    assign_ids(&mut credentials);
    unique(&credentials, &mut problems);
    mcp_servers(&vaults, &credentials, &mut problems);
    for (path, c) in &credentials {
        if !vaults.iter().any(|v| v.id == c.vault_id) {
            problems.push(
                field(path, "vault_id"),
                format!("{:?} names no vault of this file; list it under \"vaults\" or leave vault_id out", c.vault_id),
            );
        }
    }
    let config = Config {
        vault_id,
        egress,
        vaults,
        credentials: credentials.into_iter().map(|(_, c)| c).collect(),
    };
    reachable(&config, &reach, &mut problems);
    problems.into_result(config)
}

/// Deserialises `part` (a slice of `whole`) as `T`, recording a failure at
/// `path` plus the path inside `part`, with its line in the whole file.
fn deserialize<'a, T: serde::Deserialize<'a>>(
    whole: &str,
    part: &'a str,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    let mut de = serde_json::Deserializer::from_str(part);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = match inner.as_str() {
                "." | "?" => path.to_owned(),
                p if path.is_empty() => p.to_owned(),
                p if p.starts_with('[') => format!("{path}{p}"),
                p => format!("{path}.{p}"),
            };
            let err = e.inner();
            let message = err.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m);
            // Line of the error in the whole file: `part` starts somewhere in it.
            let offset = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
            let lines_before = whole.get(..offset).map_or(0, |s| s.matches('\n').count());
            // Errors raised after buffering (tagged enums) carry no position:
            // point at the part's first line.
            let line = lines_before + err.line().max(1);
            let what = if err.is_syntax() || err.is_eof() {
                "the file is not valid JSON: "
            } else {
                ""
            };
            problems.push(at, format!("{what}{message} (line {line})"));
            None
        }
    }
}

fn vault(path: &str, raw: RawVault, problems: &mut Problems) -> Vault {
    rules::id(&field(path, "id"), &raw.id, problems);
    if let Some(t) = raw.object_type.as_deref().filter(|t| *t != "vault") {
        problems.push(
            field(path, "type"),
            format!("{t:?} is not a vault type; write \"vault\" or leave it out"),
        );
    }
    let display_name = raw.display_name.unwrap_or_else(|| raw.id.clone());
    rules::display_name(&field(path, "display_name"), &display_name, 1, problems);
    let metadata = raw.metadata.unwrap_or_default();
    rules::metadata(&field(path, "metadata"), &metadata, problems);
    for (name, value) in [
        ("created_at", &raw.created_at),
        ("updated_at", &raw.updated_at),
        ("archived_at", &raw.archived_at),
    ] {
        if let Some(v) = value {
            rules::timestamp(&field(path, name), v, problems);
        }
    }
    Vault {
        id: raw.id,
        display_name,
        metadata,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
        archived_at: raw.archived_at,
        listed: true,
    }
}

fn egress(raw: RawEgress, problems: &mut Problems) -> Egress {
    match raw {
        RawEgress::Unrestricted {} => Egress::Unrestricted,
        RawEgress::Limited {
            allowed_hosts,
            allow_package_managers,
            allow_mcp_servers,
        } => Egress::Limited {
            allowed_hosts: rules::host_list(
                "egress.allowed_hosts",
                &allowed_hosts,
                0..=MAX_EGRESS_HOSTS,
                problems,
            )
            .into_iter()
            .map(|(_, p)| p)
            .collect(),
            allow_package_managers,
            allow_mcp_servers,
        },
    }
}

fn credential(
    path: &str,
    raw: RawCredential,
    default_vault: &str,
    sources: &Sources<'_>,
    reach: &mut Vec<(String, HostPattern)>,
    problems: &mut Problems,
) -> Credential {
    if let Some(id) = &raw.id {
        rules::id(&field(path, "id"), id, problems);
    }
    if let Some(t) = raw
        .object_type
        .as_deref()
        .filter(|t| *t != "vault_credential")
    {
        problems.push(
            field(path, "type"),
            format!("{t:?} is not a credential type; write \"vault_credential\" or leave it out"),
        );
    }
    if let Some(v) = &raw.vault_id {
        rules::id(&field(path, "vault_id"), v, problems);
    }
    let vault_id = raw.vault_id.unwrap_or_else(|| default_vault.to_owned());
    if let Some(name) = &raw.display_name {
        rules::display_name(&field(path, "display_name"), name, 0, problems);
    }
    let metadata = raw.metadata.unwrap_or_default();
    rules::metadata(&field(path, "metadata"), &metadata, problems);
    for (name, value) in [
        ("created_at", &raw.created_at),
        ("updated_at", &raw.updated_at),
        ("archived_at", &raw.archived_at),
    ] {
        if let Some(v) = value {
            rules::timestamp(&field(path, name), v, problems);
        }
    }
    let auth_path = field(path, "auth");
    let auth = match raw.auth {
        RawAuth::EnvironmentVariable(a) => Auth::EnvironmentVariable(environment_variable(
            &auth_path, a, sources, reach, problems,
        )),
        RawAuth::StaticBearer(a) => {
            mcp_server_url(
                &field(&auth_path, "mcp_server_url"),
                &a.mcp_server_url,
                problems,
            );
            bearer_token(&field(&auth_path, "token"), &a.token, problems);
            Auth::StaticBearer(StaticBearerAuth {
                mcp_server_url: a.mcp_server_url,
                token: a.token,
            })
        }
        RawAuth::McpOauth(a) => Auth::McpOauth(mcp_oauth(&auth_path, a, problems)),
    };
    Credential {
        id: raw.id.unwrap_or_default(),
        vault_id,
        display_name: raw.display_name,
        metadata,
        auth,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
        archived_at: raw.archived_at,
    }
}

fn environment_variable(
    path: &str,
    raw: RawEnvironmentVariable,
    sources: &Sources<'_>,
    reach: &mut Vec<(String, HostPattern)>,
    problems: &mut Problems,
) -> EnvironmentVariableAuth {
    rules::secret_name(&field(path, "secret_name"), &raw.secret_name, problems);
    let (secret_value, secret_source) = secret(path, &raw, sources, problems);
    if let Some(p) = &raw.placeholder {
        rules::placeholder(&field(path, "placeholder"), p, problems);
        let v = secret_value.expose();
        if !v.is_empty() && (p.contains(v) || v.contains(p.as_str())) {
            problems.push(
                field(path, "placeholder"),
                "contains the secret value or is contained in it; choose a placeholder unrelated to the secret (the value is not shown)",
            );
        }
    }
    let networking = match raw.networking {
        RawNetworking::Unrestricted {} => Networking::Unrestricted,
        RawNetworking::Limited { allowed_hosts } => {
            let at = field(&field(path, "networking"), "allowed_hosts");
            let valid = rules::host_list(&at, &allowed_hosts, 1..=MAX_CREDENTIAL_HOSTS, problems);
            reach.extend(valid.iter().map(|(i, p)| (index(&at, *i), p.clone())));
            Networking::Limited(valid.into_iter().map(|(_, p)| p).collect())
        }
    };
    let default = InjectionLocation::default();
    let injection_location = raw
        .injection_location
        .map_or(default, |l| InjectionLocation {
            header: l.header.unwrap_or(default.header),
            body: l.body.unwrap_or(default.body),
        });
    if !injection_location.header && !injection_location.body {
        problems.push(
            field(path, "injection_location"),
            "turns off both header and body; set at least one to true",
        );
    }
    EnvironmentVariableAuth {
        secret_name: raw.secret_name,
        secret_value,
        secret_source,
        placeholder: raw.placeholder,
        networking,
        injection_location,
    }
}

/// Reads the secret from exactly one of its three sources.
fn secret(
    path: &str,
    raw: &RawEnvironmentVariable,
    sources: &Sources<'_>,
    problems: &mut Problems,
) -> (Secret, SecretSource) {
    let empty = || (Secret::new(String::new()), SecretSource::Inline);
    let given = [
        raw.secret_value.is_some(),
        raw.secret_value_env.is_some(),
        raw.secret_value_file.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        problems.push(
            path,
            "give exactly one of secret_value, secret_value_env (a variable of keyhole's environment) or secret_value_file (a path)",
        );
        return empty();
    }
    let (at, value, source) = if let Some(v) = &raw.secret_value {
        (field(path, "secret_value"), v.clone(), SecretSource::Inline)
    } else if let Some(name) = &raw.secret_value_env {
        let at = field(path, "secret_value_env");
        match (sources.env)(name).map(|v| v.into_string()) {
            None => {
                problems.push(at, format!("keyhole's environment has no variable {name:?}; set it before starting keyhole, or use secret_value_file"));
                return empty();
            }
            Some(Err(_)) => {
                problems.push(
                    at,
                    format!("the variable {name:?} is not valid UTF-8; store the secret as text"),
                );
                return empty();
            }
            Some(Ok(v)) => (at, Secret::new(v), SecretSource::Env(name.clone())),
        }
    } else if let Some(file) = &raw.secret_value_file {
        let at = field(path, "secret_value_file");
        match read_secret_file(&sources.base_dir.join(file)) {
            Ok(v) => (at, v, SecretSource::File(file.clone())),
            Err(message) => {
                problems.push(at, message);
                return empty();
            }
        }
    } else {
        return empty();
    };
    rules::secret_value(&at, &value, problems);
    (value, source)
}

/// Reads a secret file; one trailing newline (as editors add) is dropped.
fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let mut text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read {}: {e}; check the path (relative paths start at the config file's folder) and that keyhole may read it", path.display())
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Secret::new(text))
}

fn mcp_oauth(path: &str, raw: RawMcpOauth, problems: &mut Problems) -> McpOauthAuth {
    mcp_server_url(
        &field(path, "mcp_server_url"),
        &raw.mcp_server_url,
        problems,
    );
    bearer_token(&field(path, "access_token"), &raw.access_token, problems);
    if let Some(t) = &raw.expires_at {
        rules::timestamp(&field(path, "expires_at"), t, problems);
    }
    let refresh = raw.refresh.map(|r| {
        let at = field(path, "refresh");
        if r.client_id.is_empty() {
            problems.push(
                field(&at, "client_id"),
                "is empty; give the OAuth client id",
            );
        }
        rules::secret_value(&field(&at, "refresh_token"), &r.refresh_token, problems);
        rules::url(&field(&at, "token_endpoint"), &r.token_endpoint, problems);
        let secret_at = field(&field(&at, "token_endpoint_auth"), "client_secret");
        let token_endpoint_auth = match r.token_endpoint_auth {
            RawTokenEndpointAuth::None {} => TokenEndpointAuth::None,
            RawTokenEndpointAuth::ClientSecretBasic { client_secret } => {
                rules::secret_value(&secret_at, &client_secret, problems);
                TokenEndpointAuth::ClientSecretBasic(client_secret)
            }
            RawTokenEndpointAuth::ClientSecretPost { client_secret } => {
                rules::secret_value(&secret_at, &client_secret, problems);
                TokenEndpointAuth::ClientSecretPost(client_secret)
            }
        };
        McpOauthRefresh {
            client_id: r.client_id,
            refresh_token: r.refresh_token,
            token_endpoint: r.token_endpoint,
            token_endpoint_auth,
            scope: r.scope,
            resource: r.resource,
        }
    });
    McpOauthAuth {
        mcp_server_url: raw.mcp_server_url,
        access_token: raw.access_token,
        expires_at: raw.expires_at,
        refresh,
    }
}

/// An `mcp_server_url`: an http(s) URL (the API's rule) that keyhole can
/// also match as an origin and a path prefix ([`McpTarget::parse`]: no
/// query, fragment or userinfo, a plain path).
fn mcp_server_url(path: &str, url: &str, problems: &mut Problems) {
    let before = problems.len();
    rules::url(path, url, problems);
    if problems.len() == before {
        if let Err(e) = McpTarget::parse(url) {
            problems.push(path, e.to_string());
        }
    }
}

/// A token keyhole sends as `Authorization: Bearer`: a secret value that
/// an HTTP header can carry, so that injecting it can never fail.
fn bearer_token(path: &str, token: &Secret, problems: &mut Problems) {
    let before = problems.len();
    rules::secret_value(path, token, problems);
    if problems.len() == before && !mcp::bearer::is_header_safe(token.expose()) {
        problems.push(
            path,
            "holds a control character, which an HTTP header cannot carry; remove it (the value is not shown)",
        );
    }
}

/// No two active MCP credentials for the same server: equal origins and
/// path prefixes after normalising (`/sse` and `/sse/` are one). In one
/// vault that is the vault API's conflict; across vaults it is a tie that
/// the longest-prefix rule cannot break, since keyhole serves every vault
/// at once. Either way the later one is refused, naming the earlier.
fn mcp_servers(vaults: &[Vault], credentials: &[(String, Credential)], problems: &mut Problems) {
    let mut seen: HashMap<McpTarget, (String, &Credential)> = HashMap::new();
    for (path, c) in credentials {
        let Some(url) = mcp::server_url(c) else {
            continue;
        };
        // An invalid URL is reported by `mcp_server_url`.
        let (true, Ok(target)) = (mcp::is_active(vaults, c), McpTarget::parse(url)) else {
            continue;
        };
        let at = field(&field(path, "auth"), "mcp_server_url");
        match seen.get(&target) {
            Some((first, other)) if other.vault_id == c.vault_id => problems.push(
                at,
                format!(
                    "vault {:?} already has a credential for this MCP server ({first}, the same {target} after normalising); keep one: update that credential's tokens instead, or archive one of them",
                    c.vault_id
                ),
            ),
            Some((first, other)) => problems.push(
                at,
                format!(
                    "{first} (vault {:?}) is for the same MCP server ({target} after normalising); keyhole serves every vault at once and cannot choose between two credentials with the same path prefix: archive or remove one of them",
                    other.vault_id
                ),
            ),
            None => {
                seen.insert(target, (at, c));
            }
        }
    }
}

/// Gives every credential without an id one derived from its vault and its
/// immutable identity (secret_name or MCP server URL), so that it is the
/// same at every load of the same file.
fn assign_ids(credentials: &mut [(String, Credential)]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, c) in credentials.iter_mut().filter(|(_, c)| c.id.is_empty()) {
        let identity = match &c.auth {
            Auth::EnvironmentVariable(a) => a.secret_name.as_str(),
            Auth::StaticBearer(a) => a.mcp_server_url.as_str(),
            Auth::McpOauth(a) => a.mcp_server_url.as_str(),
        };
        let key = format!("{}\0{}\0{identity}", c.vault_id, c.auth.type_name());
        let n = seen.entry(key.clone()).or_default();
        *n += 1;
        c.id = derived_id(&format!("{key}\0{n}"));
    }
}

/// `vcrd_` and 24 hex digits of SHA-256 of `seed`.
pub fn derived_id(seed: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("vcrd_{hex}")
}

/// `id` and `secret_name` are unique in the file.
fn unique(credentials: &[(String, Credential)], problems: &mut Problems) {
    let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut placeholders: Vec<(&str, &str)> = Vec::new();
    for (path, c) in credentials {
        if let Some(first) = ids.insert(&c.id, path) {
            problems.push(
                field(path, "id"),
                format!(
                    "{:?} is already the id of {first}; give each credential its own id",
                    c.id
                ),
            );
            ids.insert(&c.id, first);
        }
        if let Some(a) = c.environment_variable() {
            if let Some(first) = names.insert(&a.secret_name, path) {
                problems.push(
                    field(&field(path, "auth"), "secret_name"),
                    format!(
                        "{:?} is already used by {first}; give each credential its own secret_name",
                        a.secret_name
                    ),
                );
                names.insert(&a.secret_name, first);
            }
            if let Some(p) = &a.placeholder {
                if let Some((_, first)) = placeholders
                    .iter()
                    .find(|(q, _)| q.contains(p.as_str()) || p.contains(q))
                {
                    problems.push(
                        field(&field(path, "auth"), "placeholder"),
                        format!("{p:?} overlaps the placeholder of {first}; give each credential a placeholder that does not contain another"),
                    );
                } else {
                    placeholders.push((p, path));
                }
            }
        }
    }
}

/// Every host a credential names must be reachable through egress
/// (the API's `credential_host_unreachable_error`).
fn reachable(config: &Config, reach: &[(String, HostPattern)], problems: &mut Problems) {
    let Some(allowed) = policy::egress_patterns(config) else {
        return;
    };
    for (path, pattern) in reach {
        if !allowed.iter().any(|(a, _)| a.overlaps(pattern)) {
            problems.push(
                path,
                format!("\"{pattern}\" is not reachable: egress allows no host it matches (credential_host_unreachable_error); add it to egress.allowed_hosts or remove it"),
            );
        }
    }
}
