//! `keyhole exec`: run one command with the proxy beside it.
//!
//! The proxy binds first (a free loopback port unless `--listen` says
//! otherwise), then the command starts with the environment of
//! `keyhole env` for that address, which overrides any inherited proxy and
//! CA variables in both cases. keyhole serves until the command exits and
//! then exits with the command's status.
//!
//! Signals: SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to keyhole are passed
//! on to the command (SIGHUP also reloads the config). SIGINT and SIGQUIT
//! are not passed on: a terminal sends them to the whole foreground process
//! group, so the command already has its own copy, and a second one would
//! interrupt its clean-up. keyhole ignores them and keeps proxying until the
//! command exits. The trade-off: `kill -INT <keyhole>` does not reach the
//! command; use SIGTERM.
//!
//! Exit status, as GNU `env` does: the command's own, or 128 + N when a
//! signal N ended it; 125 when keyhole itself cannot start, 126 when the
//! command cannot be run, 127 when it is not found. The command never runs
//! without the proxy in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{ExitCode, ExitStatus};

use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::env::environment_for;
use super::run::{runtime, Bound};
use super::ExecArgs;
use crate::logging;

/// Exit status when keyhole itself fails before the command runs.
pub const EXIT_KEYHOLE_FAILED: u8 = 125;
/// Exit status when the command exists but cannot be run.
pub const EXIT_CANNOT_RUN: u8 = 126;
/// Exit status when the command is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Where the proxy listens unless `--listen` is given: the kernel picks a
/// free port, so two `exec`s never collide.
const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// Variables removed from the command's environment: an inherited
/// `ALL_PROXY` could send non-HTTP traffic to another proxy around keyhole.
pub(super) const REMOVED_VARS: &[&str] = &["ALL_PROXY", "all_proxy"];

/// Runs the command behind the proxy; returns its exit status.
pub fn run(args: &ExecArgs) -> ExitCode {
    // The command owns the terminal: keyhole says only what goes wrong,
    // unless RUST_LOG asks for more.
    let _log = logging::init(args.run.log_format, "warn");
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_KEYHOLE_FAILED);
    };
    runtime.block_on(async {
        match exec(args).await {
            Ok(code) => ExitCode::from(code),
            Err(Failure { message, code }) => {
                eprintln!("keyhole exec: {message}");
                ExitCode::from(code)
            }
        }
    })
}

/// Why `exec` ended before the command did, and the status to exit with.
pub(super) struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub(super) fn keyhole(e: impl std::fmt::Display) -> Failure {
        Failure {
            message: e.to_string(),
            code: EXIT_KEYHOLE_FAILED,
        }
    }
}

async fn exec(args: &ExecArgs) -> Result<u8, Failure> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Failure {
            message: "no command given; write it after `--`".to_owned(),
            code: EXIT_CANNOT_RUN,
        });
    };
    let listen = args.run.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let bound = Bound::bind(&args.run, listen)
        .await
        .map_err(Failure::keyhole)?;
    let proxy_addr = reachable(bound.addr);
    let vars = environment_for(
        &args.run.config,
        &proxy_addr.to_string(),
        args.run.state_dir.as_deref(),
    )
    .map_err(Failure::keyhole)?;
    // Installed before the command starts, so that no signal in between
    // takes the default action of ending keyhole under a running command.
    let signals = Signals::new().map_err(Failure::keyhole)?;
    let mut command = Command::new(program);
    command.args(rest).envs(vars);
    for name in REMOVED_VARS {
        command.env_remove(name);
    }
    let child = command.spawn().map_err(|e| Failure {
        message: format!("cannot run {}: {e}", program.to_string_lossy()),
        code: match e.kind() {
            std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            _ => EXIT_CANNOT_RUN,
        },
    })?;
    tracing::info!(addr = %proxy_addr, "proxy ready; command started");
    let (exited, on_exit) = tokio::sync::oneshot::channel::<()>();
    let supervise = async move {
        let status = supervise(child, signals).await;
        let _ = exited.send(());
        status
    };
    let serve = bound.serve(async move {
        let _ = on_exit.await;
    });
    let (status, ()) = tokio::join!(supervise, serve);
    status
        .map(exit_code)
        .map_err(|e| Failure::keyhole(format!("lost track of the command: {e}")))
}

/// The address to hand the command: an unspecified listen address
/// (`0.0.0.0`, `::`) is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The shell's convention: the exit code, or 128 + the signal that ended it.
pub(super) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(EXIT_KEYHOLE_FAILED),
        (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(EXIT_KEYHOLE_FAILED),
        (None, None) => EXIT_KEYHOLE_FAILED,
    }
}

/// Waits for the command, passing signals on as the module says.
pub(super) async fn supervise(mut child: Child, mut s: Signals) -> std::io::Result<ExitStatus> {
    use rustix::process::Signal as S;
    loop {
        tokio::select! {
            status = child.wait() => return status,
            Some(()) = s.term.recv() => forward(&child, "SIGTERM", S::TERM),
            Some(()) = s.hup.recv() => forward(&child, "SIGHUP", S::HUP),
            Some(()) = s.usr1.recv() => forward(&child, "SIGUSR1", S::USR1),
            Some(()) = s.usr2.recv() => forward(&child, "SIGUSR2", S::USR2),
            Some(()) = s.int.recv() => tracing::debug!("SIGINT not passed on: the command has its own"),
            Some(()) = s.quit.recv() => tracing::debug!("SIGQUIT not passed on: the command has its own"),
        }
    }
}

fn forward(child: &Child, name: &'static str, signal: rustix::process::Signal) {
    // `id()` is None once the command has been reaped, so a recycled pid is
    // never signalled.
    let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    match rustix::process::kill_process(pid, signal) {
        Ok(()) => tracing::debug!(signal = name, "passed on to the command"),
        Err(e) => tracing::warn!(signal = name, error = %e, "cannot pass the signal on"),
    }
}

/// The signals `exec` handles. Listening replaces their default action
/// (ending keyhole), which is why SIGINT and SIGQUIT are listened to and
/// dropped.
pub(super) struct Signals {
    term: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
    int: Signal,
    quit: Signal,
}

// === impl Signals ===

impl Signals {
    pub(super) fn new() -> Result<Signals, String> {
        let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
        Ok(Signals {
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
            usr1: listen(SignalKind::user_defined1())?,
            usr2: listen(SignalKind::user_defined2())?,
            int: listen(SignalKind::interrupt())?,
            quit: listen(SignalKind::quit())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), 255);
        // Ended by SIGTERM (15) and SIGKILL (9).
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:9000".parse().unwrap());
        let any6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(reachable(any6), "[::1]:9000".parse().unwrap());
        let lo: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(reachable(lo), lo);
    }
}
