//! Compiled only under #[cfg(test)], from the parent module.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

use super::*;

const PH: &str = "PH_scrub_0123456789abcdef";
/// `"`, `\`, `/`, `%`, space, `<`, `&`, and `>`/`?` runs that give `+` and
/// `/` in standard base64.
const NASTY: &str = r#"k3y"q\r/s%t u<v&w>>>???~end"#;

fn patterns_for(secret: &str) -> Vec<ScrubPattern> {
    let s = Secret::new(secret.to_owned());
    scrub_patterns(&[(7, &s, PH)])
}

fn scrub(patterns: &[ScrubPattern], text: &[u8]) -> Vec<u8> {
    let out = scrub_value(patterns, text).unwrap_or_else(|| panic!("nothing found"));
    assert_eq!(Some(&out), with_automaton(patterns, text).as_ref());
    out
}

/// [`scrub_value_with`] over an automaton built as `Bodies` builds it.
fn with_automaton(patterns: &[ScrubPattern], text: &[u8]) -> Option<Vec<u8>> {
    let needles: Vec<&[u8]> = patterns.iter().map(|p| p.needle.as_slice()).collect();
    let automaton = Patterns::new(&needles).unwrap();
    scrub_value_with(&automaton, patterns, text)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The automaton finds what the definition finds, with secrets that
    /// share prefixes, repeat, and contain one another.
    #[test]
    fn the_automaton_agrees_with_the_definition(
        secrets in proptest::collection::vec("[ab/+=]{1,6}", 1..5),
        pieces in proptest::collection::vec((0usize..8, "[abc/+= %]{0,4}"), 0..12),
    ) {
        let owned: Vec<Secret> = secrets.iter().map(|s| Secret::new(s.clone())).collect();
        // A placeholder per credential, so that a tie between equal
        // needles shows in the output.
        let placeholders: Vec<String> = (0..owned.len()).map(|i| format!("PH{i}_")).collect();
        let list: Vec<(u32, &Secret, &str)> = owned
            .iter()
            .zip(&placeholders)
            .enumerate()
            .map(|(i, (s, p))| (u32::try_from(i).unwrap(), s, p.as_str()))
            .collect();
        let patterns = scrub_patterns(&list);
        let mut text = Vec::new();
        for (pick, filler) in &pieces {
            if let Some(p) = patterns.get(*pick % patterns.len().max(1)) {
                text.extend_from_slice(&p.needle);
            }
            text.extend_from_slice(filler.as_bytes());
        }
        proptest::prop_assert_eq!(scrub_value(&patterns, &text), with_automaton(&patterns, &text));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn needle_of(patterns: &[ScrubPattern], form: Form) -> &[u8] {
    let p = patterns.iter().find(|p| p.form == form).unwrap();
    &p.needle
}

#[test]
fn raw_found_in_text_and_replaced() {
    let patterns = patterns_for(NASTY);
    let text = format!("before {NASTY} middle {NASTY}after");
    let out = scrub(&patterns, text.as_bytes());
    assert_eq!(out, format!("before {PH} middle {PH}after").as_bytes());
}

#[test]
fn percent_forms_decode_to_the_placeholder() {
    let patterns = patterns_for(NASTY);
    let upper = needle_of(&patterns, Form::PercentUpper);
    let lower = needle_of(&patterns, Form::PercentLower);
    assert_eq!(
        upper,
        br"k3y%22q%5Cr%2Fs%25t%20u%3Cv%26w%3E%3E%3E%3F%3F%3F~end"
    );
    assert_eq!(
        lower,
        br"k3y%22q%5cr%2fs%25t%20u%3cv%26w%3e%3e%3e%3f%3f%3f~end"
    );
    for needle in [upper, lower] {
        assert_eq!(percent_decode(needle), NASTY.as_bytes());
        let text = [b"/cb?token=".as_slice(), needle, b"&x=%41"].concat();
        let out = percent_decode(&scrub(&patterns, &text));
        assert!(!contains(&out, NASTY.as_bytes()));
        assert_eq!(out, format!("/cb?token={PH}&x=A").as_bytes());
    }
}

#[test]
fn json_forms_decode_to_the_placeholder() {
    let secrets = [NASTY, "tab\there-ctl\u{1}-päss-\u{2028}-🔑"];
    for secret in secrets {
        let patterns = patterns_for(secret);
        let plain = serde_json::to_string(secret).unwrap();
        let variants = [
            plain.clone(),
            plain.replace('/', "\\/"),
            plain
                .replace('<', "\\u003c")
                .replace('&', "\\u0026")
                .replace('>', "\\u003e")
                .replace('\u{2028}', "\\u2028"),
            plain
                .replace('ä', "\\u00e4")
                .replace('🔑', "\\ud83d\\udd11")
                .replace('\u{2028}', "\\u2028"),
        ];
        for json in variants {
            let doc = format!(r#"{{"echo":{json},"n":1}}"#);
            let out = String::from_utf8(scrub(&patterns, doc.as_bytes())).unwrap();
            let value: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(value["echo"], PH, "{json}");
            assert!(!out.contains(secret));
        }
    }
}

#[test]
fn forms_equal_to_raw_are_left_out() {
    let patterns = patterns_for("abcDEF123-_.~xyz0");
    assert!(patterns.iter().all(|p| !matches!(
        p.form,
        Form::PercentUpper | Form::PercentLower | Form::JsonEscaped
    )));
    // Digits only: one percent form, no lower-case one.
    let patterns = patterns_for("with space 1234");
    assert!(patterns.iter().any(|p| p.form == Form::PercentUpper));
    assert!(patterns.iter().all(|p| p.form != Form::PercentLower));
    // No `+` or `/` in any standard core: no URL-safe form.
    assert!(patterns
        .iter()
        .all(|p| !matches!(p.form, Form::Base64Url(_))));
    for patterns in [patterns_for(NASTY), patterns] {
        for (i, p) in patterns.iter().enumerate() {
            assert!(patterns[..i].iter().all(|q| q.needle != p.needle));
        }
    }
}

#[test]
fn base64_cores_at_every_alignment() {
    let secret = NASTY.as_bytes();
    let patterns = patterns_for(NASTY);
    let forms: Vec<Form> = patterns.iter().map(|p| p.form).collect();
    for a in 0..3 {
        assert!(forms.contains(&Form::Base64Std(a)) && forms.contains(&Form::Base64Url(a)));
    }
    let cores: Vec<&[u8]> = patterns
        .iter()
        .filter(|p| matches!(p.form, Form::Base64Std(_) | Form::Base64Url(_)))
        .map(|p| p.needle.as_slice())
        .collect();
    let fillers = b"\x00\xff\x10a\x7f=\xfe";
    for engine in [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        for prefix in 0..=6 {
            for suffix in 0..=4 {
                let (pre, post) = (&fillers[..prefix], &fillers[fillers.len() - suffix..]);
                let blob = [pre, secret, post].concat();
                let encoded = engine.encode(&blob);
                let out = scrub(&patterns, encoded.as_bytes());
                assert_eq!(out.len(), encoded.len());
                assert!(
                    cores.iter().all(|c| !contains(&out, c)),
                    "{prefix} {suffix}"
                );
                let decoded = engine.decode(&out).unwrap();
                assert_eq!(decoded.len(), blob.len());
                assert_eq!(&decoded[..prefix], pre);
                assert_eq!(&decoded[prefix + secret.len()..], post);
                let middle = &decoded[prefix..prefix + secret.len()];
                assert!(!contains(&decoded, secret));
                // Every byte reads as a placeholder character, the inner
                // ones as the placeholder itself.
                assert!(middle.iter().all(|b| PLACEHOLDER_ALPHABET.contains(b)));
                let ph = PH.as_bytes().iter().cycle();
                let inner = middle[1..middle.len() - 1].iter().zip(ph.skip(1));
                assert!(inner.clone().all(|(m, p)| m == p), "{middle:?}");
            }
        }
    }
}

#[test]
fn base64_in_basic_authorization() {
    let patterns = patterns_for(NASTY);
    let value = format!("Basic {}", STANDARD.encode(format!("user:{NASTY}")));
    let out = scrub(&patterns, value.as_bytes());
    let decoded = STANDARD.decode(&out[6..]).unwrap();
    assert!(decoded.starts_with(b"user:"));
    assert!(!contains(&decoded, NASTY.as_bytes()));
}

#[test]
fn short_secrets() {
    let three = patterns_for("a/b");
    assert_eq!(three.len(), 1);
    assert_eq!(three[0].form, Form::Raw);
    // Six bytes: only alignment 0 has a core of 8 characters.
    let six = patterns_for("abcdef");
    let forms: Vec<Form> = six.iter().map(|p| p.form).collect();
    assert_eq!(forms, [Form::Raw, Form::Base64Std(0)]);
    for p in patterns_for(NASTY).iter().chain(&six) {
        if matches!(p.form, Form::Base64Std(_) | Form::Base64Url(_)) {
            assert!(p.needle.len() >= MIN_BASE64_CORE);
            assert_eq!(p.needle.len(), p.replacement.len());
        }
    }
}

#[test]
fn nothing_found_is_none() {
    let patterns = patterns_for(NASTY);
    assert!(scrub_value(&patterns, b"application/json; charset=utf-8").is_none());
    assert!(scrub_value(&patterns, b"").is_none());
    assert!(scrub_value(&[], b"k3y").is_none());
}

#[test]
fn leftmost_longest_across_credentials_and_order() {
    let (short, long) = (
        Secret::new("abcdef12".into()),
        Secret::new("abcdef1234".into()),
    );
    let patterns = scrub_patterns(&[
        (3, &long, "PH_LONG_AAAAAAAAAAAA"),
        (1, &short, "PH_SHORT_BBBBBBBBBBB"),
    ]);
    let keys: Vec<(u32, Form)> = patterns.iter().map(|p| (p.credential, p.form)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys[0], (1, Form::Raw));
    let out = scrub(&patterns, b"x abcdef1234 abcdef12 abcdef123");
    assert_eq!(
        out,
        b"x PH_LONG_AAAAAAAAAAAA PH_SHORT_BBBBBBBBBBB PH_SHORT_BBBBBBBBBBB3"
    );
}

#[test]
fn debug_shows_no_needle() {
    let patterns = patterns_for(NASTY);
    let shown = format!("{patterns:?}");
    assert!(
        !shown.contains("k3y") && !shown.contains("107, 51"),
        "{shown}"
    );
    assert!(shown.contains("needle_len"));
}
