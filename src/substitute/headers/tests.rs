//! Compiled only under #[cfg(test)], from the parent module.
//! Header substitution, case by case: what is replaced, what passes, and
//! what is never touched.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue};

use crate::substitute::tests::*;
use crate::substitute::Substitutions;

#[test]
fn allowed_header_credential_is_replaced() {
    let s = subs();
    let mut m = map(&[("authorization", format!("Bearer {PA}").as_bytes())]);
    assert_eq!(s.headers(&mut m, &[0]).unwrap(), report(&[0], &[]));
    assert_eq!(get(&m, "authorization"), format!("Bearer {SA}").as_bytes());
    assert!(m.get("authorization").unwrap().is_sensitive());
    assert!(
        !format!("{m:?}").contains(SA),
        "Debug hides the substituted value"
    );
}

#[test]
fn body_only_or_not_allowed_passes_unchanged() {
    let s = subs();
    let body = pbody();
    for allowed in [&[2u32][..], &[]] {
        let mut m = map(&[("x-key", body.as_bytes()), ("x-a", PA.as_bytes())]);
        let r = s.headers(&mut m, allowed).unwrap();
        assert_eq!(r.passed, [0, 2]);
        assert!(r.substituted.is_empty());
        assert_eq!(get(&m, "x-key"), body.as_bytes());
        assert_eq!(get(&m, "x-a"), PA.as_bytes());
    }
}

#[test]
fn cross_credential_never_gets_another_secret() {
    let s = subs();
    let mut m = map(&[
        ("authorization", format!("Bearer {PA}").as_bytes()),
        ("x-other", b"plain"),
    ]);
    assert_eq!(s.headers(&mut m, &[1]).unwrap(), report(&[], &[0]));
    assert_eq!(get(&m, "authorization"), format!("Bearer {PA}").as_bytes());
    for (_, v) in &m {
        let v = String::from_utf8_lossy(v.as_bytes());
        assert!(!v.contains(SB) && !v.contains(SA), "{v}");
    }
}

#[test]
fn two_credentials_each_get_their_own() {
    let s = subs();
    let both = format!("{PA},{}", pb());
    let mut m = map(&[
        ("x-a", PA.as_bytes()),
        ("x-b", pb().as_bytes()),
        ("x-both", both.as_bytes()),
    ]);
    assert_eq!(s.headers(&mut m, &[0, 1]).unwrap(), report(&[0, 1], &[]));
    assert_eq!(get(&m, "x-a"), SA.as_bytes());
    assert_eq!(get(&m, "x-b"), SB.as_bytes());
    assert_eq!(get(&m, "x-both"), format!("{SA},{SB}").as_bytes());
}

#[test]
fn names_host_and_framing_headers_are_untouched() {
    let s = subs();
    let name = format!("x-{}", pb());
    let mut pairs: Vec<(&str, &[u8])> = vec![(name.as_str(), b"v")];
    let skipped = [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    let value = format!("Basic {PA}");
    for h in skipped {
        pairs.push((h, value.as_bytes()));
    }
    let mut m = map(&pairs);
    let before = m.clone();
    assert_eq!(s.headers(&mut m, &[0, 1]).unwrap(), report(&[], &[0, 1]));
    assert_eq!(m, before);
}

#[test]
fn basic_auth_payload_is_substituted() {
    let s = subs();
    // (user:pass, with padding?) covering password, user, padding or not.
    let cases = [
        (format!("ab:{PA}"), true),
        (format!("ab:{PA}"), false),
        (format!("{PA}:x-oauth2"), true),
        (format!("{PA}:pw"), false),
    ];
    for (plain, padded) in cases {
        let encoded = if padded {
            STANDARD.encode(&plain)
        } else {
            STANDARD_NO_PAD.encode(&plain)
        };
        assert_eq!(
            padded,
            encoded.ends_with('='),
            "the case covers padding: {encoded}"
        );
        for scheme in ["Basic", "basic", "BASIC"] {
            let mut m = map(&[("authorization", format!("{scheme} {encoded}").as_bytes())]);
            assert_eq!(s.headers(&mut m, &[0]).unwrap(), report(&[0], &[]));
            let want = format!("{scheme} {}", STANDARD.encode(plain.replace(PA, SA)));
            assert_eq!(get(&m, "authorization"), want.as_bytes());
        }
    }
}

#[test]
fn basic_auth_with_a_passed_placeholder_is_unchanged() {
    let s = subs();
    let value = format!("Basic {}", STANDARD.encode(format!("u:{PA}")));
    let mut m = map(&[("authorization", value.as_bytes())]);
    assert_eq!(s.headers(&mut m, &[1]).unwrap(), report(&[], &[0]));
    assert_eq!(get(&m, "authorization"), value.as_bytes());
}

#[test]
fn basic_auth_that_does_not_decode_is_opaque_text() {
    let s = subs();
    for value in ["Basic !!!not-base64", "Basic", "Basic   ", "Basically x"] {
        let mut m = map(&[("authorization", value.as_bytes())]);
        assert_eq!(s.headers(&mut m, &[0]).unwrap(), report(&[], &[]));
        assert_eq!(get(&m, "authorization"), value.as_bytes());
    }
    // A raw placeholder after "Basic" is text, substituted as such.
    let mut m = map(&[("authorization", format!("Basic {PA}").as_bytes())]);
    assert_eq!(s.headers(&mut m, &[0]).unwrap(), report(&[0], &[]));
    assert_eq!(get(&m, "authorization"), format!("Basic {SA}").as_bytes());
}

#[test]
fn every_value_of_a_repeated_header_is_handled() {
    let s = subs();
    let mut m = map(&[
        ("x-multi", PA.as_bytes()),
        ("x-multi", b"none"),
        ("x-multi", pb().as_bytes()),
        ("x-last", PA.as_bytes()),
    ]);
    assert_eq!(s.headers(&mut m, &[0, 1]).unwrap(), report(&[0, 1], &[]));
    let values: Vec<&[u8]> = m
        .get_all("x-multi")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    assert_eq!(values, [SA.as_bytes(), b"none", SB.as_bytes()]);
    assert_eq!(get(&m, "x-last"), SA.as_bytes());
}

#[test]
fn repeated_placeholder_and_raw_bytes_around_it() {
    let s = subs();
    let twice = format!("{PA} and {PA}");
    let raw = [b"\xff\xfe".as_slice(), PA.as_bytes(), b"\x80\t;"].concat();
    let mut m = map(&[("x-twice", twice.as_bytes()), ("x-raw", &raw)]);
    assert_eq!(s.headers(&mut m, &[0]).unwrap(), report(&[0], &[]));
    assert_eq!(get(&m, "x-twice"), format!("{SA} and {SA}").as_bytes());
    assert_eq!(
        get(&m, "x-raw"),
        [b"\xff\xfe".as_slice(), SA.as_bytes(), b"\x80\t;"].concat()
    );
}

#[test]
fn values_without_placeholders_are_not_copied() {
    let s = subs();
    let mut m = HeaderMap::new();
    m.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
    m.insert(
        "authorization",
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    let before: Vec<*const u8> = m.values().map(|v| v.as_bytes().as_ptr()).collect();
    assert_eq!(s.headers(&mut m, &[0, 1]).unwrap(), report(&[], &[]));
    let after: Vec<*const u8> = m.values().map(|v| v.as_bytes().as_ptr()).collect();
    assert_eq!(before, after);
    assert_eq!(get(&m, "authorization"), b"Basic dXNlcjpwYXNz");
}

#[test]
fn control_character_secret_fails_closed() {
    let mut c = config();
    set_secret(&mut c, 0, "bad\u{1}secret");
    let s = Substitutions::new(&c, &key()).unwrap();
    let mut m = map(&[("x-b", pb().as_bytes()), ("x-a", PA.as_bytes())]);
    let before = m.clone();
    let err = s.headers(&mut m, &[0, 1]).unwrap_err().to_string();
    assert!(
        err.contains("credentials[0] (vcrd_a)") && !err.contains("bad"),
        "{err}"
    );
    assert_eq!(m, before, "nothing changed on error");
    // Not allowed there: passed, no error.
    assert_eq!(s.headers(&mut m, &[1]).unwrap(), report(&[1], &[0]));
}
