//! Shared helpers for the integration tests: running the `keyhole` binary
//! on config files written to a temporary folder.

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
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run keyhole");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A config with one `environment_variable` credential whose `auth` object
/// has `auth_fields` added to a valid base (later keys win in the JSON text
/// only if the base omits them, so pass the fields to replace in full).
pub fn one_credential(auth: &str) -> String {
    format!(
        r#"{{"credentials": [{{"id": "vcrd_t", "auth": {{"type": "environment_variable", {auth}}}}}]}}"#
    )
}

pub mod client;
pub mod proxy;
pub mod upstream;
