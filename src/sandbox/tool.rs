//! Running `ip` and `nft` inside the new namespace, bounded in time.
//!
//! The tools are looked up in the system folders only, never on the
//! inherited `PATH`: the environment is the command's, and the rules must
//! come from the system's nft. They run with an empty environment (plus
//! `LC_ALL=C`, so their messages are the ones documented), and their
//! standard error is kept for the error message.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::SandboxError;

/// Where the tools are looked for, in order.
pub const TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Longest a tool may run. Each does a few netlink calls; seconds mean the
/// machine is stuck, and the command must not start on a half-built
/// namespace.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a running tool is checked for exit. The namespace is set up
/// once per sandbox, so polling costs nothing that matters and needs no
/// thread or async runtime (none may exist yet in this process).
const TOOL_POLL: Duration = Duration::from_millis(5);

/// Bytes of a tool's standard error kept for the error message.
const MAX_TOOL_MESSAGE: u64 = 2048;

/// A system tool and the Debian package that ships it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The executable's name.
    pub name: &'static str,
    /// The package to install when it is missing.
    pub package: &'static str,
    /// What it needs from the system, said when it fails.
    pub hint: &'static str,
}

/// iproute2's `ip`.
pub const IP: Tool = Tool {
    name: "ip",
    package: "iproute2",
    hint: "the namespace's loopback interface must come up and take a default route",
};

/// nftables' `nft`.
pub const NFT: Tool = Tool {
    name: "nft",
    package: "nftables",
    hint: "the kernel needs nf_tables with NAT, redirect and reject \
           (CONFIG_NFT_NAT, CONFIG_NFT_REDIR, CONFIG_NFT_REJECT)",
};

// === impl Tool ===

impl Tool {
    /// The tool's path in the first of [`TOOL_DIRS`] that has it.
    pub fn find(&self) -> Result<PathBuf, SandboxError> {
        TOOL_DIRS
            .iter()
            .map(|dir| PathBuf::from(dir).join(self.name))
            .find(|path| path.is_file())
            .ok_or_else(|| SandboxError::ToolMissing {
                tool: self.name,
                package: self.package,
                dirs: TOOL_DIRS.join(", "),
            })
    }

    /// Runs the tool with `args`, writing `input` to its standard input;
    /// Ok when it exits with status 0 within [`TOOL_TIMEOUT`].
    pub fn run(&self, args: &[&str], input: &[u8]) -> Result<(), SandboxError> {
        let path = self.find()?;
        let command = format!("{} {}", self.name, args.join(" "));
        let mut child = Command::new(&path)
            .args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SandboxError::ToolSpawn { path, source })?;
        // The script is far smaller than a pipe's buffer, so this write
        // does not wait for the tool to read. A tool that exits without
        // reading makes it fail; its exit status says more.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let deadline = Instant::now() + TOOL_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(TOOL_POLL),
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SandboxError::ToolTimeout {
                        command,
                        timeout: TOOL_TIMEOUT,
                    });
                }
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut message = String::new();
        if let Some(stderr) = child.stderr.take() {
            let _ = stderr.take(MAX_TOOL_MESSAGE).read_to_string(&mut message);
        }
        Err(SandboxError::Tool {
            command,
            hint: self.hint,
            status,
            message: message.trim().replace('\n', "; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let missing = Tool {
            name: "keyhole-no-such-tool",
            package: "keyhole-no-such-package",
            hint: "",
        };
        let message = missing.run(&[], b"").unwrap_err().to_string();
        assert!(
            message.contains("apt-get install keyhole-no-such-package"),
            "{message}"
        );
    }

    #[test]
    fn a_failing_tool_reports_its_status_and_message() {
        // `sh` is in every system folder list; a failing script stands in
        // for a refused rule.
        let sh = Tool {
            name: "sh",
            package: "dash",
            hint: "a hint",
        };
        let message = sh
            .run(&["-s"], b"echo 'bad rule' >&2; exit 3\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("`sh -s` failed"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("bad rule; a hint"), "{message}");
        sh.run(&["-s"], b"exit 0\n").unwrap();
    }
}
