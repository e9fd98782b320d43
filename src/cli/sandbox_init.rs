//! `keyhole sandbox-init` (hidden): the sandbox's set-up process, started
//! by `keyhole sandbox` with its own executable ([`crate::sandbox`] has
//! the design).
//!
//! It must run before anything starts a thread (logging, a runtime):
//! creating a user namespace needs a single-threaded process. On success
//! it becomes the command and never returns here.

use std::process::ExitCode;

use super::exec::{EXIT_CANNOT_RUN, EXIT_KEYHOLE_FAILED, EXIT_NOT_FOUND};
use super::SandboxInitArgs;
use crate::sandbox::{enter, EnterError, Ports, Setup};

/// Sets the namespace up and becomes the command; returns only on failure,
/// with the status of `keyhole exec`'s conventions.
pub fn run(args: &SandboxInitArgs) -> ExitCode {
    let setup = Setup {
        control: args.control.clone(),
        ports: Ports {
            transparent: args.transparent_port,
            proxy: args.proxy_port,
            dns: args.dns_port,
        },
        command: args.command.clone(),
    };
    let error = enter(&setup);
    eprintln!("keyhole sandbox: {error}");
    ExitCode::from(status(&error))
}

fn status(error: &EnterError) -> u8 {
    match error {
        EnterError::Setup(_) => EXIT_KEYHOLE_FAILED,
        EnterError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            EXIT_NOT_FOUND
        }
        EnterError::NoCommand | EnterError::Exec { .. } => EXIT_CANNOT_RUN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_exec() {
        let not_found = EnterError::Exec {
            program: "x".to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(status(&not_found), 127);
        let denied = EnterError::Exec {
            program: "x".to_owned(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert_eq!(status(&denied), 126);
        let setup = EnterError::Setup(crate::sandbox::SandboxError::ParentGone);
        assert_eq!(status(&setup), 125);
    }
}
