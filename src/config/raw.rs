//! The file's shape: plain serde structs, `deny_unknown_fields` throughout.
//!
//! These mirror the vault API's create bodies (plus `id`, timestamps and
//! keyhole's `secret_value_env` / `secret_value_file`). They check only
//! structure and types; [`super::validate`] checks the rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::secret::Secret;

/// The top level. Sections are kept raw so that each is deserialised on
/// its own and a problem in one does not hide problems in the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig<'a> {
    /// Default vault of the credentials.
    pub vault_id: Option<String>,
    /// The egress policy.
    #[serde(borrow)]
    pub egress: Option<&'a RawValue>,
    /// The vaults, each still raw (the default vault may be left out).
    #[serde(borrow, default)]
    pub vaults: Vec<&'a RawValue>,
    /// The credentials, each still raw.
    #[serde(borrow, default)]
    pub credentials: Vec<&'a RawValue>,
}

/// One vault (`type: "vault"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    /// `vlt_...`.
    pub id: String,
    /// `"vault"` when given, as in API responses.
    #[serde(rename = "type")]
    pub object_type: Option<String>,
    /// 1-255 characters.
    pub display_name: Option<String>,
    /// Arbitrary string pairs.
    pub metadata: Option<BTreeMap<String, String>>,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
    /// RFC 3339, or null.
    pub archived_at: Option<String>,
}

/// One credential: the API's create body plus `id` and timestamps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    /// `vcrd_...`; derived when absent.
    pub id: Option<String>,
    /// `"vault_credential"` when given, as in API responses.
    #[serde(rename = "type")]
    pub object_type: Option<String>,
    /// Owning vault; the file's `vault_id` when absent.
    pub vault_id: Option<String>,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// Arbitrary string pairs.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The auth shape.
    pub auth: RawAuth,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
    /// RFC 3339, or null.
    pub archived_at: Option<String>,
}

/// `auth`, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawAuth {
    /// `environment_variable`.
    EnvironmentVariable(RawEnvironmentVariable),
    /// `static_bearer`.
    StaticBearer(RawStaticBearer),
    /// `mcp_oauth`.
    McpOauth(RawMcpOauth),
}

/// `auth` of an `environment_variable` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironmentVariable {
    /// The variable name the sandbox sees.
    pub secret_name: String,
    /// The value, inline.
    pub secret_value: Option<Secret>,
    /// The value, from a variable of keyhole's environment.
    pub secret_value_env: Option<String>,
    /// The value, from a file (relative to the config file's folder).
    pub secret_value_file: Option<PathBuf>,
    /// Pins the placeholder instead of deriving it from the state key.
    pub placeholder: Option<String>,
    /// Where the secret may be substituted.
    pub networking: RawNetworking,
    /// Where in a request; `{"header": true, "body": false}` when absent.
    pub injection_location: Option<RawInjectionLocation>,
}

/// `networking` (and the shape shared with egress), tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawNetworking {
    /// Any host egress allows.
    Unrestricted {},
    /// Only the listed hosts.
    Limited {
        /// Host entries, still unchecked.
        allowed_hosts: Vec<String>,
    },
}

/// `injection_location`; an absent field takes its default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjectionLocation {
    /// Header values.
    pub header: Option<bool>,
    /// Bodies.
    pub body: Option<bool>,
}

/// `auth` of a `static_bearer` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaticBearer {
    /// The MCP server's URL.
    pub mcp_server_url: String,
    /// The bearer token.
    pub token: Secret,
}

/// `auth` of an `mcp_oauth` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpOauth {
    /// The MCP server's URL.
    pub mcp_server_url: String,
    /// The access token.
    pub access_token: Secret,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// Refresh configuration.
    pub refresh: Option<RawRefresh>,
}

/// `auth.refresh` of an `mcp_oauth` credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefresh {
    /// OAuth client id.
    pub client_id: String,
    /// The refresh token.
    pub refresh_token: Secret,
    /// Token endpoint URL.
    pub token_endpoint: String,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth: RawTokenEndpointAuth,
    /// OAuth scope.
    pub scope: Option<String>,
    /// OAuth resource indicator.
    pub resource: Option<String>,
}

/// `token_endpoint_auth`, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTokenEndpointAuth {
    /// No client authentication.
    None {},
    /// HTTP Basic.
    ClientSecretBasic {
        /// The client secret.
        client_secret: Secret,
    },
    /// In the POST body.
    ClientSecretPost {
        /// The client secret.
        client_secret: Secret,
    },
}

/// The egress policy, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawEgress {
    /// Any host.
    Unrestricted {},
    /// Only listed hosts (and the optional extras).
    Limited {
        /// Host entries, still unchecked.
        #[serde(default)]
        allowed_hosts: Vec<String>,
        /// Open the package registries.
        #[serde(default)]
        allow_package_managers: bool,
        /// Open the credentials' MCP servers.
        #[serde(default)]
        allow_mcp_servers: bool,
    },
}
