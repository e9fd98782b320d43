//! The set-up process (`keyhole sandbox-init`): create the namespace,
//! route it to keyhole, hand the sockets over, then become the command.
//!
//! It runs before any thread exists in the process: `unshare` of a user
//! namespace fails in a multi-threaded process, and no async runtime is
//! started here at all (every wait is a blocking call with a timeout).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;

use super::control;
use super::nft;
use super::tool::{IP, NFT};
use super::{Ports, SandboxError};

/// What the set-up process was asked to do.
#[derive(Debug, Clone)]
pub struct Setup {
    /// keyhole's control socket.
    pub control: PathBuf,
    /// The ports to listen on inside the namespace.
    pub ports: Ports,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// Why the set-up process did not become the command.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    /// The namespace could not be set up (keyhole's failure: exit 125).
    #[error(transparent)]
    Setup(#[from] SandboxError),
    /// No command was given.
    #[error("no command given; write it after `--`")]
    NoCommand,
    /// The command could not be executed (126, or 127 when not found).
    #[error("cannot run {program}: {source}")]
    Exec {
        /// The program, as given.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Sets the namespace up and replaces this process with the command.
/// Returns only when something failed; the process should then exit with
/// the status the error calls for.
pub fn enter(setup: &Setup) -> EnterError {
    let Some((program, args)) = setup.command.split_first() else {
        return EnterError::NoCommand;
    };
    if let Err(e) = prepare(setup) {
        return e.into();
    }
    // On success exec does not return: this process, with its pid, its
    // parent and its environment, is now the command.
    let source = std::process::Command::new(program).args(args).exec();
    EnterError::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

/// Everything up to the command: namespace, routes, rules, sockets, go.
fn prepare(setup: &Setup) -> Result<(), SandboxError> {
    let ports = setup.ports.check()?;
    let script = nft::ruleset(ports)?;
    let parent = rustix::process::getppid();
    isolate()?;
    die_with(parent)?;
    IP.run(&["link", "set", "lo", "up"], b"")?;
    // `src 127.0.0.1`: without it a connection to an outside address gets
    // the source 0.0.0.0 (loopback's address is host-scoped), which the
    // filter rules would not recognise as loopback.
    IP.run(
        &["route", "add", "default", "dev", "lo", "src", "127.0.0.1"],
        b"",
    )?;
    NFT.run(&["-f", "-"], script.as_bytes())?;
    let transparent = listen_tcp(ports.transparent, "redirected connections")?;
    let proxy = listen_tcp(ports.proxy, "the proxy")?;
    let dns = std::net::UdpSocket::bind(("127.0.0.1", ports.dns)).map_err(|source| {
        SandboxError::Bind {
            port: ports.dns,
            what: "DNS",
            source,
        }
    })?;
    let stream = control::hand_over(
        &setup.control,
        [transparent.as_fd(), proxy.as_fd(), dns.as_fd()],
    )?;
    // keyhole holds its own copies now. These close on exec anyway (std
    // opens every socket close-on-exec); dropping them first means the
    // command could never inherit one.
    drop((transparent, proxy, dns));
    control::wait_for_go(&stream)
}

/// Moves this process into a new network namespace; as an ordinary user,
/// into a new user namespace too, where it is root (mapped to its own
/// uid) and so may configure the network.
fn isolate() -> Result<(), SandboxError> {
    let unshare = |flags| {
        nix::sched::unshare(flags).map_err(|errno| SandboxError::Unshare {
            source: errno.into(),
        })
    };
    let uid = rustix::process::getuid();
    let gid = rustix::process::getgid();
    if uid.is_root() {
        match unshare(CloneFlags::CLONE_NEWNET) {
            Ok(()) => return Ok(()),
            // Root without CAP_SYS_ADMIN (a container's root): a user
            // namespace of its own gives it the capability there.
            Err(SandboxError::Unshare { source })
                if source.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("0 {} 1", uid.as_raw()))?;
    write_proc("/proc/self/gid_map", &format!("0 {} 1", gid.as_raw()))
}

fn write_proc(file: &'static str, content: &str) -> Result<(), SandboxError> {
    std::fs::write(file, content).map_err(|source| SandboxError::IdMap { file, source })
}

/// Asks for SIGKILL when keyhole ends, so a command never outlives its
/// proxy (it would have no network at all, since keyhole holds the only
/// listening sockets). The signal stays set across exec.
///
/// The trade-off: Linux sends it when the *thread* that started this
/// process ends, so keyhole must start it from a thread that lives as long
/// as the sandbox ([`Namespace::start`](super::Namespace::start) notes it).
fn die_with(parent: Option<rustix::process::Pid>) -> Result<(), SandboxError> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).map_err(
        |e| SandboxError::Process {
            step: "ask to end with keyhole (PR_SET_PDEATHSIG)",
            source: e.into(),
        },
    )?;
    // keyhole may have ended before the request: then the parent changed.
    if rustix::process::getppid() != parent {
        return Err(SandboxError::ParentGone);
    }
    Ok(())
}

fn listen_tcp(port: u16, what: &'static str) -> Result<std::net::TcpListener, SandboxError> {
    std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|source| SandboxError::Bind {
        port,
        what,
        source,
    })
}
