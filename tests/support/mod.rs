//! Shared helpers for the integration tests.
//!
//! - [`world`]: a test CA, upstreams and keyhole in front of them, built in
//!   one expression ([`world::World::builder`]); most tests start there.
//! - [`config`]: config files built in code.
//! - [`client`]: a Rust client through CONNECT ([`client::Tunnel`]).
//! - [`upstream`], [`scripted`]: the recording and the scripted test servers.
//! - [`proxy`]: the `keyhole run` process; [`admin`]: its admin API.
//! - Here: running the `keyhole` binary once on files in a [`Workspace`].

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A temporary folder holding config files.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// What a run of the binary produced.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Workspace {
    /// A new, empty folder.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes `text` to `name` in the folder and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// The folder.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl From<Output> for Run {
    /// A finished process's exit code (-1 if a signal ended it) and output.
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `cmd` to its end; it must succeed (else the failure names `what`
/// and shows its stderr). Returns its stdout.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `keyhole ARGS...`.
pub fn keyhole(args: &[&str]) -> Run {
    keyhole_env(args, &[])
}

/// Runs `keyhole ARGS...` with extra environment variables.
pub fn keyhole_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyhole"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run keyhole"))
}

/// A config with one `environment_variable` credential whose `auth` object
/// has `auth_fields` added to a valid base (later keys win in the JSON text
/// only if the base omits them, so pass the fields to replace in full).
pub fn one_credential(auth: &str) -> String {
    format!(
        r#"{{"credentials": [{{"id": "vcrd_t", "auth": {{"type": "environment_variable", {auth}}}}}]}}"#
    )
}

pub mod admin;
pub mod client;
pub mod config;
pub mod mcp;
pub mod proxy;
pub mod sandbox;
pub mod scripted;
pub mod upstream;
pub mod world;
