//! Compiled only under #[cfg(test)], from the parent module.
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn created_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = CertificateAuthority::load_or_create(&state).unwrap();
    assert_eq!(mode(&state.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&state), 0o700);
    let second = CertificateAuthority::load_or_create(&state).unwrap();
    assert_eq!(first.cert_pem(), second.cert_pem());
    assert_eq!(first.cert_der(), second.cert_der());
    assert_eq!(
        fs::read_to_string(CertificateAuthority::cert_path(&state)).unwrap(),
        first.cert_pem()
    );
    let names: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no staging file left: {names:?}");
}

#[test]
fn the_certificate_is_a_ca_and_valid_for_ten_years() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let facts = der::inspect(ca.cert_der()).unwrap();
    assert!(facts.is_ca && facts.can_sign_certs);
    let years = (facts.not_after - OffsetDateTime::now_utc()).whole_days() / 365;
    assert_eq!(years, 10);
    let key = fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!ca.cert_pem().contains("PRIVATE"));
    assert!(!format!("{ca:?}").contains("PRIVATE"));
}

#[test]
fn refuses_a_key_others_may_read() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(err, TlsError::KeyPermissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn refuses_a_key_of_another_ca() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(a.path()).unwrap();
    CertificateAuthority::load_or_create(b.path()).unwrap();
    fs::copy(b.path().join(KEY_FILE), a.path().join(KEY_FILE)).unwrap();
    let err = CertificateAuthority::load_or_create(a.path()).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn refuses_a_certificate_that_is_not_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    // A self-signed end-entity certificate on the CA's own key.
    let key_pem = fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    let key = KeyPair::from_pem(&key_pem).unwrap();
    let mut params = ca_params();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap();
    fs::write(dir.path().join(CERT_FILE), cert.pem()).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn refuses_half_a_ca_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::IncompleteCa { .. }), "{err}");
    assert!(
        !dir.path().join(KEY_FILE).exists(),
        "never replaced silently"
    );

    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    fs::write(dir.path().join(CERT_FILE), "garbage").unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::InvalidCa { .. }), "{err}");
}

#[test]
fn concurrent_creators_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                CertificateAuthority::load_or_create(&path).map(|ca| ca.cert_pem().to_owned())
            })
        })
        .collect();
    let pems: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert!(pems.iter().all(|p| p == &pems[0]));
    CertificateAuthority::load_or_create(&path).unwrap();
}

#[test]
fn never_signs_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let params = CertificateParams::new(vec!["example.com".to_owned()]).unwrap();
    let err = ca.sign(&params, ca.issuer.key()).unwrap_err();
    assert!(err.to_string().contains("CA's own key"), "{err}");
}
