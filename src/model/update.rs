//! The vault API's Update Credential call (`POST .../credentials/{id}`) as
//! a pure function over the model: [`CredentialUpdate`] is the request
//! body, [`apply`] returns the updated credential or every problem found.
//!
//! Semantics decided here, where the API's pages leave room:
//! - `null` in a patch means "remove" for fields that may be absent
//!   (`display_name`, a metadata key, `expires_at`, `refresh.scope`), and
//!   "keep" for fields that must have a value (secrets, `networking`,
//!   `injection_location`, `refresh`, `metadata` as a whole, `auth`).
//! - Immutable fields (`secret_name`, `mcp_server_url`) are refused when
//!   sent at all, even with the stored value or `null` ("not accepted").
//! - An archived credential may be updated like any other (the API does
//!   not forbid it); it stays archived, so it is still never substituted.
//! - A new `secret_value` counts as set inline ([`SecretSource::Inline`]),
//!   whatever the old one was read from.
//! - On an `auth.type` mismatch only that is reported for `auth`: the
//!   other fields' meaning depends on the type.
//! - Rules that need more than the credential (the API's
//!   `credential_host_unreachable_error` against the egress policy) are
//!   the caller's to check on the result.

use std::collections::BTreeMap;

use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::problem::{Problem, Problems};
use super::rules::{self, MAX_CREDENTIAL_HOSTS};
use super::{
    Auth, Credential, EnvironmentVariableAuth, InjectionLocation, McpOauthAuth, McpOauthRefresh,
    Networking, SecretSource, StaticBearerAuth, TokenEndpointAuth,
};
use crate::secret::Secret;

/// The request body (`CredentialUpdateParams`). Every field is optional;
/// an absent one keeps the stored value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialUpdate {
    /// Absent keeps; a string (1-255 characters) replaces; `null` removes
    /// the name, as `null` removes a metadata key.
    #[serde(default, deserialize_with = "nullable")]
    pub display_name: Option<Option<String>>,
    /// A patch: a string upserts the key, `null` deletes it, omitted keys
    /// are kept. `metadata: null` changes nothing.
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    /// Changes to the auth; its `type` must be the stored one. `null` is
    /// read as absent.
    pub auth: Option<AuthUpdate>,
}

/// `auth` of an update, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthUpdate {
    /// `environment_variable`.
    EnvironmentVariable(EnvironmentVariableUpdate),
    /// `static_bearer`.
    StaticBearer(StaticBearerUpdate),
    /// `mcp_oauth`.
    McpOauth(McpOauthUpdate),
}

/// `auth` update of an `environment_variable` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentVariableUpdate {
    /// Whether `secret_name` was sent; it is immutable, so only refused.
    #[serde(default, deserialize_with = "present")]
    pub secret_name: bool,
    /// Replaces the secret (which then counts as set inline); `null` keeps.
    pub secret_value: Option<Secret>,
    /// Replaces the networking scope as a whole; `null` keeps.
    pub networking: Option<NetworkingUpdate>,
    /// Merged field by field: an omitted location keeps its setting.
    pub injection_location: Option<InjectionLocationUpdate>,
}

/// `networking`, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NetworkingUpdate {
    /// Any host egress allows.
    Unrestricted {},
    /// Only the listed hosts (1 to 16).
    Limited {
        /// Host entries, still unchecked.
        allowed_hosts: Vec<String>,
    },
}

/// `injection_location`; an omitted (or `null`) field keeps its setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionLocationUpdate {
    /// Header values.
    pub header: Option<bool>,
    /// Bodies.
    pub body: Option<bool>,
}

/// `auth` update of a `static_bearer` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBearerUpdate {
    /// Whether `mcp_server_url` was sent; it is immutable, so only refused.
    #[serde(default, deserialize_with = "present")]
    pub mcp_server_url: bool,
    /// Replaces the token; `null` keeps.
    pub token: Option<Secret>,
}

/// `auth` update of an `mcp_oauth` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpOauthUpdate {
    /// Whether `mcp_server_url` was sent; it is immutable, so only refused.
    #[serde(default, deserialize_with = "present")]
    pub mcp_server_url: bool,
    /// Replaces the access token; `null` keeps. Without `expires_at` the
    /// old expiry stays, as the API says.
    pub access_token: Option<Secret>,
    /// A future RFC 3339 time replaces the expiry; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<String>>,
    /// Changes to the stored refresh configuration; `null` changes nothing
    /// (refresh cannot be removed or added by an update).
    pub refresh: Option<RefreshUpdate>,
}

/// `auth.refresh` of an `mcp_oauth` update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshUpdate {
    /// Replaces the refresh token; `null` keeps.
    pub refresh_token: Option<Secret>,
    /// A string replaces the scope; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    pub scope: Option<Option<String>>,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth: Option<TokenEndpointAuthUpdate>,
}

/// `token_endpoint_auth` of an update, tagged by `type`. The update API
/// has no `none` variant, so a credential cannot drop its client secret.
///
/// Switching between `client_secret_basic` and `client_secret_post` keeps
/// the stored client secret unless a new one is given: both send the same
/// client credentials (RFC 6749 §2.3.1), only the transport differs.
/// Switching from `none` requires `client_secret`, as there is none to keep.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenEndpointAuthUpdate {
    /// HTTP Basic.
    ClientSecretBasic {
        /// Replaces the client secret; absent or `null` keeps.
        client_secret: Option<Secret>,
    },
    /// In the POST body.
    ClientSecretPost {
        /// Replaces the client secret; absent or `null` keeps.
        client_secret: Option<Secret>,
    },
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`,
/// with `#[serde(default)]`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `true` whenever the field is sent, whatever its value (even `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// Parses a request body, locating a structural problem (unknown field,
/// wrong type) by its JSON path. Inside `auth`, serde buffers the tagged
/// object, so such problems are reported at `auth`.
pub fn parse(body: &str) -> Result<CredentialUpdate, Problems> {
    let mut de = serde_json::Deserializer::from_str(body);
    let parsed = serde_path_to_error::deserialize::<_, CredentialUpdate>(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|u| de.end().map(|()| u).map_err(|e| (String::new(), e)));
    parsed.map_err(|(path, e)| {
        let path = if path == "." { String::new() } else { path };
        Problem {
            path,
            message: e.to_string(),
        }
        .into()
    })
}

/// Applies `update` to a copy of `current`, as of `now`; `current` is never
/// changed. Returns the new credential with `updated_at = now`, or every
/// problem found (paths relative to the request body). `id`, `vault_id`,
/// `created_at` and `archived_at` are kept.
pub fn apply(
    current: &Credential,
    update: CredentialUpdate,
    now: OffsetDateTime,
) -> Result<Credential, Problems> {
    let mut problems = Problems::new();
    let mut next = current.clone();
    if let Some(name) = update.display_name {
        if let Some(name) = &name {
            rules::display_name("display_name", name, 1, &mut problems);
        }
        next.display_name = name;
    }
    if let Some(patch) = update.metadata {
        for (key, value) in patch {
            match value {
                Some(value) => next.metadata.insert(key, value),
                None => next.metadata.remove(&key),
            };
        }
        rules::metadata("metadata", &next.metadata, &mut problems);
    }
    if let Some(auth_update) = update.auth {
        next.auth = auth(&current.auth, auth_update, now, &mut problems);
    }
    match now.format(&Rfc3339) {
        Ok(at) => next.updated_at = Some(at),
        Err(e) => problems.push(
            "",
            format!("the current time cannot be written as RFC 3339 ({e}); check the system clock"),
        ),
    }
    problems.into_result(next)
}

fn immutable(path: &str, problems: &mut Problems) {
    problems.push(path, "is immutable; create a new credential to change it");
}

// === impl AuthUpdate ===

impl AuthUpdate {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            AuthUpdate::EnvironmentVariable(_) => "environment_variable",
            AuthUpdate::StaticBearer(_) => "static_bearer",
            AuthUpdate::McpOauth(_) => "mcp_oauth",
        }
    }
}

/// On a type mismatch only that is reported: the other fields' meaning
/// depends on the type.
fn auth(current: &Auth, update: AuthUpdate, now: OffsetDateTime, problems: &mut Problems) -> Auth {
    match (current, update) {
        (Auth::EnvironmentVariable(c), AuthUpdate::EnvironmentVariable(u)) => {
            Auth::EnvironmentVariable(environment_variable(c, u, problems))
        }
        (Auth::StaticBearer(c), AuthUpdate::StaticBearer(u)) => {
            if u.mcp_server_url {
                immutable("auth.mcp_server_url", problems);
            }
            let mut next: StaticBearerAuth = c.clone();
            if let Some(token) = u.token {
                rules::secret_value("auth.token", &token, problems);
                next.token = token;
            }
            Auth::StaticBearer(next)
        }
        (Auth::McpOauth(c), AuthUpdate::McpOauth(u)) => {
            Auth::McpOauth(mcp_oauth(c, u, now, problems))
        }
        (current, u) => {
            problems.push(
                "auth.type",
                format!(
                    "is {:?} but the credential's auth type is {:?}; the type cannot change, so create a new credential instead",
                    u.type_name(),
                    current.type_name()
                ),
            );
            current.clone()
        }
    }
}

fn environment_variable(
    current: &EnvironmentVariableAuth,
    u: EnvironmentVariableUpdate,
    problems: &mut Problems,
) -> EnvironmentVariableAuth {
    let mut next = current.clone();
    if u.secret_name {
        immutable("auth.secret_name", problems);
    }
    if let Some(value) = u.secret_value {
        rules::secret_value("auth.secret_value", &value, problems);
        next.secret_value = value;
        next.secret_source = SecretSource::Inline;
    }
    match u.networking {
        None => {}
        Some(NetworkingUpdate::Unrestricted {}) => next.networking = Networking::Unrestricted,
        Some(NetworkingUpdate::Limited { allowed_hosts }) => {
            let at = "auth.networking.allowed_hosts";
            let valid = rules::host_list(at, &allowed_hosts, 1..=MAX_CREDENTIAL_HOSTS, problems);
            next.networking = Networking::Limited(valid.into_iter().map(|(_, p)| p).collect());
        }
    }
    if let Some(l) = u.injection_location {
        let old = current.injection_location;
        next.injection_location = InjectionLocation {
            header: l.header.unwrap_or(old.header),
            body: l.body.unwrap_or(old.body),
        };
        if !next.injection_location.header && !next.injection_location.body {
            problems.push(
                "auth.injection_location",
                format!(
                    "would turn off both header and body (an omitted one keeps its setting: header {}, body {}); set at least one to true",
                    old.header, old.body
                ),
            );
        }
    }
    next
}

fn mcp_oauth(
    current: &McpOauthAuth,
    u: McpOauthUpdate,
    now: OffsetDateTime,
    problems: &mut Problems,
) -> McpOauthAuth {
    let mut next = current.clone();
    if u.mcp_server_url {
        immutable("auth.mcp_server_url", problems);
    }
    if let Some(token) = u.access_token {
        rules::secret_value("auth.access_token", &token, problems);
        next.access_token = token;
    }
    if let Some(expires_at) = u.expires_at {
        let at = "auth.expires_at";
        if let Some(t) = &expires_at {
            match rules::parse_timestamp(t) {
                None => rules::timestamp(at, t, problems),
                Some(when) if when <= now => problems.push(
                    at,
                    format!("{t:?} is not in the future; give the time the access token expires, or null if it does not"),
                ),
                Some(_) => {}
            }
        }
        next.expires_at = expires_at;
    }
    if let Some(r) = u.refresh {
        next.refresh = refresh(current.refresh.as_ref(), r, problems);
    }
    next
}

fn refresh(
    current: Option<&McpOauthRefresh>,
    u: RefreshUpdate,
    problems: &mut Problems,
) -> Option<McpOauthRefresh> {
    let Some(current) = current else {
        // An empty object sets nothing, so it is accepted as no change.
        if u.refresh_token.is_some() || u.scope.is_some() || u.token_endpoint_auth.is_some() {
            problems.push(
                "auth.refresh",
                "the credential has no refresh configuration; create a new credential with one",
            );
        }
        return None;
    };
    let mut next = current.clone();
    if let Some(token) = u.refresh_token {
        rules::secret_value("auth.refresh.refresh_token", &token, problems);
        next.refresh_token = token;
    }
    if let Some(scope) = u.scope {
        next.scope = scope;
    }
    if let Some(a) = u.token_endpoint_auth {
        next.token_endpoint_auth = token_endpoint_auth(&current.token_endpoint_auth, a, problems);
    }
    Some(next)
}

/// See [`TokenEndpointAuthUpdate`] for the rules of a switch.
fn token_endpoint_auth(
    current: &TokenEndpointAuth,
    u: TokenEndpointAuthUpdate,
    problems: &mut Problems,
) -> TokenEndpointAuth {
    let at = "auth.refresh.token_endpoint_auth.client_secret";
    let (basic, given) = match u {
        TokenEndpointAuthUpdate::ClientSecretBasic { client_secret } => (true, client_secret),
        TokenEndpointAuthUpdate::ClientSecretPost { client_secret } => (false, client_secret),
    };
    let secret = match (given, current) {
        (Some(secret), _) => {
            rules::secret_value(at, &secret, problems);
            secret
        }
        (
            None,
            TokenEndpointAuth::ClientSecretBasic(s) | TokenEndpointAuth::ClientSecretPost(s),
        ) => s.clone(),
        (None, TokenEndpointAuth::None) => {
            problems.push(at, "is required: the stored token_endpoint_auth is \"none\", which has no client secret to keep");
            return current.clone();
        }
    };
    if basic {
        TokenEndpointAuth::ClientSecretBasic(secret)
    } else {
        TokenEndpointAuth::ClientSecretPost(secret)
    }
}

#[cfg(test)]
mod tests;
