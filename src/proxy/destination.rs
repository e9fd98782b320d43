//! Which resolved addresses keyhole may dial.
//!
//! Checked after resolution, on the very addresses that are then dialled
//! (there is no second lookup), so a name whose DNS answer changes between
//! check and dial cannot slip through. Always refused: the cloud metadata
//! endpoints (`169.254.169.254`, `fd00:ec2::254`) and keyhole's own listeners
//! (proxy and admin API: a loop, or the sandbox reaching the admin API).
//! With `--deny-private`, also private, loopback, link-local, unique-local
//! and unspecified addresses.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;

/// The cloud metadata address of AWS, GCP, Azure and most others.
pub const METADATA_V4: [u8; 4] = [169, 254, 169, 254];
/// The IPv6 metadata address of AWS.
pub const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Why an address may not be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prohibited {
    /// A cloud metadata endpoint.
    Metadata,
    /// A private, loopback or link-local address under `--deny-private`.
    Private,
    /// keyhole's own listener.
    Loop,
}

// === impl Prohibited ===

impl Prohibited {
    /// What the refused address is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Prohibited::Metadata => "a cloud metadata endpoint",
            Prohibited::Private => {
                "a private, loopback or link-local address, refused by --deny-private"
            }
            Prohibited::Loop => "keyhole's own listener: a proxy loop",
        }
    }
}

/// The rules in force.
#[derive(Debug, Default)]
pub struct Guard {
    /// Refuse private, loopback and link-local destinations.
    pub deny_private: bool,
    /// keyhole's own listeners (proxy and admin API), once bound.
    pub own: RwLock<Vec<SocketAddr>>,
}

// === impl Guard ===

impl Guard {
    /// Whether `addr` may be dialled.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Prohibited> {
        let ip = canonical(addr.ip());
        if is_metadata(ip) {
            return Err(Prohibited::Metadata);
        }
        let own = self.own.read().map(|o| o.clone()).unwrap_or_default();
        for own in own {
            let same_port = own.port() == addr.port();
            let same_ip = canonical(own.ip()) == ip || (own.ip().is_unspecified() && is_local(ip));
            if same_port && same_ip {
                return Err(Prohibited::Loop);
            }
        }
        if self.deny_private && is_private(ip) {
            return Err(Prohibited::Private);
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets() == METADATA_V4,
        IpAddr::V6(v6) => v6 == METADATA_V6,
    }
}

/// Addresses of this machine: loopback and unspecified.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT: private in practice.
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link local fe80::/10
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_is_always_refused() {
        let g = Guard::default();
        assert_eq!(g.check(sa("169.254.169.254:80")), Err(Prohibited::Metadata));
        assert_eq!(
            g.check(sa("[::ffff:169.254.169.254]:80")),
            Err(Prohibited::Metadata)
        );
        assert_eq!(g.check(sa("[fd00:ec2::254]:80")), Err(Prohibited::Metadata));
        assert_eq!(g.check(sa("127.0.0.1:443")), Ok(()));
    }

    #[test]
    fn private_only_with_deny_private() {
        let g = Guard {
            deny_private: true,
            ..Guard::default()
        };
        for a in [
            "127.0.0.1:1",
            "10.1.2.3:1",
            "172.16.0.1:1",
            "192.168.1.1:1",
            "169.254.1.1:1",
            "100.64.0.1:1",
            "0.0.0.0:1",
            "[::1]:1",
            "[fd12::1]:1",
            "[fe80::1]:1",
            "[::ffff:10.0.0.1]:1",
        ] {
            assert_eq!(g.check(sa(a)), Err(Prohibited::Private), "{a}");
        }
        for a in ["203.0.113.9:443", "[2001:db8::1]:443", "100.128.0.1:1"] {
            assert_eq!(g.check(sa(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn own_listener_is_a_loop() {
        let g = Guard::default();
        g.own.write().unwrap().push(sa("127.0.0.1:8080"));
        assert_eq!(g.check(sa("127.0.0.1:8080")), Err(Prohibited::Loop));
        assert_eq!(g.check(sa("127.0.0.1:8081")), Ok(()));
        let any = Guard::default();
        any.own.write().unwrap().push(sa("0.0.0.0:8080"));
        assert_eq!(any.check(sa("127.0.0.1:8080")), Err(Prohibited::Loop));
    }
}
