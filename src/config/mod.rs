//! Loading a configuration file into the validated [`Config`] model.
//!
//! The file is JSON (README, "Configuration"). Loading parses it into raw
//! serde structs ([`raw`]), section by section, then validates them into
//! the model ([`validate`]), recording every problem with its JSON path
//! rather than stopping at the first, so one run of `keyhole check` shows
//! all there is to fix.

pub mod raw;
pub mod validate;
pub mod write;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::model::{Config, Problems};

/// Largest config file keyhole reads. Real files are a few kilobytes; the
/// bound keeps a wrong path (a log, a device) from being read into memory.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}; check the path given to --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("the config file {path} is larger than {MAX_CONFIG_BYTES} bytes; check the path given to --config")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file was read but is not a valid config.
    #[error("{0}")]
    Invalid(Problems),
}

/// Where secrets named by reference are read from.
pub struct Sources<'a> {
    /// Folder that relative `secret_value_file` paths start from.
    pub base_dir: &'a Path,
    /// Reads a variable of keyhole's environment.
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
}

/// Loads and validates the file at `path`, reading `secret_value_env`
/// variables from keyhole's own environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let sources = Sources {
        base_dir,
        env: &|name| std::env::var_os(name),
    };
    parse(&text, &sources).map_err(ConfigError::Invalid)
}

/// Parses and validates config text.
pub fn parse(text: &str, sources: &Sources<'_>) -> Result<Config, Problems> {
    validate::config(text, sources)
}

#[cfg(test)]
mod tests;
