//! Response scrubbing patterns: every form in which a secret could come back
//! from an upstream (threat 7, reflection), and what replaces each form.
//!
//! [`scrub_patterns`] lists the byte strings (needles) to look for in
//! response headers and bodies, with their replacements; [`scrub_value`]
//! applies them to one header value.
//!
//! Forms, each kept only when its needle differs from every earlier needle
//! of the same credential (so a secret of `[A-Za-z0-9-._~]` has no percent
//! form, and one without escapable characters no JSON form):
//! - [`Form::Raw`]: the secret's bytes, replaced by the placeholder.
//! - [`Form::PercentUpper`], [`Form::PercentLower`]: RFC 3986, every byte
//!   outside `A-Za-z0-9-._~` as `%XX` in upper- or lower-case hex; replaced
//!   by the placeholder (placeholders are `[A-Za-z0-9_-]` and need no
//!   encoding). Partial encodings (`+` for space, `encodeURIComponent`'s
//!   bare `!'()*`, Python's bare `/`) are not covered.
//! - [`Form::JsonEscaped`]: the contents of a JSON string as serde_json and
//!   `JSON.stringify` write them (`\"`, `\\`, `\n` `\r` `\t` `\b` `\f`, other
//!   control characters as `\u00xx`, everything else as is), and each
//!   variant of that with `/` as `\/` (PHP), with non-ASCII and DEL as
//!   `\uxxxx` (Python's `ensure_ascii`), with `<`, `>`, `&`, U+2028 and
//!   U+2029 as `\uxxxx` (Go). Several needles may carry this form. Replaced
//!   by the placeholder.
//! - [`Form::Base64Std`] and [`Form::Base64Url`] with the alignment `a`
//!   (0, 1 or 2): the secret at a byte offset ≡ `a` (mod 3) inside a larger
//!   base64 blob. The needle is the core: every character whose six bits
//!   all come from the secret, so it is the same whatever surrounds the
//!   secret (padding never falls in it). Cores shorter than
//!   [`MIN_BASE64_CORE`] characters are dropped: they would match innocent
//!   data too often, so secrets of 6 bytes or fewer lose some or all base64
//!   forms. The replacement has the same length and alphabet, so the blob
//!   keeps its alignment and still decodes (canonically) to the same
//!   length: it is the core, computed the same way, of a filler made of the
//!   placeholder repeated or truncated to the secret's length. Decoded, the
//!   secret's bytes read as the placeholder's characters; the only secret
//!   bits left are those the edge characters share with the neighbouring
//!   data, at most 4 bits of the first byte and 4 of the last; the two edge
//!   filler bytes are chosen (from `[A-Za-z0-9_-]` when the kept bits allow)
//!   so that the decoded edge bytes are still placeholder characters. A
//!   blob broken into lines inside the secret is not covered.
//! - Secrets shorter than [`MIN_FORMS_LEN`] bytes have the raw form only.
//!
//! A needle is derived from a secret: [`ScrubPattern`]'s `Debug` shows its
//! length only, and its bytes are wiped when it is dropped.

use std::fmt;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::engine::GeneralPurpose;
use base64::Engine as _;
use bytes::Bytes;
use zeroize::{Zeroize, Zeroizing};

use super::stream::Patterns;
use crate::secret::Secret;

/// Secrets shorter than this many bytes are looked for in raw form only.
pub const MIN_FORMS_LEN: usize = 4;

/// Base64 cores shorter than this many characters are not looked for.
pub const MIN_BASE64_CORE: usize = 8;

/// One form of one secret to look for in responses, and what replaces it.
#[derive(Clone)]
pub struct ScrubPattern {
    /// Index of the credential in the config.
    pub credential: u32,
    /// Which form of the secret `needle` is.
    pub form: Form,
    /// The bytes to find. Never empty. Wiped on drop.
    pub needle: Vec<u8>,
    /// What replaces `needle`: the placeholder, or for base64 forms an
    /// encoded filler of the same length as `needle`.
    pub replacement: Bytes,
}

/// A form in which a secret can appear in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// The secret's own bytes.
    Raw,
    /// Percent-encoded (RFC 3986), upper-case hex digits.
    PercentUpper,
    /// Percent-encoded (RFC 3986), lower-case hex digits.
    PercentLower,
    /// Escaped as the contents of a JSON string (one of several variants).
    JsonEscaped,
    /// The core of standard base64 (`+/`) at this alignment (0 to 2).
    Base64Std(u8),
    /// The core of URL-safe base64 (`-_`) at this alignment (0 to 2).
    Base64Url(u8),
}

/// The characters of a placeholder, preferred for base64 edge fillers.
const PLACEHOLDER_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// JSON variant flags: `/` as `\/`; non-ASCII and DEL as `\uxxxx`; `<`,
// `>`, `&`, U+2028 and U+2029 as `\uxxxx`.
const JSON_SLASH: u8 = 1;
const JSON_ASCII: u8 = 2;
const JSON_HTML: u8 = 4;

/// A base64 alphabet (without padding) and its form by alignment.
type Alphabet = (fn(u8) -> Form, &'static GeneralPurpose);

/// Standard, then URL-safe.
const ALPHABETS: [Alphabet; 2] = [
    (Form::Base64Std, &STANDARD_NO_PAD),
    (Form::Base64Url, &URL_SAFE_NO_PAD),
];

// Hex digits.
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Every form of every secret, sorted by credential index, then [`Form`]
/// (stable: the JSON variants in a fixed order). `secrets` holds
/// (credential index, secret, placeholder).
pub fn scrub_patterns(secrets: &[(u32, &Secret, &str)]) -> Vec<ScrubPattern> {
    let mut out = Vec::new();
    for (credential, secret, placeholder) in secrets {
        forms_of(*credential, secret.expose(), placeholder, &mut out);
    }
    out.sort_by_key(|p| (p.credential, p.form));
    out
}

/// Replaces every form of every secret in `value` (a header value), leftmost
/// first and the longest needle there, without overlaps; the first pattern
/// wins among equal needles. `None` when nothing was found: nothing is
/// allocated then.
pub fn scrub_value(patterns: &[ScrubPattern], value: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(rest) = value.get(at..).filter(|r| !r.is_empty()) {
        let Some(found) = longest_at(patterns, rest) else {
            at += 1;
            continue;
        };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(value.len()));
        buf.extend_from_slice(value.get(copied..at).unwrap_or_default());
        buf.extend_from_slice(&found.replacement);
        at += found.needle.len();
        copied = at;
    }
    if let Some(buf) = &mut out {
        buf.extend_from_slice(value.get(copied..).unwrap_or_default());
    }
    out
}

/// As [`scrub_value`], with `automaton` compiled over `patterns`' needles
/// in order (leftmost-longest): one pass over the value instead of a
/// comparison per pattern per byte. [`scrub_value`] stays as its
/// definition, checked against it in the tests.
pub fn scrub_value_with(
    automaton: &Patterns,
    patterns: &[ScrubPattern],
    value: &[u8],
) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for m in automaton.find_iter(value) {
        let Some(p) = patterns.get(m.pattern().as_usize()) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(value.len()));
        buf.extend_from_slice(value.get(copied..m.start()).unwrap_or_default());
        buf.extend_from_slice(&p.replacement);
        copied = m.end();
    }
    if let Some(buf) = &mut out {
        buf.extend_from_slice(value.get(copied..).unwrap_or_default());
    }
    out
}

/// The longest needle that `rest` starts with; the first of equals.
fn longest_at<'p>(patterns: &'p [ScrubPattern], rest: &[u8]) -> Option<&'p ScrubPattern> {
    let mut best: Option<&ScrubPattern> = None;
    for p in patterns {
        let longer = best.is_none_or(|b| p.needle.len() > b.needle.len());
        if longer && !p.needle.is_empty() && rest.starts_with(&p.needle) {
            best = Some(p);
        }
    }
    best
}

// === impl ScrubPattern ===

impl fmt::Debug for ScrubPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrubPattern")
            .field("credential", &self.credential)
            .field("form", &self.form)
            .field("needle_len", &self.needle.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ScrubPattern {
    fn drop(&mut self) {
        self.needle.zeroize();
    }
}

/// Appends to `out` the distinct forms of one secret.
fn forms_of(credential: u32, secret: &str, placeholder: &str, out: &mut Vec<ScrubPattern>) {
    let start = out.len();
    let ph = Bytes::copy_from_slice(placeholder.as_bytes());
    let mut push = |form: Form, mut needle: Zeroizing<Vec<u8>>, replacement: Bytes| {
        let seen = out.get(start..).unwrap_or_default();
        if needle.is_empty() || seen.iter().any(|p| p.needle == *needle) {
            return;
        }
        let needle = std::mem::take(&mut *needle);
        out.push(ScrubPattern {
            credential,
            form,
            needle,
            replacement,
        });
    };
    let raw = secret.as_bytes();
    push(Form::Raw, Zeroizing::new(raw.to_vec()), ph.clone());
    if raw.len() < MIN_FORMS_LEN {
        return;
    }
    push(Form::PercentUpper, percent(raw, HEX_UPPER), ph.clone());
    push(Form::PercentLower, percent(raw, HEX_LOWER), ph.clone());
    for flags in 0..8 {
        push(Form::JsonEscaped, json(secret, flags), ph.clone());
    }
    for (form, engine) in ALPHABETS {
        for a in 0..3u8 {
            if let Some((needle, replacement)) = base64_core(engine, raw, placeholder, a.into()) {
                push(form(a), needle, replacement);
            }
        }
    }
}

/// RFC 3986 percent-encoding with the given hex digits.
fn percent(raw: &[u8], hex: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len() * 3));
    for &b in raw {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]);
        }
    }
    out
}

/// The contents of a JSON string holding `secret`, in the variant `flags`.
fn json(secret: &str, flags: u8) -> Zeroizing<Vec<u8>> {
    // At most 6 output bytes per input byte (`\u00xx`; a 4-byte char gives
    // two `\uxxxx`), so the buffer never moves and leaves no copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(secret.len() * 6));
    let mut utf8 = [0u8; 4];
    for c in secret.chars() {
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            '\u{8}' => b"\\b",
            '\u{c}' => b"\\f",
            '/' if flags & JSON_SLASH != 0 => b"\\/",
            _ => b"",
        };
        let unicode = u32::from(c) < 0x20
            || (flags & JSON_ASCII != 0 && (c == '\u{7f}' || !c.is_ascii()))
            || (flags & JSON_HTML != 0 && matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}'));
        if !short.is_empty() {
            out.extend_from_slice(short);
        } else if unicode {
            let mut units = [0u16; 2];
            for &unit in c.encode_utf16(&mut units).iter() {
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX_LOWER[usize::from((unit >> shift) & 15)]);
                }
            }
        } else {
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
    utf8.zeroize();
    out
}

/// The base64 core of `raw` at alignment `a` (its byte offset mod 3 in the
/// blob) and its same-length replacement; `None` when the core is shorter
/// than [`MIN_BASE64_CORE`].
fn base64_core(
    engine: &GeneralPurpose,
    raw: &[u8],
    placeholder: &str,
    a: usize,
) -> Option<(Zeroizing<Vec<u8>>, Bytes)> {
    let n = raw.len();
    let (first, last) = (*raw.first()?, *raw.last()?);
    // Characters k0..k1 of the encoded `a` zero bytes + secret take all
    // six bits from the secret (character k covers bits 6k..6k+6).
    let k0 = (8 * a).div_ceil(6);
    let k1 = 8 * (a + n) / 6;
    if k1 < k0 + MIN_BASE64_CORE {
        return None;
    }
    // Bits of the first and last secret byte that stay in the blob.
    let head_mask = !(0xffu8 >> (6 * k0 - 8 * a));
    let tail_mask = (1u8 << (8 * (a + n) - 6 * k1)) - 1;
    let mut buf = Zeroizing::new(vec![0u8; a + n]);
    buf.get_mut(a..)?.copy_from_slice(raw);
    let encoded = Zeroizing::new(engine.encode(&*buf));
    let needle = Zeroizing::new(encoded.as_bytes().get(k0..k1)?.to_vec());

    let fill = Some(placeholder.as_bytes()).filter(|p| !p.is_empty());
    let fill = fill.unwrap_or(b"x").iter().cycle();
    for (slot, &b) in buf.get_mut(a..)?.iter_mut().zip(fill) {
        *slot = b;
    }
    let head = buf.get_mut(a)?;
    *head = edge(*head, first, head_mask);
    let tail = buf.get_mut(a + n - 1)?;
    *tail = edge(*tail, last, tail_mask);
    let replacement = engine.encode(&*buf);
    let replacement = Bytes::copy_from_slice(replacement.as_bytes().get(k0..k1)?);
    Some((needle, replacement))
}

/// The filler byte for an edge of a base64 core, as the client will decode
/// it: the `kept` bits are the secret's, the rest are chosen so that the
/// byte is `preferred`, or else any placeholder character, when possible.
fn edge(preferred: u8, secret: u8, kept: u8) -> u8 {
    let fits = |c: &u8| c & kept == secret & kept;
    let chosen = Some(preferred)
        .filter(fits)
        .or_else(|| PLACEHOLDER_ALPHABET.iter().copied().find(fits))
        .unwrap_or(preferred);
    (secret & kept) | (chosen & !kept)
}

#[cfg(test)]
mod tests;
