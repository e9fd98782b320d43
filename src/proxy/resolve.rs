//! Name lookup: `--resolve HOST:PORT:ADDR` pins first, then the system
//! resolver. Lookup only: which of the answers may be dialled, and the
//! dialling itself, belong to [`super::upstream::Dialer`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::limits::RESOLVE_TIMEOUT;
use crate::host::{Host, HostKind};

/// Why a `--resolve` entry was refused.
#[derive(Debug, thiserror::Error)]
#[error("--resolve {entry:?}: {reason}; write HOST:PORT:ADDR, as in api.example.com:443:127.0.0.1")]
pub struct ResolveArgError {
    entry: String,
    reason: &'static str,
}

/// Why a name could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// The resolver failed or knows no such name.
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// What the resolver said (shared: the error is cloned into responses).
        source: std::sync::Arc<std::io::Error>,
    },
    /// The resolver answered nothing.
    #[error("{host} resolves to no address")]
    Empty {
        /// The name.
        host: String,
    },
    /// The resolver did not answer in time.
    #[error("resolving {host} took longer than {}s", RESOLVE_TIMEOUT.as_secs())]
    Timeout {
        /// The name.
        host: String,
    },
}

/// Pinned addresses (`--resolve`), by normalised host and port.
#[derive(Debug, Default)]
pub struct Pins(HashMap<(String, u16), Vec<IpAddr>>);

// === impl Pins ===

impl Pins {
    /// Parses `--resolve` entries (`HOST:PORT:ADDR`, ADDR possibly a
    /// bracketed IPv6 address or a comma-separated list, as curl allows).
    pub fn from_args(entries: &[String]) -> Result<Pins, ResolveArgError> {
        let mut pins: HashMap<(String, u16), Vec<IpAddr>> = HashMap::new();
        for entry in entries {
            let err = |reason| ResolveArgError {
                entry: entry.clone(),
                reason,
            };
            let mut parts = entry.splitn(3, ':');
            let (Some(host), Some(port), Some(addrs)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("missing parts"));
            };
            let host = Host::parse(host).map_err(|_| err("the host is not a valid host name"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| err("the port is not a number from 1 to 65535"))?;
            let mut list = Vec::new();
            for a in addrs.split(',') {
                let a = a.trim_start_matches('[').trim_end_matches(']');
                list.push(
                    a.parse::<IpAddr>()
                        .map_err(|_| err("the address is not an IP address"))?,
                );
            }
            pins.entry((host.as_str().to_owned(), port))
                .or_default()
                .extend(list);
        }
        Ok(Pins(pins))
    }

    /// Every address of `host` on any port: its pins (of any port), the
    /// literal address, or one system lookup within [`RESOLVE_TIMEOUT`]. For
    /// a DNS answer, which names no port.
    pub async fn lookup_any_port(&self, host: &Host) -> Result<Vec<IpAddr>, ResolveError> {
        let mut pinned: Vec<IpAddr> = self
            .0
            .iter()
            .filter(|((name, _), _)| name == host.as_str())
            .flat_map(|(_, ips)| ips.iter().copied())
            .collect();
        if !pinned.is_empty() {
            pinned.sort_unstable();
            pinned.dedup();
            return Ok(pinned);
        }
        let addrs = self.lookup(host, 0).await?;
        Ok(addrs.into_iter().map(|a| a.ip()).collect())
    }

    /// The addresses to dial for `host:port`: a pin, the literal address,
    /// or one system lookup within [`RESOLVE_TIMEOUT`].
    pub async fn lookup(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Some(ips) = self.0.get(&(host.as_str().to_owned(), port)) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        match host.kind() {
            HostKind::Ipv4(ip) => return Ok(vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            HostKind::Ipv6(ip) => return Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            HostKind::Name => {}
        }
        let name = host.as_str().to_owned();
        let lookup = tokio::net::lookup_host((name.clone(), port));
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Err(_) => Err(ResolveError::Timeout { host: name }),
            Ok(Err(source)) => Err(ResolveError::Lookup {
                host: name,
                source: source.into(),
            }),
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(ResolveError::Empty { host: name })
                } else {
                    Ok(addrs)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pins_literals_and_refusals() {
        let r = Pins::from_args(&[
            "API.example.com:443:127.0.0.1".into(),
            "v6.test:8443:[::1],127.0.0.2".into(),
        ])
        .unwrap();
        let h = Host::parse("api.example.com").unwrap();
        assert_eq!(
            r.lookup(&h, 443).await.unwrap(),
            ["127.0.0.1:443".parse().unwrap()]
        );
        let v6 = Host::parse("v6.test").unwrap();
        assert_eq!(r.lookup(&v6, 8443).await.unwrap().len(), 2);
        let ip = Host::parse("0x7f.1").unwrap();
        assert_eq!(
            r.lookup(&ip, 80).await.unwrap(),
            ["127.0.0.1:80".parse().unwrap()]
        );
        // A DNS answer takes the pins of every port.
        let any: Vec<IpAddr> = r.lookup_any_port(&v6).await.unwrap();
        assert_eq!(
            any,
            [
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        for bad in [
            "a.com:443",
            "a.com:x:127.0.0.1",
            "a.com:443:nope",
            "%:443:127.0.0.1",
        ] {
            assert!(Pins::from_args(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
