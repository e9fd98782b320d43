//! Substitution: placeholders in a request become secrets, pure byte work
//! with no sockets and no async.
//!
//! [`Substitutions`] holds, for every `environment_variable` credential of
//! one config (archived ones too: the policy decides who applies), its
//! placeholder, its secret and its injection location, and one
//! Aho-Corasick automaton over all placeholders that every lookup uses.
//! The caller passes the indices of the credentials that may apply to the
//! destination; [`headers`] does the header values.
//!
//! Invariants:
//! - A placeholder only ever becomes its own credential's secret, and only
//!   when that credential is among the allowed ones and its injection
//!   location enables the place it stands in. Every other placeholder found
//!   passes unchanged and is reported.
//! - Header names, `Host` and the framing and hop-by-hop headers are never
//!   changed.
//! - A report holds credential indices only, never a value; no error,
//!   `Debug` output or log line holds a secret (nor a placeholder, which
//!   could hold a secret in a bad config).
//! - On error nothing is changed and nothing may be sent (fail closed).

pub mod bodies;
pub mod headers;
pub mod scrub;
pub mod stream;

pub use headers::HeaderReport;

use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::model::rules::{MAX_PLACEHOLDER_LEN, MIN_PLACEHOLDER_LEN};
use crate::model::{Auth, Config, Credential, InjectionLocation, TokenEndpointAuth};
use crate::placeholder::{self, PlaceholderKey};
use crate::secret::Secret;

/// Placeholders and secrets of one config, and the matcher over them.
#[derive(Clone)]
pub struct Substitutions {
    /// One per `environment_variable` credential, in config order. The
    /// automaton's pattern ids are indices into this.
    entries: Vec<Entry>,
    /// By credential index: the entry's index, if it has one.
    by_credential: Vec<Option<usize>>,
    /// Leftmost-longest, over the entries' placeholders.
    automaton: AhoCorasick,
    /// Request-body and response patterns.
    bodies: bodies::Bodies,
    /// The secrets of MCP credentials, by credential index: scrubbed from
    /// responses, never substituted.
    mcp_secrets: Vec<(u32, Secret)>,
}

/// One substitutable credential.
#[derive(Debug, Clone)]
struct Entry {
    /// Index in `config.credentials`.
    credential: u32,
    /// `vcrd_...`, for error messages.
    id: String,
    placeholder: String,
    secret: Secret,
    location: InjectionLocation,
    /// Whether every byte of the secret may stand in a header value.
    header_safe: bool,
}

/// Where in a request a placeholder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A header value (or the decoded payload of `Authorization: Basic`).
    Header,
}

/// Why substitutions could not be built or applied. Messages name
/// credentials by index and id; they never show a secret or placeholder.
#[derive(Debug, thiserror::Error)]
pub enum SubstituteError {
    /// A placeholder is not 16 to 128 of `[A-Za-z0-9_-]`.
    #[error("{0}: its placeholder is not 16 to 128 letters, digits, '_' or '-'; fix the pinned placeholder or remove it to have one derived")]
    BadPlaceholder(CredentialRef),
    /// A secret is empty.
    #[error("{0}: its secret is empty; give the secret's value")]
    EmptySecret(CredentialRef),
    /// Two credentials have equal placeholders, or one contains the other.
    #[error("the placeholder of {outer} contains (or equals) the placeholder of {inner}; pin placeholders that do not contain one another")]
    Overlap {
        /// The credential whose placeholder contains the other.
        outer: CredentialRef,
        /// The credential whose placeholder is contained.
        inner: CredentialRef,
    },
    /// A placeholder contains a secret or a secret contains a placeholder.
    #[error("the placeholder of {placeholder} and a secret of {secret} contain one another; change that placeholder (the values are not shown)")]
    SecretOverlap {
        /// The credential of the placeholder.
        placeholder: CredentialRef,
        /// The credential of the secret.
        secret: CredentialRef,
    },
    /// More credentials than indices.
    #[error("the config has more credentials than keyhole can index; split it")]
    TooMany,
    /// The placeholder matcher could not be built.
    #[error("cannot build the placeholder matcher: {0}")]
    Matcher(#[from] aho_corasick::BuildError),
    /// The body or response matcher could not be built.
    #[error("cannot build the body matcher: {0}")]
    Stream(#[from] stream::StreamError),
    /// A secret holds a byte a header value cannot carry; nothing was sent.
    #[error("{0}: its secret holds a control character, which a header value cannot carry, so the request was not sent; fix the secret (the value is not shown)")]
    HeaderValue(CredentialRef),
}

/// A credential named in an error: its index and id, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    /// Index in `config.credentials`.
    pub index: u32,
    /// `vcrd_...`.
    pub id: String,
}

// === impl Substitutions ===

impl Substitutions {
    /// Collects every `environment_variable` credential's placeholder
    /// (pinned, or derived with `key`), secret and injection location, and
    /// builds the matcher. Refuses placeholders that are unusable, equal to
    /// or inside one another, and placeholders and secrets that contain one
    /// another.
    pub fn new(config: &Config, key: &PlaceholderKey) -> Result<Substitutions, SubstituteError> {
        u32::try_from(config.credentials.len()).map_err(|_| SubstituteError::TooMany)?;
        // Every index fits a u32 (checked just above).
        let credential_ref = |i: usize| CredentialRef {
            index: i as u32,
            id: config
                .credentials
                .get(i)
                .map_or_else(String::new, |c| c.id.clone()),
        };
        let placeholders = placeholder::placeholders(config, key);
        let mut entries = Vec::new();
        let mut by_credential = vec![None; config.credentials.len()];
        for (i, (cred, placeholder)) in config.credentials.iter().zip(placeholders).enumerate() {
            let (Some(auth), Some(placeholder)) = (cred.environment_variable(), placeholder) else {
                continue;
            };
            if !usable(&placeholder) {
                return Err(SubstituteError::BadPlaceholder(credential_ref(i)));
            }
            if auth.secret_value.is_empty() {
                return Err(SubstituteError::EmptySecret(credential_ref(i)));
            }
            let header_safe = auth.secret_value.expose().bytes().all(header_byte);
            by_credential[i] = Some(entries.len());
            entries.push(Entry {
                credential: i as u32,
                id: cred.id.clone(),
                placeholder,
                secret: auth.secret_value.clone(),
                location: auth.injection_location,
                header_safe,
            });
        }
        for a in &entries {
            for b in &entries {
                if a.credential != b.credential && a.placeholder.contains(b.placeholder.as_str()) {
                    let (outer, inner) = (a.reference(), b.reference());
                    return Err(SubstituteError::Overlap { outer, inner });
                }
            }
            for (j, cred) in config.credentials.iter().enumerate() {
                let hit = secrets(cred).any(|s| {
                    let s = s.expose();
                    !s.is_empty()
                        && (a.placeholder.contains(s) || s.contains(a.placeholder.as_str()))
                });
                if hit {
                    let (placeholder, secret) = (a.reference(), credential_ref(j));
                    return Err(SubstituteError::SecretOverlap {
                        placeholder,
                        secret,
                    });
                }
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(entries.iter().map(|e| e.placeholder.as_bytes()))?;
        // MCP credentials' secrets are never substituted (keyhole injects
        // them itself) but are scrubbed from responses like any secret.
        let mcp_secrets: Vec<(u32, Secret)> = config
            .credentials
            .iter()
            .enumerate()
            .filter(|(_, c)| c.environment_variable().is_none())
            .flat_map(|(i, c)| secrets(c).map(move |s| (i as u32, s.clone())))
            .collect();
        let scrub_only: Vec<(u32, &Secret)> = mcp_secrets.iter().map(|(i, s)| (*i, s)).collect();
        let bodies = bodies::Bodies::new(&entries, &scrub_only)?;
        Ok(Substitutions {
            entries,
            by_credential,
            automaton,
            bodies,
            mcp_secrets,
        })
    }

    /// Request-body substitution and response scrubbing for this config.
    pub fn bodies(&self) -> &bodies::Bodies {
        &self.bodies
    }

    /// Whether responses are scrubbed of `secret` (an MCP token) under this
    /// config. A token refreshed after the config was compiled is not.
    pub fn scrubs(&self, secret: &Secret) -> bool {
        self.mcp_secrets
            .iter()
            .any(|(_, s)| s.expose() == secret.expose())
    }

    /// The placeholder of credential `credential` (its index in the
    /// config), when it is an `environment_variable` credential.
    pub fn placeholder(&self, credential: u32) -> Option<&str> {
        let entry = (*self.by_credential.get(credential as usize)?)?;
        self.entries.get(entry).map(|e| e.placeholder.as_str())
    }

    /// Replaces, in `input`, every placeholder of a credential in `allowed`
    /// whose injection location enables `place` with that credential's own
    /// secret; records every placeholder found in `report`. `None` when
    /// nothing was replaced: the input is then neither copied nor changed.
    pub(crate) fn replace(
        &self,
        input: &[u8],
        allowed: &[u32],
        place: Place,
        report: &mut HeaderReport,
    ) -> Result<Option<Vec<u8>>, SubstituteError> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        for m in self.automaton.find_iter(input) {
            let Some(entry) = self.entries.get(m.pattern().as_usize()) else {
                continue;
            };
            let enabled = match place {
                Place::Header => entry.location.header,
            };
            if !enabled || !allowed.contains(&entry.credential) {
                report.passed.push(entry.credential);
                continue;
            }
            if place == Place::Header && !entry.header_safe {
                return Err(SubstituteError::HeaderValue(entry.reference()));
            }
            let buf =
                out.get_or_insert_with(|| Vec::with_capacity(input.len() + entry.secret.len()));
            buf.extend_from_slice(&input[copied..m.start()]);
            buf.extend_from_slice(entry.secret.expose().as_bytes());
            copied = m.end();
            report.substituted.push(entry.credential);
        }
        if let Some(buf) = &mut out {
            buf.extend_from_slice(&input[copied..]);
        }
        Ok(out)
    }

    /// Records every placeholder in `input` as passed, changing nothing.
    pub(crate) fn record_passed(&self, input: &[u8], report: &mut HeaderReport) {
        for m in self.automaton.find_iter(input) {
            if let Some(entry) = self.entries.get(m.pattern().as_usize()) {
                report.passed.push(entry.credential);
            }
        }
    }
}

impl fmt::Debug for Substitutions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
        f.debug_struct("Substitutions")
            .field("credentials", &ids)
            .finish_non_exhaustive()
    }
}

// === impl Entry ===

impl Entry {
    fn reference(&self) -> CredentialRef {
        CredentialRef {
            index: self.credential,
            id: self.id.clone(),
        }
    }
}

// === impl CredentialRef ===

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "credentials[{}] ({})", self.index, self.id)
    }
}

/// The pinned-placeholder rule, checked again here so that a config built
/// by any path gives placeholders that are safe in every location.
fn usable(placeholder: &str) -> bool {
    (MIN_PLACEHOLDER_LEN..=MAX_PLACEHOLDER_LEN).contains(&placeholder.len())
        && placeholder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `b` may stand in a header value (as `http::HeaderValue` checks).
fn header_byte(b: u8) -> bool {
    (b >= 0x20 && b != 0x7f) || b == b'\t'
}

/// Every secret a credential holds, of any kind.
fn secrets(cred: &Credential) -> impl Iterator<Item = &Secret> {
    let (a, b, c) = match &cred.auth {
        Auth::EnvironmentVariable(a) => (Some(&a.secret_value), None, None),
        Auth::StaticBearer(s) => (Some(&s.token), None, None),
        Auth::McpOauth(o) => {
            let refresh = o.refresh.as_ref();
            let client = refresh.and_then(|r| match &r.token_endpoint_auth {
                TokenEndpointAuth::None => None,
                TokenEndpointAuth::ClientSecretBasic(s)
                | TokenEndpointAuth::ClientSecretPost(s) => Some(s),
            });
            (
                Some(&o.access_token),
                refresh.map(|r| &r.refresh_token),
                client,
            )
        }
    };
    a.into_iter().chain(b).chain(c)
}

#[cfg(test)]
mod tests;
