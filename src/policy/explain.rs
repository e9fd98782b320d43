//! `keyhole explain`: what the policy does with one target, and why.
//!
//! The verdicts come from the compiled [`Policy`]; the entry named as the
//! match is found by the reference [`HostPattern::matches`](super::HostPattern::matches), which a
//! differential test keeps in agreement with the compiled matcher.

use serde::Serialize;

use super::{egress_patterns, Action, EgressSource, Policy};
use crate::host::{Authority, Host, HostError};
use crate::mcp::{RouteExplanation, Scheme as McpScheme};
use crate::model::{Auth, Networking};

/// Why a target could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not a URL keyhole can parse.
    #[error("{0:?} is not a URL keyhole understands; give a host, host:port or an http(s):// URL")]
    Url(String),
    /// A scheme other than http or https.
    #[error("the scheme {0:?} is not proxied; give an http:// or https:// URL")]
    Scheme(String),
    /// The host was refused.
    #[error("the host is refused: {0}")]
    Host(#[from] HostError),
}

/// What keyhole would do with a target. Serialised as `--format json`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The target as given.
    pub target: String,
    /// The normalised host.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
    /// The path, when a URL was given (MCP credentials match by path).
    pub path: Option<String>,
    /// `http` for plaintext; `https` otherwise (a CONNECT tunnel).
    pub scheme: &'static str,
    /// The egress verdict.
    pub egress: EgressVerdict,
    /// `deny`, `forward` (plaintext http), `tunnel` or `intercept`.
    pub action: &'static str,
    /// One verdict per credential, in file order.
    pub credentials: Vec<CredentialVerdict>,
}

/// Whether egress allows the host.
#[derive(Debug, Serialize)]
pub struct EgressVerdict {
    /// Allowed or not.
    pub allowed: bool,
    /// `unrestricted`, or the entry that allowed it and its source.
    pub matched: Option<String>,
}

/// Whether one credential would be substituted, and why.
#[derive(Debug, Serialize)]
pub struct CredentialVerdict {
    /// Credential id.
    pub id: String,
    /// `auth.type`.
    pub auth_type: &'static str,
    /// For `environment_variable` credentials.
    pub secret_name: Option<String>,
    /// Whether the placeholder would be replaced on this target (for an
    /// MCP credential: whether its token would be injected).
    pub substituted: bool,
    /// The `allowed_hosts` entry that matched, `unrestricted`, or for an
    /// MCP credential its normalised `mcp_server_url`.
    pub matched: Option<String>,
    /// A sentence saying why.
    pub reason: String,
}

/// Parses `target` (a host, `host:port` or an http(s) URL) and explains it.
pub fn explain(policy: &Policy, target: &str) -> Result<Explanation, TargetError> {
    let (scheme, authority, path) = match target.split_once("://") {
        Some(_) => {
            let uri: http::Uri = target
                .parse()
                .map_err(|_| TargetError::Url(target.to_owned()))?;
            let scheme = match uri.scheme_str() {
                Some(s) if s.eq_ignore_ascii_case("http") => "http",
                Some(s) if s.eq_ignore_ascii_case("https") => "https",
                other => return Err(TargetError::Scheme(other.unwrap_or("").to_owned())),
            };
            let authority = uri
                .authority()
                .ok_or_else(|| TargetError::Url(target.to_owned()))?;
            let host_port = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, h)| h);
            let path = uri.path_and_query().map(|p| p.as_str().to_owned());
            (scheme, Authority::parse(host_port)?, path)
        }
        None => ("https", Authority::parse(target)?, None),
    };
    let host = &authority.host;
    let plaintext = scheme == "http";
    let egress = egress_verdict(policy, host);
    let action = match (egress.allowed, plaintext, policy.decide(host)) {
        (false, _, _) => "deny",
        (true, true, _) => "forward",
        (true, false, Action::Tunnel) => "tunnel",
        (true, false, _) => "intercept",
    };
    let applies = policy.credentials_for(host);
    let mcp_scheme = match plaintext {
        true => McpScheme::Http,
        false => McpScheme::Https,
    };
    let port = authority.port.unwrap_or(mcp_scheme.default_port());
    let mcp = policy
        .mcp()
        .explain(mcp_scheme, host, port, path.as_deref().unwrap_or("/"));
    let credentials = policy
        .config()
        .credentials
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = CredentialVerdict {
                id: c.id.clone(),
                auth_type: c.auth.type_name(),
                secret_name: None,
                substituted: false,
                matched: None,
                reason: String::new(),
            };
            let Auth::EnvironmentVariable(a) = &c.auth else {
                mcp_verdict(&mut v, c, mcp.iter().find(|e| e.index == i as u32), &egress, plaintext);
                return v;
            };
            v.secret_name = Some(a.secret_name.clone());
            v.matched = match &a.networking {
                Networking::Unrestricted => Some("unrestricted".to_owned()),
                Networking::Limited(hosts) => hosts.iter().find(|p| p.matches(host)).map(|p| p.to_string()),
            };
            let matches = applies.contains(&(i as u32));
            v.reason = if c.is_archived() {
                "archived: keyhole never substitutes an archived credential".to_owned()
            } else if !matches {
                format!("{host} matches none of its allowed_hosts")
            } else if !egress.allowed {
                format!("egress does not allow {host}")
            } else if plaintext {
                "http:// is plaintext: keyhole never substitutes on an unencrypted request".to_owned()
            } else {
                v.substituted = true;
                let locations = match (a.injection_location.header, a.injection_location.body) {
                    (true, true) => "header values and bodies",
                    (true, false) => "header values",
                    _ => "bodies",
                };
                match &v.matched {
                    Some(m) if m == "unrestricted" => format!("networking is unrestricted and egress allows {host}; substituted in {locations}"),
                    Some(m) => format!("{host} matches \"{m}\"; substituted in {locations}"),
                    None => format!("substituted in {locations}"),
                }
            };
            v
        })
        .collect();
    Ok(Explanation {
        target: target.to_owned(),
        host: host.to_string(),
        port: authority.port,
        path,
        scheme,
        egress,
        action,
        credentials,
    })
}

/// The verdict of an MCP credential (`static_bearer`, `mcp_oauth`): its
/// token is injected on requests at or below its `mcp_server_url`.
fn mcp_verdict(
    v: &mut CredentialVerdict,
    c: &crate::model::Credential,
    route: Option<&RouteExplanation<'_>>,
    egress: &EgressVerdict,
    plaintext: bool,
) {
    v.matched = route.map(|r| r.target.to_string());
    v.reason = match route {
        _ if c.is_archived() => "archived: keyhole never injects an archived credential".to_owned(),
        None => format!(
            "its mcp_server_url names another host; it is injected only on requests at or below {}",
            crate::mcp::server_url(c).unwrap_or("its URL")
        ),
        Some(_) if !egress.allowed => "egress does not allow this host".to_owned(),
        Some(_) if plaintext => {
            "http:// is plaintext: keyhole never sends a token on an unencrypted request".to_owned()
        }
        Some(r) if r.verdict.applies() => {
            v.substituted = true;
            format!(
                "{}; Authorization: Bearer is set on this request",
                r.verdict.reason()
            )
        }
        Some(r) => r.verdict.reason().to_owned(),
    };
}

fn egress_verdict(policy: &Policy, host: &Host) -> EgressVerdict {
    let allowed = policy.egress_allows(host);
    let matched = match egress_patterns(policy.config()) {
        None => Some("unrestricted".to_owned()),
        Some(patterns) => patterns
            .iter()
            .find(|(p, _)| p.matches(host))
            .map(|(p, source)| match source {
                EgressSource::AllowedHosts => p.to_string(),
                EgressSource::PackageManagers => format!("{p} (allow_package_managers)"),
                EgressSource::McpServers => format!("{p} (allow_mcp_servers)"),
            }),
    };
    EgressVerdict { allowed, matched }
}
