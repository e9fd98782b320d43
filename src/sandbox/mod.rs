//! Transparent mode: a network namespace whose only way out is keyhole.
//!
//! `keyhole sandbox` runs a command in a fresh network namespace that has
//! nothing but a loopback interface, so that programs which ignore
//! `HTTPS_PROXY` still reach the network through keyhole and nowhere else.
//!
//! ## Two processes
//!
//! Connection tracking (and so `SO_ORIGINAL_DST`) is per namespace: the
//! listening sockets must be created inside the sandbox's namespace. keyhole
//! itself must dial the real network from its own. So:
//!
//! 1. The outer process ([`Namespace::start`], in keyhole's namespace)
//!    listens on a Unix socket in a fresh 0700 directory and starts its own
//!    executable as the hidden `keyhole sandbox-init`.
//! 2. That inner process ([`enter`]) creates the namespace before any
//!    thread exists (`unshare(CLONE_NEWNET)` as root, with
//!    `CLONE_NEWUSER` otherwise), brings up loopback, installs the
//!    [`nft`] rules, binds the three sockets ([`Ports`]) and passes them
//!    to the outer process over the Unix socket (`SCM_RIGHTS`).
//! 3. The outer process serves them from its own namespace and says "go"
//!    ([`Waiting::go`]); the inner process then becomes the command
//!    (`execve`, same pid), so signals and the exit status need no relay.
//!
//! ## Inside the namespace
//!
//! - Every TCP connection to an IPv4 address outside `127.0.0.0/8` is
//!   redirected to the transparent listener, where `SO_ORIGINAL_DST` gives
//!   the address the program asked for.
//! - Every UDP datagram to port 53, whatever the address, is redirected to
//!   keyhole's DNS answerer ([`dns`]), which answers from keyhole's policy.
//! - Any other IPv4 traffic leaving loopback is refused at once (`EPERM`
//!   on send, a reset for TCP), never silently dropped.
//! - IPv6 is blocked: there is no IPv6 route (`connect` fails with
//!   `ENETUNREACH` at once), and a rule refuses anything but `::1` should a
//!   route appear. The DNS answerer gives no AAAA records, so clients use
//!   IPv4, which goes through keyhole.
//! - Loopback stays the namespace's own: a connection to `127.0.0.1:8000`
//!   reaches a server the command started, never keyhole's host.
//!
//! The rules route traffic to keyhole; they are not what contains it. The
//! namespace has no interface but loopback, so a command that flushes the
//! rules (it is root in its namespace) only loses its network.
//!
//! ## Limits (documented, not enforced here)
//!
//! - As root, the command keeps root's capabilities on the host: it could
//!   enter another namespace through `/proc/1/ns/net`. Run the agent as an
//!   ordinary user (the namespace then comes with a user namespace).
//! - Unix sockets named by a path are not network-namespaced: a daemon on
//!   the host (nscd, systemd-resolved's varlink socket, D-Bus) still
//!   answers the command.
//! - Name servers in `/etc/resolv.conf` that are IPv6 addresses are
//!   unreachable; the IPv4 ones are all answered by keyhole.

mod control;
pub mod dns;
mod enter;
mod error;
mod namespace;
pub mod nft;
mod tool;

pub use enter::{enter, EnterError, Setup};
pub use error::SandboxError;
pub use namespace::{init_args, Launch, Namespace, Sockets, Waiting, INIT_COMMAND};

/// The ports keyhole listens on inside the namespace, all on `127.0.0.1`.
///
/// Fixed numbers are fine: the namespace is new, so nothing else listens
/// there, and the command learns the proxy port from `HTTPS_PROXY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Where redirected TCP connections arrive.
    pub transparent: u16,
    /// The HTTP proxy, for clients that honour `HTTPS_PROXY`.
    pub proxy: u16,
    /// The DNS answerer (UDP).
    pub dns: u16,
}

// === impl Ports ===

impl Ports {
    /// The ports `keyhole sandbox` uses.
    pub const DEFAULT: Ports = Ports {
        transparent: 15001,
        proxy: 15080,
        dns: 15053,
    };

    /// The ports, when none is 0 and no two are the same.
    pub fn check(self) -> Result<Ports, SandboxError> {
        let Ports {
            transparent,
            proxy,
            dns,
        } = self;
        if transparent == 0 || proxy == 0 || dns == 0 {
            return Err(SandboxError::Ports {
                ports: self,
                problem: "include 0",
            });
        }
        // The DNS port is UDP, but sharing a number would still make the
        // rules ambiguous to read.
        if transparent == proxy || transparent == dns || proxy == dns {
            return Err(SandboxError::Ports {
                ports: self,
                problem: "are not all different",
            });
        }
        Ok(self)
    }
}

impl Default for Ports {
    fn default() -> Ports {
        Ports::DEFAULT
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "transparent {}, proxy {}, DNS {}",
            self.transparent, self.proxy, self.dns
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_must_be_set_and_different() {
        assert_eq!(Ports::DEFAULT.check().unwrap(), Ports::DEFAULT);
        let zero = Ports {
            dns: 0,
            ..Ports::DEFAULT
        };
        assert!(zero.check().is_err());
        let same = Ports {
            proxy: 15001,
            ..Ports::DEFAULT
        };
        let message = same.check().unwrap_err().to_string();
        assert!(message.contains("not all different"), "{message}");
    }
}
