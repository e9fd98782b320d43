//! keyhole's side of the sandbox: start the set-up process, take its
//! sockets, say go.
//!
//! The seam with the proxy: [`Namespace::start`] gives three listening
//! sockets that live in the sandbox's namespace but are served from
//! keyhole's ([`Sockets`]), and a [`Waiting`] process that runs the
//! command once told to ([`Waiting::go`]).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::SocketType;
use tokio::net::{TcpListener, UdpSocket, UnixStream};
use tokio::process::Child;

use super::control::{self, ControlDir};
use super::{Ports, SandboxError};

/// The hidden subcommand that sets the namespace up.
pub const INIT_COMMAND: &str = "sandbox-init";

/// Longest wait for the set-up process to connect: it creates the
/// namespace and runs `ip` twice and `nft` once, well under a second on an
/// idle machine. Beyond, something is stuck and the command must not run.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the sockets once connected (one message).
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct Launch {
    /// keyhole's own executable (`std::env::current_exe()`), run as
    /// `keyhole sandbox-init`.
    pub exe: PathBuf,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// The command's whole environment (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// The ports inside the namespace.
    pub ports: Ports,
}

/// The sandbox's sockets, bound inside its namespace, served from
/// keyhole's.
///
/// An accepted connection's `SO_ORIGINAL_DST` (socket2's
/// `SockRef::original_dst_v4`) is the address the command asked for; its
/// peer is `127.0.0.1`.
#[derive(Debug)]
pub struct Sockets {
    /// Where every redirected TCP connection arrives.
    pub transparent: TcpListener,
    /// The HTTP proxy that `HTTPS_PROXY` names, for clients that use it.
    pub proxy: TcpListener,
    /// The DNS answerer's socket (see [`dns::serve`](super::dns::serve)).
    pub dns: UdpSocket,
}

/// A sandbox whose namespace is ready and whose command has not started.
#[derive(Debug)]
pub struct Namespace {
    /// The sockets to serve.
    pub sockets: Sockets,
    /// The set-up process, waiting for go.
    pub process: Waiting,
}

/// The set-up process, waiting for go. Dropping it kills the process, so
/// the command never runs.
#[derive(Debug)]
pub struct Waiting {
    child: Child,
    control: UnixStream,
}

/// The arguments of `keyhole sandbox-init` for this socket, ports and
/// command.
pub fn init_args(control: &Path, ports: Ports, command: &[OsString]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        INIT_COMMAND.into(),
        "--control".into(),
        control.into(),
        "--transparent-port".into(),
        ports.transparent.to_string().into(),
        "--proxy-port".into(),
        ports.proxy.to_string().into(),
        "--dns-port".into(),
        ports.dns.to_string().into(),
        "--".into(),
    ];
    args.extend(command.iter().cloned());
    args
}

// === impl Namespace ===

impl Namespace {
    /// Starts the set-up process and takes its sockets. Its standard
    /// input, output and error are keyhole's, and become the command's.
    ///
    /// Await this from a thread that lives as long as the sandbox (the
    /// `block_on` thread, or a task on a runtime's worker; not inside
    /// `spawn_blocking`): the set-up process asks for SIGKILL when the
    /// thread that started it ends.
    pub async fn start(launch: Launch) -> Result<Namespace, SandboxError> {
        let ports = launch.ports.check()?;
        let (dir, listener) = ControlDir::create()?;
        let mut child = tokio::process::Command::new(&launch.exe)
            .args(init_args(dir.socket(), ports, &launch.command))
            .env_clear()
            .envs(launch.env)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                exe: launch.exe.clone(),
                source,
            })?;
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()) => accepted,
            status = child.wait() => return Err(ended(status)),
        };
        let control = match accepted {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(source)) => {
                return Err(SandboxError::Control {
                    step: "accept a connection",
                    source,
                })
            }
            Err(_) => {
                return Err(SandboxError::ControlTimeout {
                    step: "connect",
                    timeout: CONNECT_TIMEOUT,
                })
            }
        };
        // No one else may connect from here on.
        drop((listener, dir));
        control::check_peer(&control, child.id())?;
        let fds = match tokio::time::timeout(RECEIVE_TIMEOUT, control::receive(&control)).await {
            Ok(Ok(fds)) => fds,
            Ok(Err(e)) => {
                // A set-up process that failed says why on stderr; its
                // status is the better report.
                return Err(match child.try_wait() {
                    Ok(Some(status)) => SandboxError::EarlyExit { status },
                    _ => e,
                });
            }
            Err(_) => {
                return Err(SandboxError::ControlTimeout {
                    step: "send its sockets",
                    timeout: RECEIVE_TIMEOUT,
                })
            }
        };
        let [transparent, proxy, dns] = fds;
        let sockets = Sockets {
            transparent: tcp(transparent, ports.transparent, "transparent")?,
            proxy: tcp(proxy, ports.proxy, "proxy")?,
            dns: udp(dns, ports.dns)?,
        };
        Ok(Namespace {
            sockets,
            process: Waiting { child, control },
        })
    }
}

fn ended(status: std::io::Result<std::process::ExitStatus>) -> SandboxError {
    match status {
        Ok(status) => SandboxError::EarlyExit { status },
        Err(source) => SandboxError::Process {
            step: "wait for the sandbox's set-up process",
            source,
        },
    }
}

/// A received listening TCP socket, checked and made async.
fn tcp(fd: OwnedFd, port: u16, what: &str) -> Result<TcpListener, SandboxError> {
    expect_type(&fd, SocketType::STREAM, what)?;
    let listener = std::net::TcpListener::from(fd);
    expect_addr(listener.local_addr(), port, what)?;
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|source| SandboxError::Control {
            step: "take the TCP listeners",
            source,
        })
}

/// The received DNS socket, checked and made async.
fn udp(fd: OwnedFd, port: u16) -> Result<UdpSocket, SandboxError> {
    expect_type(&fd, SocketType::DGRAM, "DNS")?;
    let socket = std::net::UdpSocket::from(fd);
    expect_addr(socket.local_addr(), port, "DNS")?;
    socket
        .set_nonblocking(true)
        .and_then(|()| UdpSocket::from_std(socket))
        .map_err(|source| SandboxError::Control {
            step: "take the DNS socket",
            source,
        })
}

fn expect_type(fd: &OwnedFd, want: SocketType, what: &str) -> Result<(), SandboxError> {
    match rustix::net::sockopt::socket_type(fd) {
        Ok(got) if got == want => Ok(()),
        Ok(_) | Err(_) => Err(SandboxError::Protocol {
            problem: format!("a descriptor for the {what} socket of the wrong type"),
        }),
    }
}

fn expect_addr(
    addr: std::io::Result<SocketAddr>,
    port: u16,
    what: &str,
) -> Result<(), SandboxError> {
    let want = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match addr {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(SandboxError::Protocol {
            problem: format!("a {what} socket bound to {got}, not {want}"),
        }),
        Err(source) => Err(SandboxError::Control {
            step: "read a received socket's address",
            source,
        }),
    }
}

// === impl Waiting ===

impl Waiting {
    /// The set-up process's pid, which becomes the command's.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Tells the set-up process to run the command; returns the process,
    /// which is now (or is about to be) the command. Serve the sockets
    /// first: the command may connect at once (connections made before
    /// the first `accept` wait in the listen queue). Dropping the child
    /// kills the command.
    pub async fn go(self) -> Result<Child, SandboxError> {
        let Waiting { child, mut control } = self;
        control::go(&mut control).await?;
        Ok(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_command_line() {
        let args = init_args(
            Path::new("/tmp/k/control"),
            Ports::DEFAULT,
            &["sh".into(), "-c".into(), "--".into()],
        );
        assert_eq!(
            args,
            [
                "sandbox-init",
                "--control",
                "/tmp/k/control",
                "--transparent-port",
                "15001",
                "--proxy-port",
                "15080",
                "--dns-port",
                "15053",
                "--",
                "sh",
                "-c",
                "--"
            ]
        );
    }

    /// Why a sandbox with `exe` as keyhole's executable does not start.
    async fn failure(exe: &str) -> String {
        let launch = Launch {
            exe: exe.into(),
            command: vec!["true".into()],
            env: Vec::new(),
            ports: Ports::DEFAULT,
        };
        Namespace::start(launch).await.unwrap_err().to_string()
    }

    #[tokio::test]
    async fn a_set_up_process_that_fails_is_reported_with_its_status() {
        let message = failure("/bin/false").await;
        assert!(message.contains("exit status: 1"), "{message}");
        assert!(
            message.contains("before the namespace was ready"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_missing_executable_is_reported() {
        let message = failure("/nonexistent/keyhole").await;
        assert!(
            message.contains("cannot start /nonexistent/keyhole"),
            "{message}"
        );
    }
}
