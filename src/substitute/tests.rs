//! Compiled only under #[cfg(test)], from the parent module.
//! Construction and its refusals; the shared fixtures of the header tests
//! (`headers/tests.rs`).

use std::ffi::OsString;
use std::path::Path;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::config::{parse, Sources};
use crate::placeholder::derive;

pub(super) const PA: &str = "PH_AAAAAAAAAAAAAAAA";
pub(super) const SA: &str = "secret-a-value";
pub(super) const SB: &str = "secret-b-value";
pub(super) const SBODY: &str = "secret-body-value";
pub(super) const NET: &str = r#""networking": {"type": "unrestricted"}"#;

/// 0: A (pinned placeholder), 1: B (derived), 2: body-only, 3: static
/// bearer, 4: archived.
pub(super) fn config() -> Config {
    let text = format!(
        r#"{{"credentials": [
        {{"id": "vcrd_a", "auth": {{"type": "environment_variable", "secret_name": "A", "secret_value": "{SA}", "placeholder": "{PA}", {NET}}}}},
        {{"id": "vcrd_b", "auth": {{"type": "environment_variable", "secret_name": "B", "secret_value": "{SB}", {NET}}}}},
        {{"id": "vcrd_body", "auth": {{"type": "environment_variable", "secret_name": "C", "secret_value": "{SBODY}", {NET},
            "injection_location": {{"header": false, "body": true}}}}}},
        {{"id": "vcrd_sb", "auth": {{"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "tok-static-bearer"}}}},
        {{"id": "vcrd_old", "archived_at": "2024-01-01T00:00:00Z", "auth": {{"type": "environment_variable", "secret_name": "D", "secret_value": "secret-old", {NET}}}}}
    ]}}"#
    );
    let env = |_: &str| None::<OsString>;
    match parse(
        &text,
        &Sources {
            base_dir: Path::new("."),
            env: &env,
        },
    ) {
        Ok(c) => c,
        Err(p) => panic!("unexpected problems:\n{p}"),
    }
}

pub(super) fn key() -> PlaceholderKey {
    PlaceholderKey::from_bytes([5; 32])
}

pub(super) fn subs() -> Substitutions {
    Substitutions::new(&config(), &key()).unwrap()
}

pub(super) fn pb() -> String {
    derive(&key(), "vlt_local", "vcrd_b")
}

pub(super) fn pbody() -> String {
    derive(&key(), "vlt_local", "vcrd_body")
}

pub(super) fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (name, value) in pairs {
        m.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    m
}

pub(super) fn get<'a>(m: &'a HeaderMap, name: &str) -> &'a [u8] {
    m.get(name).unwrap().as_bytes()
}

pub(super) fn report(substituted: &[u32], passed: &[u32]) -> HeaderReport {
    HeaderReport {
        substituted: substituted.to_vec(),
        passed: passed.to_vec(),
    }
}

pub(super) fn set_secret(c: &mut Config, i: usize, value: &str) {
    if let Auth::EnvironmentVariable(a) = &mut c.credentials[i].auth {
        a.secret_value = Secret::new(value.into());
    }
}

pub(super) fn set_placeholder(c: &mut Config, i: usize, value: &str) {
    if let Auth::EnvironmentVariable(a) = &mut c.credentials[i].auth {
        a.placeholder = Some(value.into());
    }
}

#[test]
fn placeholders_by_credential_index() {
    let s = subs();
    assert_eq!(s.placeholder(0), Some(PA), "pinned placeholder used");
    assert_eq!(s.placeholder(1), Some(pb().as_str()));
    assert_eq!(s.placeholder(2), Some(pbody().as_str()));
    assert_eq!(s.placeholder(3), None, "static bearer has none");
    assert_eq!(
        s.placeholder(4),
        Some(derive(&key(), "vlt_local", "vcrd_old").as_str()),
        "archived kept"
    );
    assert_eq!(s.placeholder(99), None);
}

#[test]
fn overlapping_placeholders_are_refused() {
    for (i, p) in [
        (1, PA.to_owned()),
        (1, format!("x{PA}x")),
        (0, format!("{}_x", pb())),
    ] {
        let mut c = config();
        set_placeholder(&mut c, i, &p);
        let err = Substitutions::new(&c, &key()).unwrap_err();
        assert!(matches!(err, SubstituteError::Overlap { .. }), "{err}");
        assert!(!err.to_string().contains(&p), "{err}");
    }
}

#[test]
fn placeholders_and_secrets_must_not_contain_one_another() {
    let cases: [(usize, &str, Option<&str>); 3] = [
        (1, "PH_with_secret-a-value_in", None),
        (0, PA, Some("prefix-PH_AAAAAAAAAAAAAAAA-suffix")),
        (1, "PH_has_tok-static-bearer_", None),
    ];
    for (i, placeholder, secret) in cases {
        let mut c = config();
        set_placeholder(&mut c, i, placeholder);
        if let Some(secret) = secret {
            set_secret(&mut c, 2, secret);
        }
        let err = Substitutions::new(&c, &key()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, SubstituteError::SecretOverlap { .. }),
            "{text}"
        );
        assert!(
            !text.contains("secret-a-value")
                && !text.contains("tok-static")
                && !text.contains("PH_"),
            "{text}"
        );
    }
}

#[test]
fn unusable_placeholder_or_empty_secret_is_refused() {
    let mut c = config();
    set_placeholder(&mut c, 1, "short");
    assert!(
        matches!(Substitutions::new(&c, &key()), Err(SubstituteError::BadPlaceholder(r)) if r.id == "vcrd_b")
    );
    let mut c = config();
    set_secret(&mut c, 1, "");
    assert!(
        matches!(Substitutions::new(&c, &key()), Err(SubstituteError::EmptySecret(r)) if r.index == 1)
    );
}

#[test]
fn debug_shows_ids_only() {
    let shown = format!("{:?}", subs());
    assert!(shown.contains("vcrd_a"), "{shown}");
    for hidden in [SA, SB, PA, &pb()] {
        assert!(!shown.contains(hidden), "{shown}");
    }
}

#[test]
fn no_substitutable_credential_means_no_work() {
    let mut c = config();
    c.credentials.retain(|c| c.environment_variable().is_none());
    let s = Substitutions::new(&c, &key()).unwrap();
    let mut m = map(&[("x-a", PA.as_bytes())]);
    assert_eq!(s.headers(&mut m, &[0]).unwrap(), report(&[], &[]));
    assert_eq!(s.placeholder(0), None);
}
