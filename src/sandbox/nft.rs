//! The nftables rules inside the sandbox's namespace.
//!
//! The script is built from three port numbers keyhole formats itself;
//! nothing a user wrote goes into it. It is applied with `nft -f -` as one
//! transaction, so either every rule is in place or none is (and the
//! command does not run).
//!
//! The trade-off of refusing instead of dropping: a program learns at once
//! that it cannot reach an address (`EPERM` on send, a TCP reset, ICMP
//! "administratively prohibited"), instead of waiting for its own timeout.

use super::{Ports, SandboxError};

/// The loopback network: traffic to it stays in the namespace (the
/// command's own servers, and keyhole's three sockets).
pub const LOOPBACK_V4: &str = "127.0.0.0/8";

/// The DNS port whose UDP traffic is redirected to keyhole's answerer.
pub const DNS_PORT: u16 = 53;

/// The `nft -f -` script for these ports (checked first: see
/// [`Ports::check`]).
///
/// - `nat_out` (IPv4, output, before routing decisions are final):
///   UDP to port 53 anywhere goes to the DNS answerer; loopback is left
///   alone; every other TCP connection goes to the transparent listener.
/// - `filter_out` (IPv4, after NAT, so redirected packets already show
///   `127.0.0.1`): loopback passes; anything else is refused.
/// - `ip6 keyhole` refuses everything but `::1`.
pub fn ruleset(ports: Ports) -> Result<String, SandboxError> {
    let Ports {
        transparent, dns, ..
    } = ports.check()?;
    Ok(format!(
        "\
table ip keyhole {{
\tchain nat_out {{
\t\ttype nat hook output priority -100; policy accept;
\t\tudp dport {DNS_PORT} redirect to :{dns}
\t\tip daddr {LOOPBACK_V4} accept
\t\tmeta l4proto tcp redirect to :{transparent}
\t}}
\tchain filter_out {{
\t\ttype filter hook output priority 0; policy accept;
\t\tip daddr {LOOPBACK_V4} accept
\t\tmeta l4proto tcp reject with tcp reset
\t\treject with icmp type admin-prohibited
\t}}
}}
table ip6 keyhole {{
\tchain filter_out {{
\t\ttype filter hook output priority 0; policy accept;
\t\tip6 daddr ::1 accept
\t\tmeta l4proto tcp reject with tcp reset
\t\treject with icmpv6 type admin-prohibited
\t}}
}}
"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_for_the_default_ports() {
        let script = ruleset(Ports::DEFAULT).unwrap();
        assert_eq!(
            script,
            "table ip keyhole {
\tchain nat_out {
\t\ttype nat hook output priority -100; policy accept;
\t\tudp dport 53 redirect to :15053
\t\tip daddr 127.0.0.0/8 accept
\t\tmeta l4proto tcp redirect to :15001
\t}
\tchain filter_out {
\t\ttype filter hook output priority 0; policy accept;
\t\tip daddr 127.0.0.0/8 accept
\t\tmeta l4proto tcp reject with tcp reset
\t\treject with icmp type admin-prohibited
\t}
}
table ip6 keyhole {
\tchain filter_out {
\t\ttype filter hook output priority 0; policy accept;
\t\tip6 daddr ::1 accept
\t\tmeta l4proto tcp reject with tcp reset
\t\treject with icmpv6 type admin-prohibited
\t}
}
"
        );
    }

    #[test]
    fn other_ports_appear_only_where_they_belong() {
        let ports = Ports {
            transparent: 20001,
            proxy: 20080,
            dns: 20053,
        };
        let script = ruleset(ports).unwrap();
        assert!(script.contains("udp dport 53 redirect to :20053\n"));
        assert!(script.contains("meta l4proto tcp redirect to :20001\n"));
        // The proxy port is reached on loopback, which no rule touches.
        assert!(!script.contains("20080"));
    }

    #[test]
    fn unusable_ports_make_no_script() {
        let bad = Ports {
            transparent: 0,
            ..Ports::DEFAULT
        };
        assert!(ruleset(bad).is_err());
    }
}
