//! Policy: where a request may go and which credentials apply there.
//!
//! [`Policy`] is compiled once from a validated [`Config`] and answers per
//! request, without allocating, from the normalised destination [`Host`]:
//! whether egress allows it, which credentials may be substituted there
//! (in file order), and so whether keyhole must intercept the connection
//! or may tunnel it untouched.

pub mod explain;

pub use explain::{explain, Explanation};

use crate::host::{Host, HostPattern, HostSet, HostSetBuilder};
use crate::mcp::McpRoutes;
use crate::model::{Auth, Config, Credential, Egress, Networking};

/// Hosts that `allow_package_managers` opens: the public registries of the
/// common language package managers and of Debian and Ubuntu.
pub const PACKAGE_MANAGER_HOSTS: &[&str] = &[
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
    "rubygems.org",
    "index.rubygems.org",
    "repo.maven.apache.org",
    "repo1.maven.org",
    "api.nuget.org",
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
];

/// What keyhole does with a connection to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Egress does not allow the host: refuse (`403`).
    Deny,
    /// No credential can apply: relay the bytes untouched.
    Tunnel,
    /// These credentials (indices into [`Config::credentials`], ascending)
    /// may be substituted, or an MCP credential's server is on this host
    /// (the list may then be empty): terminate TLS and inspect requests.
    Intercept(&'a [u32]),
}

/// The compiled policy. See the module documentation.
///
/// Invariant: the substitution matcher holds only active (not archived)
/// `environment_variable` credentials, by their index in the config; the
/// MCP routes only active `static_bearer` and `mcp_oauth` ones.
#[derive(Debug, Clone)]
pub struct Policy {
    config: Config,
    substitution: HostSet,
    egress: Option<HostSet>,
    mcp: McpRoutes,
}

// === impl Policy ===

impl Policy {
    /// Compiles `config`.
    pub fn new(config: Config) -> Policy {
        let mut substitution = HostSetBuilder::new();
        for (i, credential) in config.credentials.iter().enumerate() {
            let Some(auth) = credential.environment_variable() else {
                continue;
            };
            let vault_archived = config
                .vaults
                .iter()
                .any(|v| v.id == credential.vault_id && v.archived_at.is_some());
            if credential.is_archived() || vault_archived {
                continue;
            }
            match &auth.networking {
                Networking::Unrestricted => {
                    substitution.always(i as u32);
                }
                Networking::Limited(hosts) => {
                    for pattern in hosts {
                        substitution.insert(pattern, i as u32);
                    }
                }
            }
        }
        let egress = egress_patterns(&config).map(|patterns| {
            let mut set = HostSetBuilder::new();
            for (pattern, _) in &patterns {
                set.insert(pattern, 0);
            }
            set.build()
        });
        Policy {
            substitution: substitution.build(),
            egress,
            mcp: McpRoutes::new(&config),
            config,
        }
    }

    /// The configuration this policy was compiled from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The credential at `index` of the config.
    pub fn credential(&self, index: u32) -> Option<&Credential> {
        self.config.credentials.get(index as usize)
    }

    /// Whether the egress policy lets the sandbox reach `host`.
    #[inline]
    pub fn egress_allows(&self, host: &Host) -> bool {
        self.egress.as_ref().is_none_or(|set| set.matches(host))
    }

    /// The credentials whose networking matches `host`, ascending by index,
    /// regardless of egress.
    #[inline]
    pub fn credentials_for(&self, host: &Host) -> &[u32] {
        self.substitution.lookup(host)
    }

    /// Which MCP credential applies to a request, by origin and path.
    pub fn mcp(&self) -> &McpRoutes {
        &self.mcp
    }

    /// The decision for a connection to `host`.
    #[inline]
    pub fn decide(&self, host: &Host) -> Action<'_> {
        if !self.egress_allows(host) {
            return Action::Deny;
        }
        match self.credentials_for(host) {
            [] if !self.mcp.serves(host) => Action::Tunnel,
            ids => Action::Intercept(ids),
        }
    }
}

/// Every pattern the egress policy allows, each with where it came from;
/// `None` when egress is unrestricted.
pub fn egress_patterns(config: &Config) -> Option<Vec<(HostPattern, EgressSource)>> {
    let Egress::Limited {
        allowed_hosts,
        allow_package_managers,
        allow_mcp_servers,
    } = &config.egress
    else {
        return None;
    };
    let mut patterns: Vec<(HostPattern, EgressSource)> = allowed_hosts
        .iter()
        .map(|p| (p.clone(), EgressSource::AllowedHosts))
        .collect();
    if *allow_package_managers {
        patterns.extend(
            PACKAGE_MANAGER_HOSTS
                .iter()
                .filter_map(|h| HostPattern::parse(h).ok())
                .map(|p| (p, EgressSource::PackageManagers)),
        );
    }
    if *allow_mcp_servers {
        for credential in config.credentials.iter().filter(|c| !c.is_archived()) {
            let url = match &credential.auth {
                Auth::StaticBearer(a) => &a.mcp_server_url,
                Auth::McpOauth(a) => &a.mcp_server_url,
                Auth::EnvironmentVariable(_) => continue,
            };
            if let Some(pattern) = url_host_pattern(url) {
                patterns.push((pattern, EgressSource::McpServers));
            }
        }
    }
    Some(patterns)
}

/// Why egress allows a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressSource {
    /// Listed in `egress.allowed_hosts`.
    AllowedHosts,
    /// One of [`PACKAGE_MANAGER_HOSTS`], by `allow_package_managers`.
    PackageManagers,
    /// A credential's MCP server, by `allow_mcp_servers`.
    McpServers,
}

/// The host of an `http(s)://` URL as an exact pattern.
fn url_host_pattern(url: &str) -> Option<HostPattern> {
    let uri: http::Uri = url.parse().ok()?;
    let host = Host::parse(uri.host()?).ok()?;
    HostPattern::parse(host.as_str()).ok()
}

#[cfg(test)]
mod tests;
