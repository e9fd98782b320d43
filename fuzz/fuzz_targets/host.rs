//! Fuzz target `host`: request-host normalisation, `allowed_hosts` entries
//! and the compiled matcher.
//!
//! The input is read as (lossy) UTF-8 text. The whole text, and each word of
//! it (split on spaces), goes through [`Host::parse`], [`Authority::parse`]
//! and [`HostPattern::parse`]; the words that are valid entries are then
//! compiled into a [`HostSet`] and every host made from the words and the
//! entries is looked up in it and compared with a naive scan of the entries
//! with [`HostPattern::matches`] (the reference semantics).
//!
//! Properties checked (see docs/FUZZING.md):
//! - nothing panics;
//! - a normalised host is lower-case ASCII without a trailing dot, re-parses
//!   to itself, and obeys the invariants `Host` documents for its kind;
//! - case and one trailing dot never change the outcome;
//! - an authority re-parses from its rendering, and its host is the host
//!   part parsed alone;
//! - an entry re-parses from its rendering, obeys the documented LDH
//!   invariants, matches what it names and not what it must not;
//! - `HostSet::lookup` equals the naive scan (sorted, no duplicates).

#![no_main]

use std::net::Ipv4Addr;

use keyhole::host::name::{MAX_LABEL_LEN, MAX_NAME_LEN};
use keyhole::host::{Authority, Host, HostKind, HostPattern, HostSetBuilder};
use libfuzzer_sys::fuzz_target;

/// Words beyond this many are ignored (keeps each run fast).
const MAX_WORDS: usize = 48;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_host(&text);
    check_authority(&text);
    check_pattern(&text);
    let words: Vec<&str> = text.split(' ').take(MAX_WORDS).collect();
    if words.len() > 1 {
        for word in &words {
            check_host(word);
            check_authority(word);
            check_pattern(word);
        }
    }
    check_matcher(&words);
});

/// Whether a label "ends in a number" as WHATWG defines it, written
/// independently of the crate: all digits, or `0x`/`0X` and hex digits.
fn numeric_label(label: &str) -> bool {
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

fn is_lower_ascii(s: &str) -> bool {
    s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_host(s: &str) {
    let parsed = Host::parse(s);
    // Case never changes the outcome (ASCII case only: the rest is refused).
    let upper = Host::parse(&s.to_ascii_uppercase());
    let lower = Host::parse(&s.to_ascii_lowercase());
    match &parsed {
        Ok(h) => {
            assert_eq!(upper.as_ref().ok(), Some(h), "upper case of {s:?}");
            assert_eq!(lower.as_ref().ok(), Some(h), "lower case of {s:?}");
        }
        Err(_) => {
            assert!(upper.is_err(), "upper case of refused {s:?} is accepted");
            assert!(lower.is_err(), "lower case of refused {s:?} is accepted");
            // Displaying the error must not panic.
            let _ = parsed.as_ref().map_err(|e| e.to_string());
            return;
        }
    }
    let Ok(h) = parsed else { return };
    let t = h.as_str();
    assert!(!t.is_empty());
    assert!(is_lower_ascii(t), "{t:?} is not lower-case ASCII");
    assert!(!t.ends_with('.'), "{t:?} ends with a dot");
    assert_eq!(h.to_string(), t);
    // Idempotent.
    assert_eq!(Host::parse(t).as_ref(), Ok(&h), "{t:?} does not re-parse");
    match h.kind() {
        HostKind::Name => {
            assert!(h.is_name());
            assert!(t.len() <= MAX_NAME_LEN, "{t:?} too long");
            for label in t.split('.') {
                assert!((1..=MAX_LABEL_LEN).contains(&label.len()), "{t:?}");
                assert!(
                    label.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'),
                    "{t:?} holds a character outside [a-z0-9_-]"
                );
            }
            let last = t.rsplit('.').next().unwrap_or(t);
            assert!(!numeric_label(last), "{t:?} ends in a number");
            // A name is the input, case folded, minus one trailing dot.
            let bare = s.strip_suffix('.').unwrap_or(s);
            assert!(bare.eq_ignore_ascii_case(t), "{s:?} became {t:?}");
        }
        HostKind::Ipv4(addr) => {
            assert!(!h.is_name());
            assert_eq!(t, addr.to_string());
            assert_eq!(h, Host::from_ipv4(addr));
            let last = s
                .strip_suffix('.')
                .unwrap_or(s)
                .rsplit('.')
                .next()
                .unwrap_or("");
            assert!(numeric_label(last), "{s:?} became an address");
        }
        HostKind::Ipv6(addr) => {
            assert!(!h.is_name());
            assert_eq!(t, format!("[{addr}]"));
            assert!(s.starts_with('[') && s.ends_with(']'), "{s:?} became IPv6");
        }
    }
    // One trailing dot is dropped (names and IPv4 only).
    if !s.ends_with('.') && !matches!(h.kind(), HostKind::Ipv6(_)) {
        let dotted = format!("{s}.");
        assert_eq!(Host::parse(&dotted).as_ref(), Ok(&h), "{dotted:?}");
    }
    // A valid host is a valid authority without a port, and with one.
    let a =
        Authority::parse(s).unwrap_or_else(|e| panic!("{s:?} is a host but not an authority: {e}"));
    assert_eq!((&a.host, a.port), (&h, None));
    let with_port = format!("{t}:443");
    let a = Authority::parse(&with_port).unwrap_or_else(|e| panic!("{with_port:?}: {e}"));
    assert_eq!((&a.host, a.port), (&h, Some(443)));
}

fn check_authority(s: &str) {
    let Ok(a) = Authority::parse(s) else {
        return;
    };
    assert_ne!(a.port, Some(0), "{s:?} has port 0");
    let rendered = a.to_string();
    assert_eq!(
        Authority::parse(&rendered).as_ref(),
        Ok(&a),
        "{s:?} rendered as {rendered:?} does not re-parse"
    );
    let host_part = match a.port {
        Some(port) => {
            let i = s
                .rfind(':')
                .unwrap_or_else(|| panic!("{s:?}: a port without ':'"));
            let digits = &s[i + 1..];
            assert!(
                digits.bytes().all(|b| b.is_ascii_digit()),
                "{s:?}: port {digits:?}"
            );
            assert_eq!(digits.parse::<u16>().ok(), Some(port), "{s:?}");
            &s[..i]
        }
        None => s,
    };
    assert_eq!(Host::parse(host_part).as_ref(), Ok(&a.host), "{s:?}");
}

fn check_pattern(s: &str) {
    let parsed = HostPattern::parse(s);
    let upper = HostPattern::parse(&s.to_ascii_uppercase());
    let p = match parsed {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            assert!(
                upper.is_err(),
                "upper case of refused entry {s:?} is accepted"
            );
            cross_check_host_as_entry(s);
            return;
        }
    };
    assert_eq!(upper.as_ref(), Ok(&p), "upper case of {s:?}");
    let rendered = p.to_string();
    assert!(is_lower_ascii(&rendered), "{rendered:?}");
    assert_eq!(
        HostPattern::parse(&rendered).as_ref(),
        Ok(&p),
        "{s:?} rendered as {rendered:?} does not re-parse"
    );
    assert!(p.overlaps(&p), "{rendered:?} does not overlap itself");
    match &p {
        HostPattern::Exact(name) => {
            ldh_invariants(name);
            assert_eq!(p.key(), &**name);
            let h = Host::parse(name).unwrap_or_else(|e| panic!("entry {name:?} is no host: {e}"));
            assert!(h.is_name() && h.as_str() == &**name, "{name:?}");
            assert!(p.matches(&h), "{name:?} does not match itself");
            if let Ok(sub) = Host::parse(&format!("a.{name}")) {
                assert!(!p.matches(&sub), "{name:?} matches a subdomain");
            }
        }
        HostPattern::Wildcard(domain) => {
            ldh_invariants(domain);
            assert_eq!(rendered, format!("*.{domain}"));
            assert_eq!(p.key(), &**domain);
            let bare = Host::parse(domain).unwrap_or_else(|e| panic!("domain {domain:?}: {e}"));
            assert!(!p.matches(&bare), "{rendered:?} matches its own domain");
            for prefix in ["a.", "a.b.", "x-y.", "_z."] {
                if let Ok(sub) = Host::parse(&format!("{prefix}{domain}")) {
                    assert!(p.matches(&sub), "{rendered:?} misses {sub}");
                }
            }
            if let Ok(glued) = Host::parse(&format!("a{domain}")) {
                assert!(!p.matches(&glued), "{rendered:?} matches {glued}");
            }
            let exact = HostPattern::Exact(format!("a.{domain}").into());
            if format!("a.{domain}").len() <= MAX_NAME_LEN {
                assert!(p.overlaps(&exact) && exact.overlaps(&p));
            }
            let own = HostPattern::Exact(domain.clone());
            assert!(!p.overlaps(&own) && !own.overlaps(&p), "{rendered:?}");
        }
        HostPattern::Ipv4(addr) => {
            assert_eq!(rendered, addr.to_string());
            assert_eq!(p.key(), addr.to_string());
            assert!(p.matches(&Host::from_ipv4(*addr)));
            let other = Ipv4Addr::from(u32::from(*addr).wrapping_add(1));
            assert!(!p.matches(&Host::from_ipv4(other)));
            // Every WHATWG spelling of the address matches: the 32-bit number.
            let number = Host::parse(&u32::from(*addr).to_string())
                .unwrap_or_else(|e| panic!("{addr} as a number: {e}"));
            assert!(p.matches(&number));
        }
    }
}

/// The documented invariants of an entry's name: lower-case LDH, labels
/// 1-63 bytes not starting or ending with `-`, at most 253 bytes, not
/// ending in a number.
fn ldh_invariants(name: &str) {
    assert!(name.len() <= MAX_NAME_LEN, "{name:?}");
    for label in name.split('.') {
        assert!((1..=MAX_LABEL_LEN).contains(&label.len()), "{name:?}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{name:?}"
        );
        assert!(!label.starts_with('-') && !label.ends_with('-'), "{name:?}");
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    assert!(!numeric_label(last), "{name:?} ends in a number");
}

/// A refused entry that is a plain LDH host name (or dotted quad) must
/// have been refused for a reason a host does not have.
fn cross_check_host_as_entry(s: &str) {
    let Ok(h) = Host::parse(s) else { return };
    let plain = !s.ends_with('.')
        && s.split('.').all(|l| {
            !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    match h.kind() {
        HostKind::Name if plain => panic!("{s:?} is a plain host name but no entry"),
        HostKind::Ipv4(a) if a.to_string() == s => panic!("{s:?} is a dotted quad but no entry"),
        _ => {}
    }
}

/// Compiles the words that are entries and compares every lookup with the
/// naive scan.
fn check_matcher(words: &[&str]) {
    let mut entries: Vec<(HostPattern, u32)> = Vec::new();
    let mut always: Vec<u32> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        // A few ids repeat, so that one id stands for several entries.
        let id = (i % 8) as u32;
        if *word == "!" {
            always.push(100 + id);
        } else if let Ok(p) = HostPattern::parse(word) {
            entries.push((p, id));
        }
    }
    if entries.is_empty() && always.is_empty() {
        return;
    }
    let mut builder = HostSetBuilder::new();
    for (p, id) in &entries {
        builder.insert(p, *id);
    }
    for id in &always {
        builder.always(*id);
    }
    let set = builder.build();
    assert_eq!(set.len(), entries.len());
    assert_eq!(set.is_empty(), entries.is_empty());

    // Hosts: the words themselves, and around each entry's key.
    let mut candidates: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    for (p, _) in &entries {
        let key = p.key();
        candidates.push(key.clone());
        candidates.push(format!("a.{key}"));
        candidates.push(format!("a.b.{key}"));
        candidates.push(format!("x{key}"));
        candidates.push(key.to_ascii_uppercase());
        if let Some((_, parent)) = key.split_once('.') {
            candidates.push(parent.to_owned());
            candidates.push(format!("z.{parent}"));
        }
    }
    candidates.push("[::1]".to_owned());
    for candidate in &candidates {
        let Ok(host) = Host::parse(candidate) else {
            continue;
        };
        let mut naive: Vec<u32> = entries
            .iter()
            .filter(|(p, _)| p.matches(&host))
            .map(|(_, id)| *id)
            .chain(always.iter().copied())
            .collect();
        naive.sort_unstable();
        naive.dedup();
        let got = set.lookup(&host);
        assert_eq!(
            got,
            &naive[..],
            "lookup of {host} disagrees with the naive scan of {:?}",
            entries
                .iter()
                .map(|(p, id)| format!("{p}={id}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(set.matches(&host), !naive.is_empty());
    }
}
