//! Request hosts: normalisation of the name a client asked for.
//!
//! Every host keyhole decides on (a CONNECT authority, an absolute URI's
//! host, a TLS SNI, a `Host` header) passes through [`Host::parse`] first,
//! so that one spelling of a destination can never be judged differently
//! from another: names are lower-cased and lose one trailing dot, IPv4 in
//! any WHATWG spelling becomes a dotted quad, bracketed IPv6 is recognised
//! (and never matches an entry), and anything else is refused.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipv4;

/// Longest host name DNS can carry (RFC 1035, in text form).
pub const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a request host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing was given.
    #[error("the host is empty; name the server to reach")]
    Empty,
    /// A character no host name may hold (`%`, `/`, `@`, white space, non-ASCII, ...).
    #[error("the host holds a character that is not allowed in a host name ({0:?}); use letters, digits, '-', '_' and '.', and the IDNA (xn--) form for non-ASCII names")]
    InvalidChar(char),
    /// `a..b` or a leading dot.
    #[error("the host has an empty label; remove the extra '.'")]
    EmptyLabel,
    /// A label over 63 bytes.
    #[error("a label of the host is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong,
    /// A name over 253 bytes.
    #[error("the host is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// The last label is numeric but the whole is not an IPv4 address.
    #[error("the host ends in a number but is not a valid IPv4 address")]
    InvalidIpv4,
    /// `[...]` that is not an IPv6 address, or a bare IPv6 address.
    #[error("the host is not a valid IPv6 address; write IPv6 in brackets, as in [2001:db8::1]")]
    InvalidIpv6,
    /// `host:port` with a port that is not 1-65535.
    #[error("the port is not a number from 1 to 65535")]
    InvalidPort,
}

/// What kind of address a [`Host`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// A DNS name: lower-case letters, digits, `-`, `_`, labels joined by `.`.
    Name,
    /// An IPv4 address, whatever its spelling was.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets). It never matches an entry.
    Ipv6(Ipv6Addr),
}

/// A normalised request host.
///
/// Invariants: `text` is lower-case ASCII with no trailing dot; for
/// [`HostKind::Ipv4`] it is the dotted quad, for [`HostKind::Ipv6`] the
/// bracketed canonical form; for names, every label is 1-63 bytes of
/// `[a-z0-9_-]`, the whole at most 253 bytes, and the last label does not
/// end in a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    text: Box<str>,
    kind: HostKind,
}

/// A host with an optional port, as in a CONNECT authority or `Host` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// The normalised host.
    pub host: Host,
    /// The port, when one was written.
    pub port: Option<u16>,
}

// === impl Host ===

impl Host {
    /// Normalises a bare host (no port). See the module documentation.
    pub fn parse(input: &str) -> Result<Host, HostError> {
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = input.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(HostError::InvalidIpv6)?;
            let addr: Ipv6Addr = inner.parse().map_err(|_| HostError::InvalidIpv6)?;
            return Ok(Host {
                text: format!("[{addr}]").into(),
                kind: HostKind::Ipv6(addr),
            });
        }
        if input.contains(':') {
            return Err(HostError::InvalidIpv6);
        }
        let name = input.strip_suffix('.').unwrap_or(input);
        if name.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if let Some(c) = name
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        {
            return Err(HostError::InvalidChar(c));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(HostError::TooLong);
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(HostError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(HostError::LabelTooLong);
            }
        }
        if ipv4::ends_in_number(name) {
            let addr = ipv4::parse(name).ok_or(HostError::InvalidIpv4)?;
            return Ok(Host::from_ipv4(addr));
        }
        Ok(Host {
            text: name.to_ascii_lowercase().into(),
            kind: HostKind::Name,
        })
    }

    /// The host for an IPv4 address.
    pub fn from_ipv4(addr: Ipv4Addr) -> Host {
        Host {
            text: addr.to_string().into(),
            kind: HostKind::Ipv4(addr),
        }
    }

    /// The canonical text: a lower-case name, a dotted quad or `[v6]`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What kind of host this is.
    pub fn kind(&self) -> HostKind {
        self.kind
    }

    /// Whether this host is a DNS name (not an IP literal).
    pub fn is_name(&self) -> bool {
        self.kind == HostKind::Name
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// === impl Authority ===

impl Authority {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    ///
    /// Userinfo is not part of an authority here: `user@host` is refused
    /// through the `@` character.
    pub fn parse(input: &str) -> Result<Authority, HostError> {
        let (host, port) = match input.rfind(':') {
            // A colon inside brackets belongs to the IPv6 address.
            Some(i) if !input[i..].contains(']') => (&input[..i], Some(&input[i + 1..])),
            _ => (input, None),
        };
        if host.contains(':') && !host.starts_with('[') {
            return Err(HostError::InvalidIpv6);
        }
        let port = port.map(parse_port).transpose()?;
        Ok(Authority {
            host: Host::parse(host)?,
            port,
        })
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, HostError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::InvalidPort),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, HostError> {
        Host::parse(s).map(|h| h.as_str().to_owned())
    }

    #[test]
    fn names_are_lower_cased_and_lose_one_trailing_dot() {
        assert_eq!(norm("API.Example.COM").unwrap(), "api.example.com");
        assert_eq!(norm("api.example.com.").unwrap(), "api.example.com");
        assert_eq!(
            norm("api.example.com..").unwrap_err(),
            HostError::EmptyLabel
        );
        assert_eq!(norm("localhost").unwrap(), "localhost");
        assert_eq!(
            norm("my_bucket.s3.amazonaws.com").unwrap(),
            "my_bucket.s3.amazonaws.com"
        );
    }

    #[test]
    fn ipv4_spellings_become_dotted_quads() {
        for s in ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "127.0.0.1."] {
            let h = Host::parse(s).unwrap();
            assert_eq!(h.as_str(), "127.0.0.1", "{s}");
            assert_eq!(h.kind(), HostKind::Ipv4(Ipv4Addr::LOCALHOST));
        }
        assert_eq!(norm("010.0.0.1").unwrap(), "8.0.0.1");
        assert_eq!(norm("1.2.3.256").unwrap_err(), HostError::InvalidIpv4);
        assert_eq!(norm("example.09").unwrap_err(), HostError::InvalidIpv4);
        assert_eq!(norm("1.2.3.4.5").unwrap_err(), HostError::InvalidIpv4);
    }

    #[test]
    fn ipv6_only_in_brackets() {
        let h = Host::parse("[::FFFF:127.0.0.1]").unwrap();
        assert_eq!(h.as_str(), "[::ffff:127.0.0.1]");
        assert!(matches!(h.kind(), HostKind::Ipv6(_)));
        assert_eq!(norm("::1").unwrap_err(), HostError::InvalidIpv6);
        assert_eq!(norm("[::1").unwrap_err(), HostError::InvalidIpv6);
        assert_eq!(norm("[example.com]").unwrap_err(), HostError::InvalidIpv6);
        assert_eq!(norm("[fe80::1%eth0]").unwrap_err(), HostError::InvalidIpv6);
    }

    #[test]
    fn refuses_tricks() {
        assert_eq!(norm("").unwrap_err(), HostError::Empty);
        assert_eq!(norm(".").unwrap_err(), HostError::EmptyLabel);
        assert_eq!(norm(".example.com").unwrap_err(), HostError::EmptyLabel);
        assert_eq!(
            norm("api%2eexample.com").unwrap_err(),
            HostError::InvalidChar('%')
        );
        assert_eq!(
            norm("user@example.com").unwrap_err(),
            HostError::InvalidChar('@')
        );
        assert_eq!(
            norm("exa mple.com").unwrap_err(),
            HostError::InvalidChar(' ')
        );
        assert_eq!(norm("bücher.de").unwrap_err(), HostError::InvalidChar('ü'));
        assert_eq!(
            norm("*.example.com").unwrap_err(),
            HostError::InvalidChar('*')
        );
        assert_eq!(norm(&"a".repeat(64)).unwrap_err(), HostError::LabelTooLong);
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(norm(&long).unwrap_err(), HostError::TooLong);
    }

    #[test]
    fn authorities_split_the_port() {
        let a = Authority::parse("API.example.com:8443").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("api.example.com", Some(8443)));
        let a = Authority::parse("[::1]:443").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("[::1]", Some(443)));
        let a = Authority::parse("[::1]").unwrap();
        assert_eq!(a.port, None);
        assert_eq!(
            Authority::parse("0x7f.1:80").unwrap().to_string(),
            "127.0.0.1:80"
        );
        for bad in [
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:+1",
            "::1:443",
            "a:b:c",
        ] {
            assert!(Authority::parse(bad).is_err(), "{bad}");
        }
    }
}
