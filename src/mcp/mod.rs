//! MCP server credentials (`static_bearer`, `mcp_oauth`): the pure,
//! socket-free core the proxy wires in.
//!
//! For an intercepted HTTPS request to a credential's MCP server, keyhole
//! injects `Authorization: Bearer <token>` and keeps OAuth tokens fresh.
//! This module decides and computes; it never dials, listens or writes a
//! file:
//! - [`target`]: an `mcp_server_url` as an origin and a path prefix.
//! - [`route`]: which credential applies to a request, and why not.
//! - [`form`]: the `application/x-www-form-urlencoded` encoder.
//! - [`oauth`]: the refresh request (RFC 6749 section 6) as bytes.
//! - [`response`]: the token endpoint's answer, parsed and bounded.
//! - [`bearer`]: the token in force and the fingerprint of configured ones.
//! - [`tokens`]: the live token of each credential, one refresh in flight,
//!   through the [`TokenEndpoint`] and [`TokenPersist`] the proxy supplies.
//!
//! Invariant: no value of this module's `Debug` output, error message or
//! log line holds a token, a client secret or a token endpoint's body.

pub mod bearer;
pub mod form;
pub mod oauth;
pub mod response;
pub mod route;
pub mod target;
pub mod tokens;

pub use bearer::{BearerToken, Fingerprint};
pub use oauth::RefreshRequest;
pub use response::{parse_response, RefreshError, TokenResponse};
pub use route::{McpMatch, McpRoutes, RouteExplanation, RouteVerdict};
pub use target::{McpTarget, McpUrlError, Scheme};
pub use tokens::{
    EndpointResponse, PersistError, RefreshOutcome, TokenBook, TokenEndpoint, TokenError,
    TokenPersist, TokenStats, TokenUpdate, Validation, ValidationStatus,
};

use std::future::Future;
use std::pin::Pin;

#[cfg(test)]
use crate::model::Config;
use crate::model::{Auth, Credential, Vault};
// The one place this module names the host types: submodules use
// `super::Host`, so moving them is a one-line change here.
use crate::host::Host;

/// A boxed, sendable future, as the [`TokenEndpoint`] and [`TokenPersist`]
/// traits return (object-safe, no extra dependency).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The `mcp_server_url` of a `static_bearer` or `mcp_oauth` credential.
pub fn server_url(credential: &Credential) -> Option<&str> {
    match &credential.auth {
        Auth::StaticBearer(a) => Some(&a.mcp_server_url),
        Auth::McpOauth(a) => Some(&a.mcp_server_url),
        Auth::EnvironmentVariable(_) => None,
    }
}

/// Whether a credential is in force: neither it nor its vault is archived
/// (as [`crate::policy::Policy::new`] decides for substitution).
pub fn is_active(vaults: &[Vault], credential: &Credential) -> bool {
    !credential.is_archived()
        && !vaults
            .iter()
            .any(|v| v.id == credential.vault_id && v.archived_at.is_some())
}

/// The active MCP credential of `candidate`'s vault whose normalised
/// `mcp_server_url` equals `candidate`'s, if any: the vault API's
/// "vault already has a credential for this MCP server" (409).
pub fn same_server_in_vault<'a>(
    vaults: &[Vault],
    credentials: &'a [Credential],
    candidate: &Credential,
) -> Option<&'a Credential> {
    let target = McpTarget::parse(server_url(candidate)?).ok()?;
    credentials.iter().find(|c| {
        c.id != candidate.id
            && c.vault_id == candidate.vault_id
            && is_active(vaults, c)
            && server_url(c)
                .and_then(|u| McpTarget::parse(u).ok())
                .is_some_and(|t| t == target)
    })
}

/// Loads config text as keyhole loads a file, with an empty environment
/// and the current folder for relative paths; panics on a problem (tests).
#[cfg(test)]
pub(crate) fn test_config(text: &str) -> Config {
    let env = |_: &str| None;
    let sources = crate::config::Sources {
        base_dir: std::path::Path::new("."),
        env: &env,
    };
    match crate::config::parse(text, &sources) {
        Ok(c) => c,
        Err(p) => panic!("{p}"),
    }
}
