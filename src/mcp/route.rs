//! Which MCP credential applies to a request, and why none does.
//!
//! [`McpRoutes`] is compiled once per config from its active
//! `static_bearer` and `mcp_oauth` credentials ([`super::is_active`]) and
//! answers per request without allocating: a request to a host no MCP
//! credential names costs one hash lookup (none when there are no MCP
//! credentials at all). A credential applies when the request's scheme,
//! host and port equal its origin and its path is the credential's prefix
//! or lies below it; of several on one origin the longest prefix wins.
//! Two active credentials with the same origin and prefix are refused at
//! load, so there are no ties; were there any, the lower index would win.

use std::collections::HashMap;

use super::target::{is_unsafe_path, request_path, McpTarget, Scheme};
use super::{is_active, server_url, Host};
use crate::model::Config;

/// The compiled table. See the module documentation.
///
/// Invariant: each host's routes are sorted by prefix length, longest
/// first, then by index; each index is that of an active MCP credential.
#[derive(Debug, Clone, Default)]
pub struct McpRoutes {
    by_host: HashMap<Host, Vec<Route>>,
}

#[derive(Debug, Clone)]
struct Route {
    target: McpTarget,
    index: u32,
}

/// The answer for one request. Indices are into [`Config::credentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpMatch {
    /// This credential's token is to be injected.
    Hit(u32),
    /// Same origin, path outside every credential's prefix (or a path that
    /// could escape one, see [`is_unsafe_path`]); `nearest` shares the most
    /// leading path segments with the request.
    SamePathOutside {
        /// The closest credential.
        nearest: u32,
    },
    /// Same host and scheme, another port.
    OtherPort {
        /// A credential of this host and scheme: one whose path covers the
        /// request's when there is one (the longest such), so that a log
        /// line or audit record names the credential the request was
        /// meant for.
        nearest: u32,
    },
    /// Same host, another scheme (e.g. plain http to an https server).
    OtherScheme {
        /// A credential of this host, chosen as for `OtherPort`.
        nearest: u32,
    },
    /// No MCP credential names this host.
    None,
}

/// What one MCP credential of a host does for a request (`keyhole explain`).
#[derive(Debug, Clone)]
pub struct RouteExplanation<'a> {
    /// Index into [`Config::credentials`].
    pub index: u32,
    /// Its normalised `mcp_server_url`.
    pub target: &'a McpTarget,
    /// Whether it applies, and why (not).
    pub verdict: RouteVerdict,
}

/// Why one credential does or does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteVerdict {
    /// Its token is injected.
    Applies,
    /// It covers the path, but a credential with a longer prefix wins.
    Shadowed {
        /// The winner.
        by: u32,
    },
    /// Same origin, the path is outside its prefix.
    PathOutside,
    /// The path has dot segments or encoded separators, which only a
    /// credential for the whole origin may cover.
    UnsafePath,
    /// Another port.
    OtherPort,
    /// Another scheme.
    OtherScheme,
}

// === impl McpRoutes ===

impl McpRoutes {
    /// Compiles the active MCP credentials of `config`. A URL that does not
    /// parse (impossible in a validated config) is left out: fail closed.
    pub fn new(config: &Config) -> McpRoutes {
        let mut by_host: HashMap<Host, Vec<Route>> = HashMap::new();
        for (i, credential) in config.credentials.iter().enumerate() {
            let Some(url) = server_url(credential) else {
                continue;
            };
            if !is_active(&config.vaults, credential) {
                continue;
            }
            let (Ok(target), Ok(index)) = (McpTarget::parse(url), u32::try_from(i)) else {
                continue;
            };
            by_host
                .entry(target.host().clone())
                .or_default()
                .push(Route { target, index });
        }
        for routes in by_host.values_mut() {
            routes.sort_by(|a, b| {
                b.target
                    .prefix()
                    .len()
                    .cmp(&a.target.prefix().len())
                    .then(a.index.cmp(&b.index))
            });
        }
        McpRoutes { by_host }
    }

    /// Whether no MCP credential is active.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Whether some active MCP credential names `host` (on any scheme, port
    /// or path): a connection there must be intercepted to inject it.
    pub fn serves(&self, host: &Host) -> bool {
        !self.by_host.is_empty() && self.by_host.contains_key(host)
    }

    /// The credential for a request. `path` is the request target's path;
    /// a query or fragment is ignored.
    pub fn lookup(&self, scheme: Scheme, host: &Host, port: u16, path: &str) -> McpMatch {
        if self.by_host.is_empty() {
            return McpMatch::None;
        }
        let Some(routes) = self.by_host.get(host) else {
            return McpMatch::None;
        };
        let path = request_path(path);
        let unsafe_path = is_unsafe_path(path);
        let mut nearest: Option<(usize, u32)> = None;
        // (covers the path, index): the first route that covers it, else
        // the first one (routes are sorted longest prefix first).
        let mut other_port: Option<(bool, u32)> = None;
        let mut other_scheme: Option<(bool, u32)> = None;
        let better =
            |best: Option<(bool, u32)>, covers: bool| best.is_none_or(|(c, _)| covers && !c);
        for route in routes {
            let t = &route.target;
            let covers = (t.is_root() || !unsafe_path) && t.covers(path);
            if t.scheme() != scheme {
                if better(other_scheme, covers) {
                    other_scheme = Some((covers, route.index));
                }
            } else if t.port() != port {
                if better(other_port, covers) {
                    other_port = Some((covers, route.index));
                }
            } else if covers {
                return McpMatch::Hit(route.index);
            } else {
                let score = shared_segments(t.prefix(), path);
                if nearest.is_none_or(|(best, _)| score > best) {
                    nearest = Some((score, route.index));
                }
            }
        }
        match (nearest, other_port, other_scheme) {
            (Some((_, nearest)), _, _) => McpMatch::SamePathOutside { nearest },
            (None, Some((_, nearest)), _) => McpMatch::OtherPort { nearest },
            (None, None, Some((_, nearest))) => McpMatch::OtherScheme { nearest },
            (None, None, None) => McpMatch::None,
        }
    }

    /// Every MCP credential of `host`, by index, and what each does for
    /// this request.
    pub fn explain(
        &self,
        scheme: Scheme,
        host: &Host,
        port: u16,
        path: &str,
    ) -> Vec<RouteExplanation<'_>> {
        let Some(routes) = self.by_host.get(host) else {
            return Vec::new();
        };
        let winner = match self.lookup(scheme, host, port, path) {
            McpMatch::Hit(i) => Some(i),
            _ => None,
        };
        let path = request_path(path);
        let unsafe_path = is_unsafe_path(path);
        let mut out: Vec<RouteExplanation<'_>> = routes
            .iter()
            .map(|route| {
                let t = &route.target;
                let verdict = if t.scheme() != scheme {
                    RouteVerdict::OtherScheme
                } else if t.port() != port {
                    RouteVerdict::OtherPort
                } else if unsafe_path && !t.is_root() {
                    RouteVerdict::UnsafePath
                } else if !t.covers(path) {
                    RouteVerdict::PathOutside
                } else {
                    match winner {
                        Some(by) if by != route.index => RouteVerdict::Shadowed { by },
                        _ => RouteVerdict::Applies,
                    }
                };
                RouteExplanation {
                    index: route.index,
                    target: t,
                    verdict,
                }
            })
            .collect();
        out.sort_by_key(|e| e.index);
        out
    }
}

/// How many leading path segments two paths share.
fn shared_segments(a: &str, b: &str) -> usize {
    a.split('/')
        .zip(b.split('/'))
        .take_while(|(x, y)| x == y)
        .filter(|(x, _)| !x.is_empty())
        .count()
}

// === impl McpMatch ===

impl McpMatch {
    /// Why it missed, for log lines and `keyhole explain`; `None` for a hit.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            McpMatch::Hit(_) => None,
            McpMatch::SamePathOutside { .. } => Some("same origin, path outside the credential's"),
            McpMatch::OtherPort { .. } => Some("same host and scheme, another port"),
            McpMatch::OtherScheme { .. } => Some("same host, another scheme"),
            McpMatch::None => Some("no MCP credential names this host"),
        }
    }
}

// === impl RouteVerdict ===

impl RouteVerdict {
    /// Whether the credential's token is injected.
    pub fn applies(&self) -> bool {
        matches!(self, RouteVerdict::Applies)
    }

    /// A sentence saying why, for `keyhole explain`.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteVerdict::Applies => "the request is at or below its mcp_server_url",
            RouteVerdict::Shadowed { .. } => {
                "covers the path, but a credential with a longer path prefix applies"
            }
            RouteVerdict::PathOutside => "same origin, path outside the credential's",
            RouteVerdict::UnsafePath => {
                "the path has '.' or '..' segments or an encoded '.', '/' or '\\', which only a credential for the whole origin may cover"
            }
            RouteVerdict::OtherPort => "same host and scheme, another port",
            RouteVerdict::OtherScheme => "same host, another scheme",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::test_config;

    fn config(entries: &[&str]) -> Config {
        let credentials: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (vault, url) = e.split_once(' ').unwrap_or(("vlt_local", e));
                format!(
                    r#"{{"id": "c{i}", "vault_id": "{vault}", "auth": {{"type": "static_bearer", "mcp_server_url": "{url}", "token": "t{i}"}}}}"#
                )
            })
            .collect();
        let text = format!(
            r#"{{"vaults": [{{"id": "vlt_local"}}, {{"id": "vlt_b"}}, {{"id": "vlt_old", "archived_at": "2026-01-01T00:00:00Z"}}],
               "credentials": [{}]}}"#,
            credentials.join(",")
        );
        test_config(&text)
    }

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn https(routes: &McpRoutes, h: &str, path: &str) -> McpMatch {
        routes.lookup(Scheme::Https, &host(h), 443, path)
    }

    #[test]
    fn a_prefix_covers_itself_and_below_only() {
        let r = McpRoutes::new(&config(&["https://mcp.example.com/sse"]));
        for yes in ["/sse", "/sse/", "/sse/messages?session=1", "/sse?x"] {
            assert_eq!(https(&r, "mcp.example.com", yes), McpMatch::Hit(0), "{yes}");
        }
        for no in ["/sse2", "/ssefoo", "/", "/other/sse"] {
            assert_eq!(
                https(&r, "mcp.example.com", no),
                McpMatch::SamePathOutside { nearest: 0 },
                "{no}"
            );
        }
    }

    #[test]
    fn a_root_prefix_covers_the_origin() {
        let r = McpRoutes::new(&config(&["https://mcp.example.com/"]));
        for path in ["/", "/sse", "/a/../b", "/%2e%2e/x", "*"] {
            assert_eq!(
                https(&r, "mcp.example.com", path),
                McpMatch::Hit(0),
                "{path}"
            );
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let r = McpRoutes::new(&config(&[
            "https://mcp.example.com/",
            "https://mcp.example.com/a/b",
            "https://mcp.example.com/a",
        ]));
        assert_eq!(https(&r, "mcp.example.com", "/a/b/c"), McpMatch::Hit(1));
        assert_eq!(https(&r, "mcp.example.com", "/a/bc"), McpMatch::Hit(2));
        assert_eq!(https(&r, "mcp.example.com", "/a"), McpMatch::Hit(2));
        assert_eq!(https(&r, "mcp.example.com", "/ab"), McpMatch::Hit(0));
        let explained = r.explain(Scheme::Https, &host("mcp.example.com"), 443, "/a/b/c");
        let verdicts: Vec<(u32, RouteVerdict)> =
            explained.iter().map(|e| (e.index, e.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                (0, RouteVerdict::Shadowed { by: 1 }),
                (1, RouteVerdict::Applies),
                (2, RouteVerdict::Shadowed { by: 1 }),
            ]
        );
        assert_eq!(
            explained[1].target.to_string(),
            "https://mcp.example.com/a/b"
        );
    }

    #[test]
    fn escaping_paths_match_only_a_root_prefix() {
        let r = McpRoutes::new(&config(&["https://mcp.example.com/sse"]));
        for path in [
            "/sse/../admin",
            "/sse/./x",
            "/sse/%2e%2e/admin",
            "/sse/%2E%2E/admin",
            "/sse%2f..%2fadmin",
            "/sse/..",
            "/sse\\..\\admin",
        ] {
            assert_eq!(
                https(&r, "mcp.example.com", path),
                McpMatch::SamePathOutside { nearest: 0 },
                "{path}"
            );
        }
        let explained = r.explain(Scheme::Https, &host("mcp.example.com"), 443, "/sse/../x");
        assert_eq!(explained[0].verdict, RouteVerdict::UnsafePath);
        let r = McpRoutes::new(&config(&[
            "https://mcp.example.com/",
            "https://mcp.example.com/sse",
        ]));
        assert_eq!(https(&r, "mcp.example.com", "/sse/../x"), McpMatch::Hit(0));
    }

    #[test]
    fn other_ports_and_schemes_say_so() {
        let r = McpRoutes::new(&config(&["https://mcp.example.com/sse"]));
        let h = host("mcp.example.com");
        assert_eq!(
            r.lookup(Scheme::Https, &h, 8443, "/sse"),
            McpMatch::OtherPort { nearest: 0 }
        );
        assert_eq!(
            r.lookup(Scheme::Http, &h, 80, "/sse"),
            McpMatch::OtherScheme { nearest: 0 }
        );
        assert_eq!(
            r.lookup(Scheme::Http, &h, 443, "/sse"),
            McpMatch::OtherScheme { nearest: 0 }
        );
        // Of several credentials, the one whose path it is (not merely the
        // longest prefix) is named.
        let two = McpRoutes::new(&config(&[
            "https://mcp.example.com/sse",
            "https://mcp.example.com/longer-prefix",
        ]));
        for (path, want) in [
            ("/sse", 0),
            ("/sse/x", 0),
            ("/longer-prefix", 1),
            ("/other", 1),
        ] {
            assert_eq!(
                two.lookup(Scheme::Http, &h, 80, path),
                McpMatch::OtherScheme { nearest: want },
                "{path}"
            );
            assert_eq!(
                two.lookup(Scheme::Https, &h, 8443, path),
                McpMatch::OtherPort { nearest: want },
                "{path}"
            );
        }
        let explained = r.explain(Scheme::Http, &h, 80, "/sse");
        assert_eq!(explained[0].verdict, RouteVerdict::OtherScheme);
        assert!(!explained[0].verdict.applies());
        let r = McpRoutes::new(&config(&["https://mcp.example.com:8443/sse"]));
        assert_eq!(r.lookup(Scheme::Https, &h, 8443, "/sse"), McpMatch::Hit(0));
        assert_eq!(
            r.lookup(Scheme::Https, &h, 443, "/sse"),
            McpMatch::OtherPort { nearest: 0 }
        );
        assert_eq!(
            McpMatch::SamePathOutside { nearest: 0 }.reason(),
            Some("same origin, path outside the credential's")
        );
        assert_eq!(McpMatch::Hit(0).reason(), None);
    }

    #[test]
    fn nearest_shares_the_most_segments() {
        let r = McpRoutes::new(&config(&[
            "https://mcp.example.com/a/b/c",
            "https://mcp.example.com/x/y",
        ]));
        assert_eq!(
            https(&r, "mcp.example.com", "/x/z"),
            McpMatch::SamePathOutside { nearest: 1 }
        );
        assert_eq!(
            https(&r, "mcp.example.com", "/a/b/d"),
            McpMatch::SamePathOutside { nearest: 0 }
        );
    }

    #[test]
    fn lookalike_hosts_do_not_match_and_case_folds() {
        let r = McpRoutes::new(&config(&["https://mcp.example.com/"]));
        for other in [
            "evil-mcp.example.com",
            "mcp.example.com.evil.net",
            "example.com",
            "a.mcp.example.com",
        ] {
            assert_eq!(https(&r, other, "/"), McpMatch::None, "{other}");
            assert!(!r.serves(&host(other)));
        }
        assert_eq!(https(&r, "MCP.Example.COM.", "/"), McpMatch::Hit(0));
        assert!(r.serves(&host("mcp.example.com")));
        assert!(r
            .explain(Scheme::Https, &host("x.example.com"), 443, "/")
            .is_empty());
    }

    #[test]
    fn archived_credentials_and_vaults_are_left_out() {
        let mut c = config(&[
            "https://a.example.com/",
            "vlt_old https://b.example.com/",
            "vlt_b https://c.example.com/",
        ]);
        c.credentials[0].archived_at = Some("2026-01-01T00:00:00Z".into());
        let r = McpRoutes::new(&c);
        assert_eq!(https(&r, "a.example.com", "/"), McpMatch::None);
        assert_eq!(https(&r, "b.example.com", "/"), McpMatch::None);
        assert_eq!(https(&r, "c.example.com", "/"), McpMatch::Hit(2));
        assert!(McpRoutes::new(&config(&[])).is_empty());
    }
}
