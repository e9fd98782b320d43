//! The admin token: read from `--admin-token-file`, checked in constant
//! time on every request (except `/healthz`).
//!
//! The token is accepted as `x-api-key: TOKEN` (what the Anthropic SDKs
//! send with `api_key`) or `Authorization: Bearer TOKEN` (with
//! `auth_token`, and what Prometheus sends). When `x-api-key` is present it
//! alone decides. The comparison hashes both sides with SHA-256 and folds
//! the XOR of the digests, so its time depends neither on where the first
//! difference is nor on the token's length.

use std::io::Read;
use std::path::{Path, PathBuf};

use http::HeaderMap;

use crate::secret::Secret;

/// Largest token file keyhole reads. A token is a line; the bound keeps a
/// wrong path (a log, a device) from being read into memory.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;
/// Below this many bytes a token is accepted with a warning: it may be
/// guessable.
pub const SHORT_TOKEN_BYTES: usize = 16;

/// Why the admin token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `--admin` without `--admin-token-file`.
    #[error("--admin needs --admin-token-file FILE: the admin API never runs without a token; write one (e.g. `head -c 32 /dev/urandom | base64 > admin.token`) and pass its path")]
    Missing,
    /// The file could not be read.
    #[error("cannot read the admin token file {path}: {source}; check the path given to --admin-token-file")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_TOKEN_FILE_BYTES`].
    #[error("the admin token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes; it should hold one line, the token")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is empty (or only a newline).
    #[error("the admin token file {path} is empty; write the token into it")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The token holds whitespace or control characters, or is not UTF-8,
    /// so no client could send it in a header.
    #[error("the admin token in {path} holds whitespace, control characters or non-UTF-8 bytes; use printable ASCII on one line (the token is not shown)")]
    Unusable {
        /// The file.
        path: PathBuf,
    },
}

/// The admin token.
pub struct Token(Secret);

// === impl Token ===

impl Token {
    /// Reads the token file: one trailing newline (`\n` or `\r\n`) is
    /// dropped; an empty or unusable token is refused. A file that group or
    /// others may read is accepted with a warning, since Kubernetes mounts
    /// secrets 0644 by default.
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        let read_err = |source| TokenError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(TokenError::TooLarge {
                path: path.to_owned(),
            });
        }
        let token = Token::parse(bytes).map_err(|e| match e {
            ParseError::Empty => TokenError::Empty {
                path: path.to_owned(),
            },
            ParseError::Unusable => TokenError::Unusable {
                path: path.to_owned(),
            },
        })?;
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the admin token file may be read by other users; chmod 600 it"
            );
        }
        if token.0.len() < SHORT_TOKEN_BYTES {
            tracing::warn!(
                length = token.0.len(),
                "the admin token is shorter than {SHORT_TOKEN_BYTES} bytes and may be guessed; use a long random one"
            );
        }
        Ok(token)
    }

    /// The token from a file's bytes.
    fn parse(mut bytes: Vec<u8>) -> Result<Token, ParseError> {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(ParseError::Empty);
        }
        if !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::Unusable);
        }
        let text = String::from_utf8(bytes).map_err(|_| ParseError::Unusable)?;
        Ok(Token(Secret::new(text)))
    }

    /// A token given directly (for tests and embedding).
    pub fn new(value: Secret) -> Token {
        Token(value)
    }

    /// Whether the request carries the token: `x-api-key` when present,
    /// else `Authorization: Bearer`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = match headers.get("x-api-key") {
            Some(v) => Some(v.as_bytes()),
            None => headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| bearer(v.as_bytes())),
        };
        match presented {
            Some(p) => equal(p, self.0.expose().as_bytes()),
            None => false,
        }
    }
}

enum ParseError {
    Empty,
    Unusable,
}

/// The credentials of `Authorization: Bearer <token>` (scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let head = value.get(..SCHEME.len())?;
    if head.eq_ignore_ascii_case(SCHEME) {
        value.get(SCHEME.len()..).map(|rest| rest.trim_ascii())
    } else {
        None
    }
}

/// Constant-time equality: SHA-256 both sides (so lengths need not match
/// and are not compared early), then OR together the XOR of every byte of
/// the digests, with no early exit.
fn equal(a: &[u8], b: &[u8]) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    let diff = da
        .as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn parse_trims_one_newline_and_refuses_empty_or_unusable() {
        assert_eq!(
            Token::parse(b"tok\r\n".to_vec()).ok().unwrap().0.expose(),
            "tok"
        );
        assert_eq!(
            Token::parse(b"tok\n\n".to_vec()).err().map(|_| ()),
            Some(())
        );
        assert!(matches!(
            Token::parse(b"\n".to_vec()),
            Err(ParseError::Empty)
        ));
        assert!(matches!(Token::parse(Vec::new()), Err(ParseError::Empty)));
        assert!(matches!(
            Token::parse(b"a b".to_vec()),
            Err(ParseError::Unusable)
        ));
    }

    #[test]
    fn admits_api_key_or_bearer() {
        let t = Token::new(Secret::new("s3cret-token".into()));
        assert!(t.admits(&headers(&[("x-api-key", "s3cret-token")])));
        assert!(t.admits(&headers(&[("authorization", "Bearer s3cret-token")])));
        assert!(t.admits(&headers(&[("authorization", "bearer s3cret-token")])));
        assert!(!t.admits(&headers(&[])));
        assert!(!t.admits(&headers(&[("x-api-key", "s3cret-toke")])));
        assert!(!t.admits(&headers(&[("x-api-key", "s3cret-token2")])));
        assert!(!t.admits(&headers(&[("authorization", "Basic s3cret-token")])));
        // x-api-key, when present, decides alone.
        assert!(!t.admits(&headers(&[
            ("x-api-key", "wrong"),
            ("authorization", "Bearer s3cret-token")
        ])));
    }

    #[test]
    fn equality() {
        assert!(equal(b"", b""));
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"abcd"));
    }
}
