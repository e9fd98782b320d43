//! Placeholders: what the sandbox holds instead of a secret.
//!
//! A credential's placeholder is either pinned by the config or derived as
//! HMAC-SHA256 over the vault id and credential id, keyed by a random key
//! kept in the state directory ([`PlaceholderKey`]). The same state
//! directory and credential always give the same placeholder, so `keyhole
//! run` and `keyhole env` agree, across restarts too.
//!
//! A placeholder is not a secret: it never reveals the value it stands
//! for. It is, however, what makes keyhole use a credential on that
//! credential's hosts, so it must not be guessable from the credential id:
//! a sandbox handed only A's placeholder cannot compute B's without the
//! key. Hence the key file is 0600 and at least 128 bits of MAC are kept.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::model::Config;
use crate::state::{self, StateError};

/// The key file's name inside the state directory.
pub const KEY_FILE: &str = "placeholder.key";

/// Length of the key, in bytes.
pub const KEY_LEN: usize = 32;

/// Prefix of every derived placeholder. It makes a placeholder easy to
/// recognise in logs, transcripts and support tickets ("kh" for keyhole,
/// "ph" for placeholder), while resembling no provider's token format
/// (`ghp_`, `sk-`, `AKIA`, `xox...`), so secret scanners and push
/// protection do not flag or block text that merely quotes a placeholder.
pub const PREFIX: &str = "kh_ph_";

/// Bytes of the MAC kept in a placeholder: 160 bits, which base32 spells in
/// exactly 32 characters (at least 128 bits are required).
const MAC_BYTES: usize = 20;

/// Domain separation: this key and MAC serve placeholders only, version 1.
const LABEL: &[u8] = b"keyhole placeholder v1\0";

/// Lowercase RFC 4648 base32: characters every client accepts in a header
/// value, a URL (userinfo included), a JSON string and a shell word.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The key placeholders are derived with. Its `Debug` shows no key bytes.
pub struct PlaceholderKey(hmac::Key);

/// Why the placeholder key could not be loaded or created. Messages never
/// show key bytes.
#[derive(Debug, thiserror::Error)]
pub enum PlaceholderError {
    /// The state directory could not be created or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The key file exists but could not be read.
    #[error("cannot {action} the placeholder key {path}: {source}; check that keyhole may read the state directory (--state-dir)")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Group or others have access to the key file.
    #[error("the placeholder key {path} has mode {mode:03o}, so other users could read it and compute placeholders; run `chmod 600 {path}` and start keyhole again")]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file of [`KEY_LEN`] bytes.
    #[error("the placeholder key {path} is not a {KEY_LEN}-byte file ({found}), so it is damaged or not a keyhole key; restore it, or delete it to have a new one made (every derived placeholder then changes: re-run `keyhole env`)")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What was found instead, e.g. "7 bytes" or "a directory".
        found: String,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed while making the placeholder key; check /dev/urandom and try again")]
    Random,
}

// === impl PlaceholderKey ===

impl PlaceholderKey {
    /// Loads `<state_dir>/placeholder.key`, or creates it (mode 0600, in a
    /// 0700 folder) when there is none. A key file that group or others may
    /// access, or that is not exactly [`KEY_LEN`] bytes, is refused: keyhole
    /// fails closed rather than make new placeholders behind the user's back.
    ///
    /// Two processes starting at once agree: the file is created only if
    /// absent, and the loser of a race reads the winner's key.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, PlaceholderError> {
        state::ensure_dir(state_dir)?;
        let path = state_dir.join(KEY_FILE);
        if let Some(key) = read_key(&path)? {
            return Ok(key);
        }
        let rng = SystemRandom::new();
        let mut bytes = zeroize::Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(&mut bytes[..])
            .map_err(|_| PlaceholderError::Random)?;
        let mut nonce = [0u8; 8];
        rng.fill(&mut nonce).map_err(|_| PlaceholderError::Random)?;
        // Written whole under a private name, then linked into place:
        // unlike a rename, a link never replaces a key another process made.
        // Unique per process and call; the last extension is `.new` because
        // `write_atomic` replaces it with its own temporary suffix.
        let tmp = state_dir.join(format!(
            "{KEY_FILE}.{}-{:016x}.new",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        state::write_atomic(&tmp, &bytes[..], 0o600)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Self::from_bytes(*bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                read_key(&path)?.ok_or_else(|| PlaceholderError::Io {
                    action: "read",
                    path,
                    source: std::io::ErrorKind::NotFound.into(),
                })
            }
            Err(source) => Err(PlaceholderError::Io {
                action: "create",
                path,
                source,
            }),
        }
    }

    /// A key from its bytes. keyhole itself uses [`Self::load_or_create`];
    /// this is for tests and tools.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }
}

impl fmt::Debug for PlaceholderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaceholderKey(<redacted>)")
    }
}

/// Reads and checks the key file; `None` when there is none.
fn read_key(path: &Path) -> Result<Option<PlaceholderKey>, PlaceholderError> {
    let io = |action| {
        move |source| PlaceholderError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    };
    // Checked on the open handle, so the file judged is the file read.
    let meta = file.metadata().map_err(io("inspect"))?;
    let malformed = |found: String| PlaceholderError::Malformed {
        path: path.to_owned(),
        found,
    };
    if !meta.is_file() {
        return Err(malformed("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PlaceholderError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(malformed(format!("{} bytes", meta.len())));
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    file.read_exact(&mut bytes[..]).map_err(io("read"))?;
    Ok(Some(PlaceholderKey::from_bytes(*bytes)))
}

/// The derived placeholder of credential `credential_id` of vault
/// `vault_id`: [`PREFIX`] then 32 lowercase base32 characters (160 bits of
/// HMAC-SHA256 over a domain label, the vault id, NUL, the credential id).
pub fn derive(key: &PlaceholderKey, vault_id: &str, credential_id: &str) -> String {
    let mut ctx = hmac::Context::with_key(&key.0);
    ctx.update(LABEL);
    ctx.update(vault_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(credential_id.as_bytes());
    let tag = ctx.sign();
    let mut out = String::with_capacity(PREFIX.len() + MAC_BYTES * 8 / 5);
    out.push_str(PREFIX);
    for group in tag.as_ref()[..MAC_BYTES].chunks_exact(5) {
        let bits = group.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        for i in (0..8).rev() {
            out.push(char::from(BASE32[(bits >> (i * 5)) as usize & 31]));
        }
    }
    out
}

/// One entry per credential of `config`, at the same index: the pinned or
/// derived placeholder of an `environment_variable` credential, `None` for
/// other kinds (which the proxy never substitutes).
pub fn placeholders(config: &Config, key: &PlaceholderKey) -> Vec<Option<String>> {
    config
        .credentials
        .iter()
        .map(|c| {
            let auth = c.environment_variable()?;
            Some(match &auth.placeholder {
                Some(pinned) => pinned.clone(),
                None => derive(key, &c.vault_id, &c.id),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
