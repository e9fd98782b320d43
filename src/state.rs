//! The state directory: what must survive a restart (the CA, the
//! placeholder key), kept out of the sandbox's reach.
//!
//! Files holding keys are created with mode 0600 inside a 0700 folder, and
//! written atomically (temporary file, fsync, rename) so that a crash never
//! leaves half a key behind.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Neither `--state-dir`, `$XDG_STATE_HOME` nor `$HOME` is set.
    #[error("no state directory: neither $XDG_STATE_HOME nor $HOME is set; pass --state-dir DIR")]
    NoDefault,
    /// A file or folder could not be read or written.
    #[error("cannot {action} {path}: {source}; check that keyhole may write to the state directory (--state-dir)")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The state directory: `dir` when given, else `$XDG_STATE_HOME/keyhole`,
/// else `$HOME/.local/state/keyhole`.
pub fn resolve_dir(dir: Option<&Path>) -> Result<PathBuf, StateError> {
    if let Some(dir) = dir {
        return Ok(dir.to_owned());
    }
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or(StateError::NoDefault)?;
            PathBuf::from(home).join(".local").join("state")
        }
    };
    Ok(base.join("keyhole"))
}

/// Creates `dir` (mode 0700) if it does not exist.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io("set permissions on", dir))
}

/// Reads `path`, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Writes `bytes` to `path` atomically with the given mode: a temporary
/// file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        ensure_dir(&state).unwrap();
        assert_eq!(
            fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let key = state.join("key");
        assert!(read_optional(&key).unwrap().is_none());
        write_atomic(&key, b"k1", 0o600).unwrap();
        write_atomic(&key, b"k2", 0o600).unwrap();
        assert_eq!(read_optional(&key).unwrap().unwrap(), b"k2");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(&state).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn explicit_dir_wins() {
        assert_eq!(
            resolve_dir(Some(Path::new("/x"))).unwrap(),
            PathBuf::from("/x")
        );
    }
}
