//! Why a sandbox cannot be set up. Each message says what happened and
//! what to change.

use std::path::PathBuf;
use std::time::Duration;

use super::Ports;

/// A failure to set up the sandbox's namespace, on either side.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// unshare(2) refused.
    #[error(
        "cannot create a network namespace: {source}; run as root, or enable unprivileged \
         user namespaces (sysctl kernel.unprivileged_userns_clone=1 where it exists, \
         user.max_user_namespaces above 0, and kernel.apparmor_restrict_unprivileged_userns=0 \
         under AppArmor)"
    )]
    Unshare {
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A user-namespace id map cannot be written.
    #[error(
        "cannot write {file} for the sandbox's user namespace: {source}; the kernel refused \
         to map your user id, so run as root or check the user namespace settings"
    )]
    IdMap {
        /// The `/proc/self/...` file.
        file: &'static str,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A system tool is not installed.
    #[error(
        "cannot find `{tool}` in {dirs}; install the {package} package (apt-get install {package})"
    )]
    ToolMissing {
        /// The tool's name.
        tool: &'static str,
        /// The Debian package that holds it.
        package: &'static str,
        /// The folders searched.
        dirs: String,
    },
    /// A system tool cannot be started.
    #[error("cannot run {path}: {source}")]
    ToolSpawn {
        /// The tool's path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A system tool ran and failed.
    #[error("`{command}` failed inside the sandbox's namespace ({status}): {message}; {hint}")]
    Tool {
        /// The command line, as run.
        command: String,
        /// What the tool needs from the system.
        hint: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The start of what it wrote to standard error.
        message: String,
    },
    /// A system tool took too long.
    #[error("`{command}` did not finish within {timeout:?} inside the sandbox's namespace; it was killed")]
    ToolTimeout {
        /// The command line, as run.
        command: String,
        /// The bound it exceeded.
        timeout: Duration,
    },
    /// The ports cannot be used together.
    #[error("the sandbox's ports ({ports}) {problem}; pick nonzero, distinct ports")]
    Ports {
        /// The ports asked for.
        ports: Ports,
        /// What is wrong with them.
        problem: &'static str,
    },
    /// A socket inside the namespace cannot be bound.
    #[error(
        "cannot listen on 127.0.0.1:{port} inside the sandbox's namespace for {what}: {source}"
    )]
    Bind {
        /// The port.
        port: u16,
        /// Which socket.
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The folder for the control socket cannot be made.
    #[error("cannot create a private folder under {parent} for the sandbox's control socket: {source}; set TMPDIR to a writable folder")]
    TempDir {
        /// Where it was to be created.
        parent: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The control socket failed.
    #[error("cannot {step} on the sandbox's control socket: {source}")]
    Control {
        /// What keyhole was doing.
        step: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The other side of the control socket took too long.
    #[error("the sandbox's set-up did not {step} within {timeout:?}; is the machine overloaded?")]
    ControlTimeout {
        /// What keyhole was waiting for.
        step: &'static str,
        /// The bound it exceeded.
        timeout: Duration,
    },
    /// The other side of the control socket broke the protocol.
    #[error("the sandbox's control socket carried {problem}; this is a bug in keyhole, or another process connected")]
    Protocol {
        /// What was wrong.
        problem: String,
    },
    /// keyhole ended (or closed the control socket) before saying "go".
    #[error("keyhole went away before the command could start")]
    ParentGone,
    /// The set-up process cannot be started.
    #[error("cannot start {exe} for the sandbox's set-up: {source}")]
    Spawn {
        /// keyhole's own executable.
        exe: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The set-up process ended before the namespace was ready.
    #[error("the sandbox's set-up ended ({status}) before the namespace was ready; its message is above")]
    EarlyExit {
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// A process-level call failed.
    #[error("cannot {step}: {source}")]
    Process {
        /// What keyhole was doing.
        step: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}
