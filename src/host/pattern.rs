//! Host patterns: the entries of `allowed_hosts`.
//!
//! An entry is a bare host name (`api.example.com`), an IPv4 address in
//! dotted-quad form (`192.0.2.1`) or a `*.` wildcard (`*.example.com`), as
//! the vault API defines them. Parsing refuses everything else with a
//! message that says what to write instead. Upper case is accepted and
//! folded to lower case, since host names are case-insensitive.
//!
//! Non-ASCII names are refused, not converted: the refusal names the IDNA
//! (punycode) form to write, so the file always shows the exact name that
//! is matched and two spellings of one name cannot both be listed.

use std::fmt;
use std::net::Ipv4Addr;

use super::ipv4;
use super::name::{Host, HostKind, MAX_LABEL_LEN, MAX_NAME_LEN};

/// A validated `allowed_hosts` entry.
///
/// Invariants: names are lower-case LDH (`[a-z0-9-]`, no label starting or
/// ending with `-`), labels 1-63 bytes, at most 253 bytes, and do not end
/// in a number; a wildcard's domain obeys the same rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Matches exactly this name.
    Exact(Box<str>),
    /// Matches exactly this address, however the request spells it.
    Ipv4(Ipv4Addr),
    /// `*.domain`: matches every subdomain of `domain` at any depth, never
    /// `domain` itself. Holds `domain` without the `*.`.
    Wildcard(Box<str>),
}

/// Why an entry was refused. Each message names the entry and says what to
/// write instead; the caller prefixes the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `""`.
    #[error("the entry is empty; write a host name such as \"api.example.com\"")]
    Empty,
    /// Leading, trailing or inner white space.
    #[error("{0:?} contains white space; write {1:?}")]
    WhiteSpace(String, String),
    /// `https://host/...`.
    #[error("{0:?} is a URL; write the bare host {1:?}")]
    Url(String, String),
    /// `user@host`.
    #[error("{0:?} has userinfo; write the bare host {1:?}")]
    Userinfo(String, String),
    /// `host/path`.
    #[error("{0:?} has a path; write the bare host {1:?}")]
    Path(String, String),
    /// `host?query` or `host#fragment`.
    #[error("{0:?} has a query or fragment; write the bare host {1:?}")]
    Query(String, String),
    /// `host:port`.
    #[error("{0:?} has a port; entries match every port, write {1:?}")]
    Port(String, String),
    /// IPv6, bare or bracketed.
    #[error(
        "{0:?} is an IPv6 address; IPv6 is not supported, write a host name or an IPv4 address"
    )]
    Ipv6(String),
    /// `*`.
    #[error(
        "\"*\" alone would match every host; use {{\"type\": \"unrestricted\"}} networking instead"
    )]
    Star,
    /// `*example.com`.
    #[error("{0:?} has no dot after \"*\"; write \"*.{1}\" for its subdomains or \"{1}\" for the host itself")]
    StarWithoutDot(String, String),
    /// A `*` other than a leading `*.`.
    #[error("{0:?} has a \"*\" that is not a leading \"*.\"; only \"*.domain\" wildcards are supported, as in \"*.example.com\"")]
    MisplacedStar(String),
    /// `api.example.com.`
    #[error("{0:?} ends with a dot; write {1:?}")]
    TrailingDot(String, String),
    /// `a..b`, `.example.com`.
    #[error("{0:?} has an empty label; remove the extra dot")]
    EmptyLabel(String),
    /// A character outside letters, digits, `-` and `.`.
    #[error("{0:?} contains {1:?}; host names hold only letters, digits, hyphens and dots")]
    InvalidChar(String, char),
    /// Non-ASCII: the IDNA form to write, when there is one.
    #[error("{0:?} is not ASCII; write its IDNA form {1:?}")]
    Unicode(String, String),
    /// Non-ASCII with no valid IDNA form.
    #[error("{0:?} is not ASCII and has no valid IDNA form; write the host's xn-- form")]
    InvalidUnicode(String),
    /// A label starting or ending with `-`.
    #[error("{0:?} has a label that starts or ends with a hyphen; host name labels may not")]
    Hyphen(String),
    /// A label over 63 characters.
    #[error("{0:?} has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    /// Over 253 characters.
    #[error("{0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    /// An IPv4 address in a spelling other than the dotted quad.
    #[error("{0:?} is an IPv4 address in a short or non-decimal spelling; write {1:?}")]
    Ipv4Spelling(String, String),
    /// Ends in a number but is no IPv4 address.
    #[error("{0:?} ends in a number but is not a valid IPv4 address; write a dotted quad such as \"192.0.2.1\" or a host name")]
    InvalidIpv4(String),
    /// `*.192.0.2`.
    #[error("{0:?} is a wildcard over an IP address; list each IPv4 address on its own")]
    WildcardIp(String),
}

// === impl HostPattern ===

impl HostPattern {
    /// Parses and validates one `allowed_hosts` entry.
    pub fn parse(entry: &str) -> Result<HostPattern, PatternError> {
        let e = || entry.to_owned();
        if entry.is_empty() {
            return Err(PatternError::Empty);
        }
        if entry.chars().any(char::is_whitespace) {
            let cleaned: String = entry.chars().filter(|c| !c.is_whitespace()).collect();
            return Err(PatternError::WhiteSpace(e(), cleaned));
        }
        if let Some((_, rest)) = entry.split_once("://") {
            return Err(PatternError::Url(e(), bare_host(rest)));
        }
        if let Some((_, rest)) = entry.rsplit_once('@') {
            return Err(PatternError::Userinfo(e(), bare_host(rest)));
        }
        if let Some(i) = entry.find('/') {
            return Err(PatternError::Path(e(), bare_host(&entry[..i])));
        }
        if let Some(i) = entry.find(['?', '#']) {
            return Err(PatternError::Query(e(), bare_host(&entry[..i])));
        }
        if entry.starts_with('[') || entry.matches(':').count() > 1 {
            return Err(PatternError::Ipv6(e()));
        }
        if let Some((host, _)) = entry.split_once(':') {
            return Err(PatternError::Port(e(), host.to_ascii_lowercase()));
        }
        if entry == "*" || entry == "*." {
            return Err(PatternError::Star);
        }
        let (wildcard, name) = match entry.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => match entry.strip_prefix('*') {
                Some(rest) if !rest.contains('*') => {
                    return Err(PatternError::StarWithoutDot(e(), rest.to_ascii_lowercase()))
                }
                _ => (false, entry),
            },
        };
        if name.contains('*') {
            return Err(PatternError::MisplacedStar(e()));
        }
        if !name.is_ascii() {
            return Err(match idna::domain_to_ascii_strict(name) {
                Ok(ascii) => {
                    let prefix = if wildcard { "*." } else { "" };
                    PatternError::Unicode(e(), format!("{prefix}{ascii}"))
                }
                Err(_) => PatternError::InvalidUnicode(e()),
            });
        }
        if let Some(stripped) = entry.strip_suffix('.') {
            return Err(PatternError::TrailingDot(
                e(),
                stripped.to_ascii_lowercase(),
            ));
        }
        check_name(entry, name)?;
        let name = name.to_ascii_lowercase();
        if ipv4::ends_in_number(&name) {
            if wildcard {
                return Err(PatternError::WildcardIp(e()));
            }
            let addr = ipv4::parse(&name).ok_or_else(|| PatternError::InvalidIpv4(e()))?;
            if addr.to_string() != name {
                return Err(PatternError::Ipv4Spelling(e(), addr.to_string()));
            }
            return Ok(HostPattern::Ipv4(addr));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(name.into())
        } else {
            HostPattern::Exact(name.into())
        })
    }

    /// The reference semantics of matching, written for clarity rather than
    /// speed: the compiled [`HostSet`](super::HostSet) must agree with it on
    /// every host (a differential test checks this).
    pub fn matches(&self, host: &Host) -> bool {
        match (self, host.kind()) {
            (HostPattern::Exact(name), HostKind::Name) => host.as_str() == &**name,
            (HostPattern::Ipv4(addr), HostKind::Ipv4(a)) => *addr == a,
            (HostPattern::Wildcard(domain), HostKind::Name) => host
                .as_str()
                .strip_suffix(&**domain)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            _ => false,
        }
    }

    /// The name or domain this pattern is keyed on: the exact name, the
    /// dotted quad, or the wildcard's domain.
    pub fn key(&self) -> String {
        match self {
            HostPattern::Exact(name) | HostPattern::Wildcard(name) => name.to_string(),
            HostPattern::Ipv4(addr) => addr.to_string(),
        }
    }

    /// Whether some host matches both `self` and `other`.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        use HostPattern::*;
        let under = |name: &str, domain: &str| {
            name.strip_suffix(domain)
                .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
        };
        match (self, other) {
            (Wildcard(a), Wildcard(b)) => under(a, b) || under(b, a),
            (Wildcard(d), Exact(n)) | (Exact(n), Wildcard(d)) => under(n, d) && n.len() > d.len(),
            _ => self == other,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Ipv4(addr) => write!(f, "{addr}"),
            HostPattern::Wildcard(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// Checks LDH syntax and lengths of `name` (the entry without `*.`).
fn check_name(entry: &str, name: &str) -> Result<(), PatternError> {
    let e = || entry.to_owned();
    if name.len() > MAX_NAME_LEN {
        return Err(PatternError::TooLong(e()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(PatternError::EmptyLabel(e()));
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(PatternError::InvalidChar(e(), c));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(PatternError::LabelTooLong(e()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(PatternError::Hyphen(e()));
        }
    }
    Ok(())
}

/// The host part of `authority[/path...]`, for suggestions only.
fn bare_host(rest: &str) -> String {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        HostPattern::parse(s).unwrap().to_string()
    }

    fn err(s: &str) -> String {
        HostPattern::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn accepts_names_addresses_and_wildcards() {
        assert_eq!(ok("api.example.com"), "api.example.com");
        assert_eq!(ok("API.Example.COM"), "api.example.com");
        assert_eq!(ok("*.githubusercontent.com"), "*.githubusercontent.com");
        assert_eq!(ok("localhost"), "localhost");
        assert_eq!(ok("192.0.2.1"), "192.0.2.1");
        assert_eq!(ok("xn--bcher-kva.de"), "xn--bcher-kva.de");
        assert_eq!(ok("*.xn--bcher-kva.de"), "*.xn--bcher-kva.de");
        assert_eq!(ok("a-b.c0m"), "a-b.c0m");
        assert!(matches!(
            HostPattern::parse("10.0.0.1"),
            Ok(HostPattern::Ipv4(_))
        ));
    }

    #[test]
    fn refusals_say_what_to_write() {
        assert_eq!(
            err("https://api.x.com"),
            r#""https://api.x.com" is a URL; write the bare host "api.x.com""#
        );
        assert!(
            err("https://u:p@API.x.com:8443/v1?q").ends_with(r#"write the bare host "api.x.com""#)
        );
        assert!(err("api.x.com:443").contains(r#"write "api.x.com""#));
        assert!(err("api.x.com/v1").contains(r#"bare host "api.x.com""#));
        assert!(err("api.x.com?x=1").contains("query"));
        assert!(err("user@api.x.com").contains("userinfo"));
        assert!(err("::1").contains("IPv6"));
        assert!(err("[::1]").contains("IPv6"));
        assert!(err("2001:db8::1").contains("IPv6"));
        assert!(err("*").contains("unrestricted"));
        assert!(err("*example.com").contains(r#"write "*.example.com""#));
        assert!(err("api.*.com").contains("leading"));
        assert!(err("*.*.com").contains("leading"));
        assert!(err("**.com").contains("leading"));
        assert!(err("").contains("empty"));
        assert!(err(" api.x.com").contains(r#"write "api.x.com""#));
        assert!(err("api.x.com.").contains(r#"write "api.x.com""#));
        assert!(err("a..com").contains("empty label"));
        assert!(err("a_b.com").contains("'_'"));
        assert!(err("-a.com").contains("hyphen"));
        assert!(err(&format!("{}.com", "a".repeat(64))).contains("longer than 63"));
        assert!(err(&vec!["abcdefghi"; 26].join(".")).contains("longer than 253"));
        assert_eq!(
            err("bücher.de"),
            r#""bücher.de" is not ASCII; write its IDNA form "xn--bcher-kva.de""#
        );
        assert!(err("*.bücher.de").contains(r#""*.xn--bcher-kva.de""#));
        assert!(err("127.1").contains(r#"write "127.0.0.1""#));
        assert!(err("0x7f.0.0.1").contains(r#"write "127.0.0.1""#));
        assert!(err("010.0.0.1").contains(r#"write "8.0.0.1""#));
        assert!(err("1.2.3.256").contains("not a valid IPv4"));
        assert!(err("*.0.0.1").contains("wildcard over an IP"));
        assert!(err("%2e.com").contains("'%'"));
    }

    #[test]
    fn wildcards_match_subdomains_at_any_depth_never_the_domain() {
        let p = HostPattern::parse("*.example.com").unwrap();
        let m = |h: &str| p.matches(&Host::parse(h).unwrap());
        assert!(m("a.example.com"));
        assert!(m("a.b.example.com"));
        assert!(m("API.EXAMPLE.COM"));
        assert!(m("api.example.com."));
        assert!(!m("example.com"));
        assert!(!m("evilexample.com"));
        assert!(!m("example.com.evil.net"));
    }

    #[test]
    fn ipv4_entries_match_every_spelling_of_their_address_only() {
        let p = HostPattern::parse("127.0.0.1").unwrap();
        for h in ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "0177.0.0.1"] {
            assert!(p.matches(&Host::parse(h).unwrap()), "{h}");
        }
        assert!(!p.matches(&Host::parse("127.0.0.2").unwrap()));
        assert!(!p.matches(&Host::parse("[::ffff:127.0.0.1]").unwrap()));
    }

    #[test]
    fn overlap() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("*.github.com").overlaps(&p("api.github.com")));
        assert!(p("*.github.com").overlaps(&p("*.api.github.com")));
        assert!(p("*.api.github.com").overlaps(&p("*.github.com")));
        assert!(!p("*.github.com").overlaps(&p("github.com")));
        assert!(!p("*.github.com").overlaps(&p("notgithub.com")));
        assert!(p("1.2.3.4").overlaps(&p("1.2.3.4")));
        assert!(!p("api.github.com").overlaps(&p("github.com")));
    }
}
