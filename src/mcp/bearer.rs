//! [`BearerToken`]: the token a request carries, and [`Fingerprint`]: how
//! [`TokenBook::sync`](super::TokenBook::sync) tells configured tokens
//! apart without keeping them twice.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use ring::digest;

use crate::model::{Auth, TokenEndpointAuth};
use crate::secret::Secret;

/// Serials of [`BearerToken`]s, unique in the process, so that a token
/// from a dropped and re-added credential never passes for a newer one.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Whether every byte of `value` may stand in an HTTP header value:
/// visible ASCII, space, tab and bytes from 0x80 (what
/// [`HeaderValue::from_bytes`] accepts). CR, LF, NUL and the other
/// controls are refused.
pub fn is_header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// An access token in force, ready to be injected.
///
/// Cloning is a reference count. Invariant: `header` is `Bearer <token>`,
/// marked sensitive; `Debug` shows the serial only.
#[derive(Clone)]
pub struct BearerToken(Arc<Inner>);

struct Inner {
    token: Secret,
    header: HeaderValue,
    serial: u64,
}

// === impl BearerToken ===

impl BearerToken {
    /// The token, with a new serial; `None` when it cannot stand in a
    /// header ([`is_header_safe`]) or is empty.
    pub(crate) fn new(token: Secret) -> Option<BearerToken> {
        if token.is_empty() || !is_header_safe(token.expose()) {
            return None;
        }
        let mut value = Vec::with_capacity(7 + token.len());
        value.extend_from_slice(b"Bearer ");
        value.extend_from_slice(token.expose().as_bytes());
        let mut header = HeaderValue::from_maybe_shared(Bytes::from(value)).ok()?;
        header.set_sensitive(true);
        Some(BearerToken(Arc::new(Inner {
            token,
            header,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
        })))
    }

    /// `Bearer <token>` for the `Authorization` header (sensitive, so
    /// hyper's HTTP/2 encoder never indexes it). Never log it.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0.header
    }

    /// The bare token, for scrubbing it from responses. Never log it.
    pub fn token(&self) -> &Secret {
        &self.0.token
    }

    /// A cheap identity: two tokens with the same serial are the same
    /// token in force; a refresh or a config change gives a new serial.
    pub fn serial(&self) -> u64 {
        self.0.serial
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(serial {}, <redacted>)", self.0.serial)
    }
}

/// SHA-256 over a credential's configured tokens (access or static token,
/// refresh token, client secret), so that a later config can be compared
/// with the one adopted without keeping a second copy of each secret.
///
/// Invariant: equal fingerprints mean equal tokens (and type); the
/// digest is over length-prefixed parts, so no two different sets of
/// tokens share an input.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

// === impl Fingerprint ===

impl Fingerprint {
    /// The fingerprint of an MCP credential's tokens; `None` for another
    /// kind of credential.
    pub fn of(auth: &Auth) -> Option<Fingerprint> {
        match auth {
            Auth::EnvironmentVariable(_) => None,
            Auth::StaticBearer(a) => Some(Fingerprint::digest(
                b"static_bearer",
                &[Some(a.token.expose())],
            )),
            Auth::McpOauth(a) => {
                let refresh = a.refresh.as_ref();
                Some(Fingerprint::oauth(
                    &a.access_token,
                    refresh.map(|r| &r.refresh_token),
                    refresh.and_then(|r| client_secret(&r.token_endpoint_auth)),
                ))
            }
        }
    }

    /// The fingerprint of `mcp_oauth` tokens.
    pub fn oauth(
        access_token: &Secret,
        refresh_token: Option<&Secret>,
        client_secret: Option<&Secret>,
    ) -> Fingerprint {
        Fingerprint::digest(
            b"mcp_oauth",
            &[
                Some(access_token.expose()),
                refresh_token.map(Secret::expose),
                client_secret.map(Secret::expose),
            ],
        )
    }

    fn digest(kind: &[u8], parts: &[Option<&str>]) -> Fingerprint {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(kind);
        for part in parts {
            match part {
                None => ctx.update(&[0]),
                Some(p) => {
                    ctx.update(&[1]);
                    ctx.update(&(p.len() as u64).to_be_bytes());
                    ctx.update(p.as_bytes());
                }
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Fingerprint(out)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(<hidden>)")
    }
}

/// The client secret of a token endpoint authentication, if any.
pub fn client_secret(auth: &TokenEndpointAuth) -> Option<&Secret> {
    match auth {
        TokenEndpointAuth::None => None,
        TokenEndpointAuth::ClientSecretBasic(s) | TokenEndpointAuth::ClientSecretPost(s) => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StaticBearerAuth;

    fn secret(s: &str) -> Secret {
        Secret::new(s.into())
    }

    #[test]
    fn header_value_and_identity() {
        let a = BearerToken::new(secret("tok_1")).unwrap();
        assert_eq!(a.header_value().as_bytes(), b"Bearer tok_1");
        assert!(a.header_value().is_sensitive());
        assert_eq!(a.token().expose(), "tok_1");
        let b = BearerToken::new(secret("tok_1")).unwrap();
        assert_ne!(a.serial(), b.serial(), "same text, another token in force");
        assert_eq!(a.clone().serial(), a.serial());
        let shown = format!("{a:?}");
        assert!(!shown.contains("tok_1"), "{shown}");
    }

    #[test]
    fn unusable_tokens_are_refused() {
        for bad in ["", "a\rb", "a\nb", "a\0b", "a\u{7f}b", "a\u{1}b"] {
            assert!(BearerToken::new(secret(bad)).is_none(), "{bad:?}");
        }
        assert!(BearerToken::new(secret("a b\tc~é")).is_some());
    }

    #[test]
    fn fingerprints_tell_tokens_apart() {
        let base = Fingerprint::oauth(&secret("a"), Some(&secret("r")), None);
        assert_eq!(
            base,
            Fingerprint::oauth(&secret("a"), Some(&secret("r")), None)
        );
        assert_ne!(
            base,
            Fingerprint::oauth(&secret("a"), Some(&secret("r2")), None)
        );
        assert_ne!(
            base,
            Fingerprint::oauth(&secret("a2"), Some(&secret("r")), None)
        );
        assert_ne!(
            base,
            Fingerprint::oauth(&secret("a"), Some(&secret("r")), Some(&secret("s")))
        );
        // Length prefixes: moving a byte from one part to the next changes it.
        assert_ne!(
            Fingerprint::oauth(&secret("ab"), Some(&secret("c")), None),
            Fingerprint::oauth(&secret("a"), Some(&secret("bc")), None)
        );
        let bearer = Fingerprint::of(&Auth::StaticBearer(StaticBearerAuth {
            mcp_server_url: "https://m.example.com/".into(),
            token: secret("a"),
        }))
        .unwrap();
        assert_ne!(bearer, Fingerprint::oauth(&secret("a"), None, None));
        assert_eq!(format!("{bearer:?}"), "Fingerprint(<hidden>)");
    }
}
