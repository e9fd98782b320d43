//! Substitution in header values.
//!
//! Every value of every header is scanned once with the shared automaton;
//! a value without a placeholder is neither copied nor reallocated. The
//! payload of `Authorization: Basic` is decoded, substituted as `user:pass`
//! and encoded again; a payload that does not decode is opaque text. Names,
//! `Host` and the framing and hop-by-hop headers are never changed (a
//! placeholder found there is reported as passed). All new values are
//! computed before any is stored, so an error leaves the map as it was.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeSliceError, Engine as _};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use zeroize::Zeroizing;

use super::{Place, SubstituteError, Substitutions};

/// What a header pass found, by credential index (ascending, no repeats).
/// Holds no value. Empty vectors do not allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderReport {
    /// Credentials whose placeholder was replaced by their secret.
    pub substituted: Vec<u32>,
    /// Credentials whose placeholder was found and passed on unchanged: not
    /// allowed for the destination, header injection off, or in a name or a
    /// header that is never changed.
    pub passed: Vec<u32>,
}

/// Standard base64 that accepts a payload with or without padding.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Basic payloads up to this many decoded bytes are decoded on the stack.
const STACK_DECODE: usize = 384;

// === impl Substitutions ===

impl Substitutions {
    /// Substitutes in the values of `headers`: each placeholder of a
    /// credential in `allowed` (the credentials whose networking matches the
    /// destination and whose use egress allows, as the caller decided) with
    /// header injection on becomes that credential's own secret. Every other
    /// placeholder passes unchanged and is reported.
    ///
    /// Substituted values are marked sensitive (never indexed by HPACK, and
    /// `Debug` hides them). On error `headers` is unchanged and the request
    /// must not be sent.
    pub fn headers(
        &self,
        headers: &mut HeaderMap,
        allowed: &[u32],
    ) -> Result<HeaderReport, SubstituteError> {
        let mut report = HeaderReport::default();
        if self.entries.is_empty() {
            return Ok(report);
        }
        // (position in iteration order, new value): filled only when a
        // value changes, applied once every value has been computed.
        let mut pending: Vec<(usize, HeaderValue)> = Vec::new();
        for (position, (name, value)) in headers.iter().enumerate() {
            self.record_passed(name.as_str().as_bytes(), &mut report);
            let bytes = value.as_bytes();
            if untouchable(name) {
                self.record_passed(bytes, &mut report);
                continue;
            }
            let basic = if name == AUTHORIZATION {
                self.basic(bytes, allowed, &mut report)?
            } else {
                None
            };
            let new = match basic {
                Some(handled) => handled,
                None => self.replace(bytes, allowed, Place::Header, &mut report)?,
            };
            if let Some(new) = new {
                let mut new = HeaderValue::try_from(new).map_err(|_| self.header_error(&report))?;
                new.set_sensitive(true);
                pending.push((position, new));
            }
        }
        if !pending.is_empty() {
            // `iter_mut` visits values in the same order as `iter`.
            let mut pending = pending.into_iter().peekable();
            for (position, (_, value)) in headers.iter_mut().enumerate() {
                if let Some((_, new)) = pending.next_if(|(p, _)| *p == position) {
                    *value = new;
                }
            }
        }
        report.substituted.sort_unstable();
        report.substituted.dedup();
        report.passed.sort_unstable();
        report.passed.dedup();
        Ok(report)
    }

    /// `Authorization: Basic`: `None` when the value is not Basic, its
    /// payload does not decode, or the decoded `user:pass` holds no
    /// placeholder (the value is then opaque text); else `Some` of the new
    /// value, or `Some(None)` when every placeholder in it passed.
    fn basic(
        &self,
        value: &[u8],
        allowed: &[u32],
        report: &mut HeaderReport,
    ) -> Result<Option<Option<Vec<u8>>>, SubstituteError> {
        let Some((start, end)) = basic_payload(value) else {
            return Ok(None);
        };
        let payload = &value[start..end];
        let mut stack = [0u8; STACK_DECODE];
        let decoded: Cow<'_, [u8]> = match BASIC.decode_slice(payload, &mut stack) {
            Ok(n) => Cow::Borrowed(&stack[..n]),
            Err(DecodeSliceError::OutputSliceTooSmall) => match BASIC.decode(payload) {
                Ok(v) => Cow::Owned(v),
                Err(_) => return Ok(None),
            },
            Err(DecodeSliceError::DecodeError(_)) => return Ok(None),
        };
        if !self.automaton.is_match(&*decoded) {
            return Ok(None);
        }
        let Some(plain) = self.replace(&decoded, allowed, Place::Header, report)? else {
            return Ok(Some(None));
        };
        let plain = Zeroizing::new(plain);
        let encoded = Zeroizing::new(STANDARD.encode(&*plain));
        let mut out = Vec::with_capacity(value.len() - payload.len() + encoded.len());
        out.extend_from_slice(&value[..start]);
        out.extend_from_slice(encoded.as_bytes());
        out.extend_from_slice(&value[end..]);
        Ok(Some(Some(out)))
    }

    /// The error for a substituted value `http` refuses. Secrets are checked
    /// byte by byte before they are used, so this names the credential last
    /// substituted (never reached while that check holds).
    fn header_error(&self, report: &HeaderReport) -> SubstituteError {
        let entry = report
            .substituted
            .last()
            .and_then(|&i| self.by_credential.get(i as usize).copied().flatten())
            .and_then(|e| self.entries.get(e));
        match entry {
            Some(entry) => SubstituteError::HeaderValue(entry.reference()),
            None => SubstituteError::HeaderValue(super::CredentialRef {
                index: u32::MAX,
                id: String::from("?"),
            }),
        }
    }
}

/// Headers whose values are never changed: `Host`, and the framing and
/// hop-by-hop headers.
fn untouchable(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// The payload's range in a `Basic <payload>` value (scheme in any case),
/// surrounding whitespace excluded; `None` for other schemes or no payload.
fn basic_payload(value: &[u8]) -> Option<(usize, usize)> {
    let scheme = value.get(..5)?;
    if !scheme.eq_ignore_ascii_case(b"basic") || !matches!(value.get(5), Some(b' ' | b'\t')) {
        return None;
    }
    let is_space = |b: &u8| matches!(b, b' ' | b'\t');
    let start = 5 + value[5..].iter().take_while(|b| is_space(b)).count();
    let end = value.len()
        - value[start..]
            .iter()
            .rev()
            .take_while(|b| is_space(b))
            .count();
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests;
