//! An `mcp_server_url` as keyhole matches it: an origin (scheme, normalised
//! host, port) and a path prefix.
//!
//! The vault API only requires an http(s) URL with a host
//! ([`crate::model::rules::url`]). keyhole matches the origin and the path
//! only, so it refuses at load what it could not honour: a query or a
//! fragment (keyhole would send the token whatever the query, so writing
//! one would suggest a narrower scope than the one enforced), userinfo (a
//! password in a field that is shown and logged), port 0, and a path that
//! is not in its plain form ([`is_unsafe_path`]), which no request could
//! safely be said to lie below.

use std::fmt;

use super::Host;
use crate::host::HostError;

/// The scheme of an MCP server or of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`: plaintext.
    Http,
    /// `https`.
    Https,
}

/// An `mcp_server_url`, normalised.
///
/// Invariants: `host` went through [`Host::parse`]; `port` is not 0 (the
/// scheme's default when the URL named none); `prefix` starts with `/`,
/// ends with `/` only when it is `/`, and is not [`is_unsafe_path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct McpTarget {
    scheme: Scheme,
    host: Host,
    port: u16,
    prefix: Box<str>,
}

/// Why an `mcp_server_url` cannot be matched. Messages never repeat the
/// URL: it may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpUrlError {
    /// Not a URL, or not http(s), or no host.
    #[error("is not an http(s) URL; write one such as \"https://mcp.example.com/sse\"")]
    NotUrl,
    /// `user:password@host`.
    #[error("holds a user name or password (user@host), which keyhole neither matches nor sends; remove them (the value is not shown)")]
    Userinfo,
    /// `?...`.
    #[error("has a query (\"?...\"); keyhole matches the origin and path only and would send the token whatever the query, so remove it")]
    Query,
    /// `#...`.
    #[error("has a fragment (\"#...\"), which is never sent to a server; remove it")]
    Fragment,
    /// The host failed [`Host::parse`].
    #[error("has a host keyhole refuses: {0}")]
    Host(#[from] HostError),
    /// `:0`.
    #[error("names port 0; give the MCP server's port, or none for the scheme's default")]
    Port,
    /// See [`is_unsafe_path`].
    #[error("has a path with '.' or '..' segments, a backslash or an encoded '.', '/' or '\\' (%2e, %2f, %5c); write the plain path the MCP server serves")]
    UnsafePath,
}

// === impl Scheme ===

impl Scheme {
    /// `http` or `https`, in any case.
    pub fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl McpTarget ===

impl McpTarget {
    /// Parses and normalises an `mcp_server_url`. See the module
    /// documentation for what is refused.
    pub fn parse(url: &str) -> Result<McpTarget, McpUrlError> {
        // `http::Uri` drops a fragment silently: look at the text first.
        if url.contains('#') {
            return Err(McpUrlError::Fragment);
        }
        if url.contains('?') {
            return Err(McpUrlError::Query);
        }
        let uri: http::Uri = url.parse().map_err(|_| McpUrlError::NotUrl)?;
        let scheme = uri
            .scheme_str()
            .and_then(Scheme::parse)
            .ok_or(McpUrlError::NotUrl)?;
        let authority = uri.authority().ok_or(McpUrlError::NotUrl)?;
        if authority.as_str().contains('@') {
            return Err(McpUrlError::Userinfo);
        }
        let host = Host::parse(authority.host())?;
        let port = match uri.port_u16() {
            Some(0) => return Err(McpUrlError::Port),
            Some(port) => port,
            None => scheme.default_port(),
        };
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        if is_unsafe_path(path) {
            return Err(McpUrlError::UnsafePath);
        }
        let trimmed = path.trim_end_matches('/');
        let prefix = if trimmed.is_empty() { "/" } else { trimmed };
        Ok(McpTarget {
            scheme,
            host,
            port,
            prefix: prefix.into(),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The normalised host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port (the scheme's default when the URL named none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path prefix: `/`, or a path without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the prefix is `/`: the whole origin.
    pub fn is_root(&self) -> bool {
        &*self.prefix == "/"
    }

    /// Whether a request path lies at or below the prefix: `/sse` covers
    /// `/sse` and `/sse/...`, not `/sse2`. The caller checks
    /// [`is_unsafe_path`] first.
    pub fn covers(&self, path: &str) -> bool {
        self.is_root()
            || (path.starts_with(&*self.prefix)
                && matches!(path.as_bytes().get(self.prefix.len()), None | Some(b'/')))
    }
}

impl fmt::Display for McpTarget {
    /// `scheme://host[:port]prefix`, the port only when not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.prefix)
    }
}

/// The path of a request target: what comes before any `?` or `#`, and
/// `/` for an empty one.
pub fn request_path(path_and_query: &str) -> &str {
    let end = path_and_query
        .find(['?', '#'])
        .unwrap_or(path_and_query.len());
    match &path_and_query[..end] {
        "" => "/",
        p => p,
    }
}

/// Whether a path could name something other than what it spells once a
/// server normalises it: it does not start with `/`, or it holds a `.` or
/// `..` segment, a backslash, or a percent-encoded `.`, `/` or `\`
/// (`%2e`, `%2f`, `%5c`, either case). Such a request path matches only a
/// credential for the whole origin (prefix `/`), never a deeper one: a
/// server that resolves `/sse/../admin` must not receive `/sse`'s token.
/// The trade-off: a benign `/sse/file%2ejson` gets no token from a `/sse`
/// credential (fail closed).
pub fn is_unsafe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return true;
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return true;
    }
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> McpTarget {
        McpTarget::parse(url).unwrap()
    }

    #[test]
    fn origins_are_normalised_with_default_ports() {
        let t = target("https://MCP.Example.COM./sse/");
        assert_eq!(t.scheme(), Scheme::Https);
        assert_eq!(t.host().as_str(), "mcp.example.com");
        assert_eq!(t.port(), 443);
        assert_eq!(t.prefix(), "/sse");
        assert_eq!(t.to_string(), "https://mcp.example.com/sse");
        let t = target("http://127.1:8080");
        assert_eq!(
            (t.host().as_str(), t.port(), t.prefix()),
            ("127.0.0.1", 8080, "/")
        );
        assert_eq!(t.to_string(), "http://127.0.0.1:8080/");
        assert_eq!(target("http://m.example.com/").port(), 80);
        assert_eq!(target("HTTPS://m.example.com:443/a//").prefix(), "/a");
        assert_eq!(target("https://[::1]:8443/x").host().as_str(), "[::1]");
    }

    #[test]
    fn equal_after_normalising() {
        assert_eq!(
            target("https://mcp.example.com/sse"),
            target("https://mcp.example.com:443/sse/")
        );
        assert_ne!(
            target("https://mcp.example.com/sse"),
            target("https://mcp.example.com/")
        );
        assert_ne!(
            target("https://mcp.example.com/sse"),
            target("http://mcp.example.com:443/sse")
        );
    }

    #[test]
    fn refusals() {
        use McpUrlError::*;
        for (url, want) in [
            ("mcp.example.com", NotUrl),
            ("ftp://mcp.example.com/", NotUrl),
            ("https://mcp.example.com/sse?x=1", Query),
            ("https://mcp.example.com/sse?", Query),
            ("https://mcp.example.com/sse#top", Fragment),
            ("https://user:pw@mcp.example.com/sse", Userinfo),
            ("https://mcp.example.com:0/", Port),
            ("https://mcp.example.com/a/../b", UnsafePath),
            ("https://mcp.example.com/a/%2E%2E/b", UnsafePath),
            ("https://mcp.example.com/a%2fb", UnsafePath),
            ("https://mcp.example.com/./a", UnsafePath),
            ("https://bücher.de/", NotUrl),
        ] {
            assert_eq!(McpTarget::parse(url), Err(want), "{url}");
        }
        assert!(matches!(
            McpTarget::parse("https://a..b/"),
            Err(McpUrlError::Host(_))
        ));
        let shown = McpTarget::parse("https://user:hunter2@m.example.com/")
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn prefixes_cover_their_subtree_only() {
        let t = target("https://mcp.example.com/sse");
        for yes in ["/sse", "/sse/", "/sse/a/b", "/sse//x"] {
            assert!(t.covers(yes), "{yes}");
        }
        for no in ["/sse2", "/ssefoo", "/ss", "/", "/SSE", "//sse"] {
            assert!(!t.covers(no), "{no}");
        }
        let root = target("https://mcp.example.com/");
        assert!(root.is_root() && root.covers("/anything") && root.covers("/"));
    }

    #[test]
    fn request_paths_lose_query_and_fragment() {
        assert_eq!(request_path("/sse?a=/../b"), "/sse");
        assert_eq!(request_path("/sse#x"), "/sse");
        assert_eq!(request_path(""), "/");
        assert_eq!(request_path("?q"), "/");
    }

    #[test]
    fn unsafe_paths() {
        for bad in [
            "/sse/..",
            "/sse/../admin",
            "/sse/./x",
            "/sse/%2e%2e/x",
            "/sse/%2E./x",
            "/sse%2fx",
            "/sse%2F..",
            "/sse\\..\\x",
            "/sse/%5c",
            "*",
            "sse",
            "",
        ] {
            assert!(is_unsafe_path(bad), "{bad}");
        }
        for good in [
            "/",
            "/sse",
            "/sse/...",
            "/sse/.well-known",
            "/a%20b",
            "/sse/x.y",
            "/%2",
        ] {
            assert!(!is_unsafe_path(good), "{good}");
        }
    }
}
