//! Running `keyhole sandbox` in tests: the prerequisites (root, nftables,
//! iproute2, python3, a kernel that allows network namespaces), and an
//! address of this machine that is not loopback, for upstreams a sandbox
//! reaches through the redirect.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Says why a test cannot run; fails under CI, which must run them all.
pub fn unavailable(reason: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason}: CI must run the sandbox tests (as root, with the nftables, iproute2, \
         util-linux and python3 packages installed)"
    );
    eprintln!("SKIPPED (not under CI): {reason}");
    true
}

/// Whether this machine cannot run sandboxes as root (and why, printed).
pub fn cannot_run() -> bool {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    match REASON.get_or_init(missing_prerequisite) {
        Some(reason) => unavailable(reason),
        None => false,
    }
}

fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("the sandbox tests run as root".to_owned());
    }
    for (tool, package) in [("nft", "nftables"), ("ip", "iproute2")] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).is_file());
        if !found {
            return Some(format!("`{tool}` is not installed (package {package})"));
        }
    }
    if !succeeds(std::process::Command::new("python3").args(["-c", "pass"])) {
        return Some("python3 is not installed".to_owned());
    }
    if !succeeds(std::process::Command::new("unshare").args(["-n", "true"])) {
        return Some(
            "the kernel refuses a network namespace to root (`unshare -n true` failed)".to_owned(),
        );
    }
    None
}

pub fn succeeds(command: &mut std::process::Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An address of this machine that is not loopback: a TEST-NET-1 address
/// (192.0.2.0/24, never routed) added to the loopback interface for the
/// test and removed when this is dropped. A sandbox's loopback is its own,
/// so an upstream it must reach through keyhole's redirect listens here:
/// traffic to it is delivered on this machine and never leaves it.
pub struct LocalAddress {
    /// The address.
    pub ip: IpAddr,
}

impl LocalAddress {
    /// A fresh address. Needs root.
    pub fn new() -> LocalAddress {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // A host byte per process and test, so parallel test binaries do
        // not take the same address (1 to 250; 254 is left unassigned).
        let pid = std::process::id();
        let host = 1 + ((pid as u8).wrapping_mul(16).wrapping_add(n) % 250);
        let ip = Ipv4Addr::new(192, 0, 2, host);
        let added = succeeds(std::process::Command::new("ip").args([
            "addr",
            "add",
            &format!("{ip}/32"),
            "dev",
            "lo",
        ]));
        assert!(added, "cannot add {ip} to the loopback interface");
        let guard = LocalAddress { ip: IpAddr::V4(ip) };
        // Local, so nothing sent to it can leave the machine.
        let local = std::net::TcpListener::bind((ip, 0)).is_ok();
        assert!(local, "{ip} is not an address of this machine");
        guard
    }
}

impl Drop for LocalAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.ip), "dev", "lo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
