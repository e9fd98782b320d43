//! The vault API's field rules, shared by config loading and updates.
//!
//! Each check records every problem it finds under the given JSON path and
//! returns what it validated, so callers report all problems in one pass.

use std::collections::BTreeMap;

use super::problem::{field, index, Problems};
use crate::host::HostPattern;
use crate::secret::Secret;

/// Most entries a credential's `allowed_hosts` may hold (vault API).
pub const MAX_CREDENTIAL_HOSTS: usize = 16;
/// Most entries the egress `allowed_hosts` may hold. The API states no
/// bound; this one keeps a file's policy small enough to read and review.
pub const MAX_EGRESS_HOSTS: usize = 1024;
/// Longest `display_name`, in characters (vault API).
pub const MAX_DISPLAY_NAME: usize = 255;
/// Most metadata pairs (vault API).
pub const MAX_METADATA_PAIRS: usize = 16;
/// Longest metadata key, in characters (vault API).
pub const MAX_METADATA_KEY: usize = 64;
/// Longest metadata value, in characters (vault API).
pub const MAX_METADATA_VALUE: usize = 512;
/// Longest id (`vcrd_...`, `vlt_...`) keyhole accepts; ids go into URL paths.
pub const MAX_ID_LEN: usize = 128;

/// Validates a list of host entries. `limits` is the allowed count range.
/// Returns the valid entries with their index in `entries` (invalid ones
/// are reported and skipped).
pub fn host_list(
    path: &str,
    entries: &[String],
    limits: std::ops::RangeInclusive<usize>,
    problems: &mut Problems,
) -> Vec<(usize, HostPattern)> {
    if entries.len() < *limits.start() {
        problems.push(
            path,
            format!(
                "has no entries; list 1 to {} hosts, or use {{\"type\": \"unrestricted\"}}",
                limits.end()
            ),
        );
    }
    if entries.len() > *limits.end() {
        problems.push(
            path,
            format!(
                "has {} entries; at most {} are allowed, so use \"*.\" wildcards or fewer hosts",
                entries.len(),
                limits.end()
            ),
        );
    }
    let mut valid: Vec<(usize, HostPattern)> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        match HostPattern::parse(entry) {
            Ok(pattern) => {
                if let Some((j, _)) = valid.iter().find(|(_, p)| *p == pattern) {
                    problems.push(
                        index(path, i),
                        format!("{entry:?} repeats entry [{j}]; remove one of them"),
                    );
                } else {
                    valid.push((i, pattern));
                }
            }
            Err(e) => problems.push(index(path, i), e.to_string()),
        }
    }
    valid
}

/// `display_name`: at most 255 characters; `min` is 1 on update.
pub fn display_name(path: &str, value: &str, min: usize, problems: &mut Problems) {
    let n = value.chars().count();
    if n < min {
        problems.push(
            path,
            "is empty; give a name of 1 to 255 characters, or leave the field out",
        );
    } else if n > MAX_DISPLAY_NAME {
        problems.push(
            path,
            format!("has {n} characters; shorten it to at most {MAX_DISPLAY_NAME}"),
        );
    }
}

/// `metadata` (a complete map, after any patch): the pair, key and value limits.
pub fn metadata(path: &str, map: &BTreeMap<String, String>, problems: &mut Problems) {
    if map.len() > MAX_METADATA_PAIRS {
        problems.push(
            path,
            format!(
                "has {} pairs; at most {MAX_METADATA_PAIRS} are allowed, remove some",
                map.len()
            ),
        );
    }
    for (key, value) in map {
        let at = field(path, key);
        let k = key.chars().count();
        if k > MAX_METADATA_KEY {
            problems.push(
                &at,
                format!("the key has {k} characters; shorten it to at most {MAX_METADATA_KEY}"),
            );
        }
        let v = value.chars().count();
        if v > MAX_METADATA_VALUE {
            problems.push(
                &at,
                format!("the value has {v} characters; shorten it to at most {MAX_METADATA_VALUE}"),
            );
        }
    }
}

/// `secret_name`: a valid environment variable name, `[A-Za-z_][A-Za-z0-9_]*`.
pub fn secret_name(path: &str, name: &str, problems: &mut Problems) {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        problems.push(
            path,
            format!(
                "{name:?} is not an environment variable name; use letters, digits and '_', not starting with a digit, as in \"GITHUB_TOKEN\""
            ),
        );
    }
}

/// A secret value (or token): non-empty, without CR, LF or NUL, which
/// could split a header. The message never shows the value.
pub fn secret_value(path: &str, value: &Secret, problems: &mut Problems) {
    if value.is_empty() {
        problems.push(path, "is empty; give the secret's value");
    } else if value
        .expose()
        .bytes()
        .any(|b| matches!(b, b'\r' | b'\n' | 0))
    {
        problems.push(
            path,
            "holds a CR, LF or NUL character, which could split an HTTP header; remove it (the value is not shown)",
        );
    }
}

/// Shortest pinned placeholder: long enough never to occur by chance in
/// real content.
pub const MIN_PLACEHOLDER_LEN: usize = 16;
/// Longest pinned placeholder.
pub const MAX_PLACEHOLDER_LEN: usize = 128;

/// A pinned placeholder: 16 to 128 of `[A-Za-z0-9_-]`, characters every
/// client accepts in a header, a URL (userinfo included) and a shell word.
pub fn placeholder(path: &str, value: &str, problems: &mut Problems) {
    let valid =
        (MIN_PLACEHOLDER_LEN..=MAX_PLACEHOLDER_LEN).contains(&value.len()) && is_token(value);
    if !valid {
        problems.push(
            path,
            format!("is not a usable placeholder; use {MIN_PLACEHOLDER_LEN} to {MAX_PLACEHOLDER_LEN} letters, digits, '_' or '-', or leave it out to have one derived"),
        );
    }
}

/// Whether `value` is made of `[A-Za-z0-9_-]` only: safe unescaped in a
/// header, a URL path or userinfo, JSON and a shell word.
fn is_token(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An RFC 3339 timestamp.
pub fn timestamp(path: &str, value: &str, problems: &mut Problems) {
    if parse_timestamp(value).is_none() {
        problems.push(
            path,
            format!("{value:?} is not an RFC 3339 timestamp; write one such as \"2026-03-15T10:00:00Z\""),
        );
    }
}

/// Parses an RFC 3339 timestamp.
pub fn parse_timestamp(value: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()
}

/// An id (`vcrd_...`, `vlt_...`): 1 to 128 of `[A-Za-z0-9_-]`, so that it
/// can stand in a URL path unescaped.
pub fn id(path: &str, value: &str, problems: &mut Problems) {
    let valid = !value.is_empty() && value.len() <= MAX_ID_LEN && is_token(value);
    if !valid {
        problems.push(
            path,
            format!("{value:?} is not a valid id; use 1 to {MAX_ID_LEN} letters, digits, '_' or '-', as in \"vcrd_github\""),
        );
    }
}

/// An `http(s)://` URL with a host, such as `mcp_server_url`.
pub fn url(path: &str, value: &str, problems: &mut Problems) {
    let ok = value.parse::<http::Uri>().ok().is_some_and(|u| {
        matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some_and(|h| !h.is_empty())
    });
    if !ok {
        problems.push(
            path,
            format!("{value:?} is not an http(s) URL; write one such as \"https://mcp.example.com/sse\""),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Problems)) -> Vec<String> {
        let mut p = Problems::new();
        f(&mut p);
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn host_list_limits_and_duplicates() {
        let hosts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            run(|p| {
                host_list("h", &hosts(&[]), 1..=16, p);
            })[0],
            "h: has no entries; list 1 to 16 hosts, or use {\"type\": \"unrestricted\"}"
        );
        let many: Vec<String> = (0..17).map(|i| format!("h{i}.example.com")).collect();
        assert!(run(|p| {
            host_list("h", &many, 1..=16, p);
        })[0]
            .contains("has 17 entries"));
        let out = run(|p| {
            host_list(
                "h",
                &hosts(&["a.com", "A.com", "https://b.com", "*"]),
                1..=16,
                p,
            );
        });
        assert_eq!(out.len(), 3);
        assert!(out[0].starts_with("h[1]: \"A.com\" repeats entry [0]"));
        assert!(out[1].starts_with("h[2]: "));
        assert!(out[2].starts_with("h[3]: "));
    }

    #[test]
    fn names_and_lengths() {
        assert!(run(|p| display_name("d", &"x".repeat(255), 0, p)).is_empty());
        assert_eq!(run(|p| display_name("d", &"é".repeat(256), 0, p)).len(), 1);
        assert!(run(|p| display_name("d", "", 0, p)).is_empty());
        assert_eq!(run(|p| display_name("d", "", 1, p)).len(), 1);
        for ok in ["GITHUB_TOKEN", "_x", "a1"] {
            assert!(run(|p| secret_name("s", ok, p)).is_empty(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert_eq!(run(|p| secret_name("s", bad, p)).len(), 1, "{bad}");
        }
    }

    #[test]
    fn metadata_limits() {
        let mut m: BTreeMap<String, String> =
            (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(run(|p| metadata("m", &m, p)).len(), 1);
        m.clear();
        m.insert("k".repeat(65), "v".repeat(513));
        assert_eq!(run(|p| metadata("m", &m, p)).len(), 2);
        m.clear();
        m.insert("k".repeat(64), "v".repeat(512));
        assert!(run(|p| metadata("m", &m, p)).is_empty());
    }

    #[test]
    fn secret_values_never_shown() {
        for bad in ["", "abc\r\n", "a\nb", "a\0b"] {
            let out = run(|p| secret_value("v", &Secret::new(bad.into()), p));
            assert_eq!(out.len(), 1, "{bad:?}");
            if !bad.is_empty() {
                assert!(!out[0].contains(bad));
            }
        }
        assert!(run(|p| secret_value("v", &Secret::new("ghp_x".into()), p)).is_empty());
    }

    #[test]
    fn timestamps_ids_urls() {
        assert!(run(|p| timestamp("t", "2026-03-15T10:00:00Z", p)).is_empty());
        assert!(run(|p| timestamp("t", "2026-03-15T10:00:00.123+02:00", p)).is_empty());
        assert_eq!(run(|p| timestamp("t", "yesterday", p)).len(), 1);
        assert!(run(|p| id("i", "vcrd_011CZkZEMt8gZan2iYOQfSkw", p)).is_empty());
        assert_eq!(run(|p| id("i", "a/b", p)).len(), 1);
        assert_eq!(run(|p| id("i", "", p)).len(), 1);
        assert!(run(|p| url("u", "https://mcp.example.com/sse", p)).is_empty());
        assert_eq!(run(|p| url("u", "mcp.example.com", p)).len(), 1);
        assert_eq!(run(|p| url("u", "ftp://x.com/", p)).len(), 1);
    }
}
