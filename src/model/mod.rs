//! The credential model: validated, in-memory forms of the vault API's
//! objects (`docs/VAULT-API.md`).
//!
//! These types are what the rest of keyhole works with. They are built only
//! by [`crate::config`] (from a file) and [`update`] (from an update
//! request), which validate; holding one means its invariants hold.

pub mod problem;
pub mod rules;
pub mod update;

pub use problem::{Problem, Problems};

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::host::HostPattern;
use crate::secret::Secret;

/// The vault id used when a file names none.
pub const DEFAULT_VAULT_ID: &str = "vlt_local";

/// A whole, validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The vault credentials belong to unless they name another.
    pub vault_id: String,
    /// The environment's egress policy.
    pub egress: Egress,
    /// Every vault, in file order; the default vault is always among them
    /// (added when the file does not list it).
    pub vaults: Vec<Vault>,
    /// Every credential, in file order (archived ones included).
    pub credentials: Vec<Credential>,
}

/// A vault (`type: "vault"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    /// `vlt_...`.
    pub id: String,
    /// 1-255 characters.
    pub display_name: String,
    /// As for credentials.
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339, when known.
    pub created_at: Option<String>,
    /// RFC 3339, when known.
    pub updated_at: Option<String>,
    /// RFC 3339 when archived. Credentials of an archived vault are never
    /// substituted.
    pub archived_at: Option<String>,
    /// Whether the file lists this vault (the default vault may be implicit).
    pub listed: bool,
}

/// Where the sandbox may connect at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// Any host.
    Unrestricted,
    /// Only the listed hosts, and optionally package registries and the
    /// credentials' MCP servers.
    Limited {
        /// Validated entries, duplicates refused.
        allowed_hosts: Vec<HostPattern>,
        /// Also allow the registries in [`crate::policy::PACKAGE_MANAGER_HOSTS`].
        allow_package_managers: bool,
        /// Also allow the hosts of the credentials' `mcp_server_url`s.
        allow_mcp_servers: bool,
    },
}

/// A credential of the vault (`type: "vault_credential"`).
#[derive(Debug, Clone)]
pub struct Credential {
    /// `vcrd_...`: from the file, or derived from the vault and the
    /// credential's immutable identity so that it is the same at every load.
    pub id: String,
    /// The owning vault.
    pub vault_id: String,
    /// At most 255 characters.
    pub display_name: Option<String>,
    /// At most 16 pairs; keys at most 64, values at most 512 characters.
    pub metadata: BTreeMap<String, String>,
    /// What the credential holds and where it may be used.
    pub auth: Auth,
    /// RFC 3339, when known.
    pub created_at: Option<String>,
    /// RFC 3339, when known.
    pub updated_at: Option<String>,
    /// RFC 3339 when archived. An archived credential is never substituted.
    pub archived_at: Option<String>,
}

/// One of the three auth shapes.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A secret the sandbox sees only as a placeholder in an environment
    /// variable. The only kind the proxy substitutes.
    EnvironmentVariable(EnvironmentVariableAuth),
    /// A fixed bearer token for an MCP server.
    StaticBearer(StaticBearerAuth),
    /// OAuth tokens for an MCP server.
    McpOauth(McpOauthAuth),
}

/// `auth.type = "environment_variable"`.
#[derive(Debug, Clone)]
pub struct EnvironmentVariableAuth {
    /// `[A-Za-z_][A-Za-z0-9_]*`, unique in the file, immutable.
    pub secret_name: String,
    /// Non-empty, without CR, LF or NUL.
    pub secret_value: Secret,
    /// Where the value came from (the file, keyhole's environment, a file).
    pub secret_source: SecretSource,
    /// A placeholder pinned by the config; when `None`, keyhole derives
    /// one from the state directory's key and the credential id.
    pub placeholder: Option<String>,
    /// Hosts the secret may be substituted on.
    pub networking: Networking,
    /// Where in a request the placeholder is replaced. At least one is on.
    pub injection_location: InjectionLocation,
}

/// Where a secret value was read from; kept so that a rewrite of the file
/// never copies a value from the environment or a file into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `secret_value` in the file (or set through the admin API).
    Inline,
    /// `secret_value_env`: a variable of keyhole's own environment.
    Env(String),
    /// `secret_value_file`: a file, as written in the config.
    File(PathBuf),
}

/// The hosts a credential may be substituted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networking {
    /// Any host the egress policy allows.
    Unrestricted,
    /// Only these (1 to 16, no duplicates).
    Limited(Vec<HostPattern>),
}

/// Where a placeholder is replaced. Invariant: at least one is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectionLocation {
    /// Header values (including `Authorization: Basic` payloads).
    pub header: bool,
    /// Request bodies without `Content-Encoding`.
    pub body: bool,
}

impl Default for InjectionLocation {
    fn default() -> Self {
        Self {
            header: true,
            body: false,
        }
    }
}

/// `auth.type = "static_bearer"`.
#[derive(Debug, Clone)]
pub struct StaticBearerAuth {
    /// Immutable after create.
    pub mcp_server_url: String,
    /// Never returned.
    pub token: Secret,
}

/// `auth.type = "mcp_oauth"`.
#[derive(Debug, Clone)]
pub struct McpOauthAuth {
    /// Immutable after create.
    pub mcp_server_url: String,
    /// Never returned.
    pub access_token: Secret,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// How to refresh the access token.
    pub refresh: Option<McpOauthRefresh>,
}

/// The refresh configuration of an `mcp_oauth` credential.
#[derive(Debug, Clone)]
pub struct McpOauthRefresh {
    /// OAuth client id.
    pub client_id: String,
    /// Never returned.
    pub refresh_token: Secret,
    /// Token endpoint URL.
    pub token_endpoint: String,
    /// How keyhole authenticates at the token endpoint.
    pub token_endpoint_auth: TokenEndpointAuth,
    /// OAuth scope.
    pub scope: Option<String>,
    /// OAuth resource indicator.
    pub resource: Option<String>,
}

/// Client authentication at an OAuth token endpoint.
#[derive(Debug, Clone)]
pub enum TokenEndpointAuth {
    /// `{"type": "none"}`.
    None,
    /// `{"type": "client_secret_basic", "client_secret": ...}`.
    ClientSecretBasic(Secret),
    /// `{"type": "client_secret_post", "client_secret": ...}`.
    ClientSecretPost(Secret),
}

// === impl Auth ===

impl Auth {
    /// The `type` tag of this auth shape.
    pub fn type_name(&self) -> &'static str {
        match self {
            Auth::EnvironmentVariable(_) => "environment_variable",
            Auth::StaticBearer(_) => "static_bearer",
            Auth::McpOauth(_) => "mcp_oauth",
        }
    }
}

// === impl Credential ===

impl Credential {
    /// The environment-variable auth, when this is such a credential.
    pub fn environment_variable(&self) -> Option<&EnvironmentVariableAuth> {
        match &self.auth {
            Auth::EnvironmentVariable(a) => Some(a),
            _ => None,
        }
    }

    /// Whether the credential has been archived.
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

// === impl TokenEndpointAuth ===

impl TokenEndpointAuth {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            TokenEndpointAuth::None => "none",
            TokenEndpointAuth::ClientSecretBasic(_) => "client_secret_basic",
            TokenEndpointAuth::ClientSecretPost(_) => "client_secret_post",
        }
    }
}
