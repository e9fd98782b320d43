//! Compiled only under #[cfg(test)], from the parent module.
//! Derivation, the key file, and the per-credential list.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::config::{parse, Sources};

fn config(text: &str) -> Config {
    let env = |_: &str| None::<OsString>;
    match parse(
        text,
        &Sources {
            base_dir: Path::new("."),
            env: &env,
        },
    ) {
        Ok(c) => c,
        Err(p) => panic!("unexpected problems:\n{p}"),
    }
}

fn key(byte: u8) -> PlaceholderKey {
    PlaceholderKey::from_bytes([byte; KEY_LEN])
}

#[test]
fn derivation_is_stable_and_well_formed() {
    let p = derive(&key(1), "vlt_local", "vcrd_github");
    assert_eq!(p, derive(&key(1), "vlt_local", "vcrd_github"));
    assert_eq!(p.len(), PREFIX.len() + 32);
    let tail = p.strip_prefix(PREFIX).unwrap();
    assert!(
        tail.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{p}"
    );
    // Also a valid pinned placeholder, so it fits every rule pinned ones do.
    let mut problems = crate::model::Problems::default();
    crate::model::rules::placeholder("p", &p, &mut problems);
    assert!(problems.is_empty(), "{problems}");
}

#[test]
fn derivation_matches_a_fixed_vector() {
    // Computed independently (Python hmac + base64.b32encode, lowercased).
    // Placeholders live in users' sandboxes: this must never change.
    assert_eq!(
        derive(&key(1), "vlt_local", "vcrd_github"),
        "kh_ph_x7g7iby5mjqqi4ifpnid37hk7xkaxgs6"
    );
}

#[test]
fn derivation_differs_per_credential_vault_and_key() {
    let base = derive(&key(1), "vlt_local", "vcrd_a");
    assert_ne!(base, derive(&key(1), "vlt_local", "vcrd_b"));
    assert_ne!(base, derive(&key(1), "vlt_other", "vcrd_a"));
    assert_ne!(base, derive(&key(2), "vlt_local", "vcrd_a"));
    // The NUL separator keeps the vault/credential boundary unambiguous.
    assert_ne!(derive(&key(1), "ab", "c"), derive(&key(1), "a", "bc"));
}

#[test]
fn debug_shows_no_key() {
    let shown = format!("{:?}", key(0x41));
    assert_eq!(shown, "PlaceholderKey(<redacted>)");
}

#[test]
fn key_file_is_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = PlaceholderKey::load_or_create(&state).unwrap();
    let path = state.join(KEY_FILE);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), KEY_LEN as u64);
    assert_eq!(
        fs::read_dir(&state).unwrap().count(),
        1,
        "no temporary file left"
    );
    let again = PlaceholderKey::load_or_create(&state).unwrap();
    assert_eq!(derive(&first, "v", "c"), derive(&again, "v", "c"));
    // A different state directory gets a different key.
    let other = PlaceholderKey::load_or_create(&dir.path().join("other")).unwrap();
    assert_ne!(derive(&first, "v", "c"), derive(&other, "v", "c"));
}

#[test]
fn concurrent_first_starts_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let derived: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| derive(&PlaceholderKey::load_or_create(&state).unwrap(), "v", "c")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(derived.iter().all(|d| *d == derived[0]), "{derived:?}");
    assert_eq!(
        fs::read_dir(&state).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn exposed_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    PlaceholderKey::load_or_create(dir.path()).unwrap();
    let path = dir.path().join(KEY_FILE);
    for mode in [0o644, 0o640, 0o604, 0o620] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = PlaceholderKey::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("mode {mode:03o}")) && err.contains("chmod 600"),
            "{err}"
        );
    }
}

#[test]
fn wrong_size_key_file_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    for len in [0, 31, 33] {
        state::write_atomic(&path, &vec![7; len], 0o600).unwrap();
        let err = PlaceholderKey::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("({len} bytes)")) && err.contains("delete it"),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap().len(),
            len,
            "a bad key is never overwritten"
        );
    }
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = PlaceholderKey::load_or_create(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn existing_key_is_read_as_is() {
    let dir = tempfile::tempdir().unwrap();
    state::write_atomic(&dir.path().join(KEY_FILE), &[9; KEY_LEN], 0o600).unwrap();
    let loaded = PlaceholderKey::load_or_create(dir.path()).unwrap();
    assert_eq!(derive(&loaded, "v", "c"), derive(&key(9), "v", "c"));
}

#[test]
fn placeholders_follow_credential_order() {
    let net = r#""networking": {"type": "unrestricted"}"#;
    let c = config(&format!(
        r#"{{"credentials": [
            {{"id": "vcrd_a", "auth": {{"type": "environment_variable", "secret_name": "A", "secret_value": "sa", {net}}}}},
            {{"id": "vcrd_sb", "auth": {{"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "t"}}}},
            {{"id": "vcrd_p", "auth": {{"type": "environment_variable", "secret_name": "P", "secret_value": "sp", "placeholder": "kh_pinned_0123456789", {net}}}}}
        ]}}"#
    ));
    let k = key(3);
    let list = placeholders(&c, &k);
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0].as_deref(),
        Some(derive(&k, "vlt_local", "vcrd_a").as_str())
    );
    assert_eq!(list[1], None);
    assert_eq!(list[2].as_deref(), Some("kh_pinned_0123456789"));
}
