//! The CA bundle handed to sandboxes: keyhole's CA, then the system roots.
//!
//! Clients given a bundle through `SSL_CERT_FILE` and friends usually trust
//! only that file. A bundle holding only keyhole's CA would break every
//! tunnelled host, which shows its real certificate; so the system roots
//! follow keyhole's CA. The file is rewritten on each call, so it follows
//! changes to the system trust store at the next start.

use std::path::{Path, PathBuf};

use super::{roots, CertificateAuthority, TlsError};
use crate::state;

/// File name of the bundle in the state directory.
pub const BUNDLE_FILE: &str = "ca-bundle.pem";

/// Writes `ca-bundle.pem` in `state_dir` (atomically, mode 0644): keyhole's
/// CA certificate first, then the system's roots. Returns its path.
pub fn write_bundle(state_dir: &Path, ca: &CertificateAuthority) -> Result<PathBuf, TlsError> {
    state::ensure_dir(state_dir)?;
    let mut text = String::from(ca.cert_pem());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&roots::system_roots_pem());
    let path = bundle_path(state_dir);
    state::write_atomic(&path, text.as_bytes(), 0o644)?;
    Ok(path)
}

/// Where the bundle lives in `state_dir`.
pub fn bundle_path(state_dir: &Path) -> PathBuf {
    state_dir.join(BUNDLE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bundle_starts_with_the_ca_and_holds_the_system_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let path = write_bundle(dir.path(), &ca).unwrap();
        assert_eq!(path, dir.path().join(BUNDLE_FILE));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(ca.cert_pem()));
        let certs: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(&certs[0], ca.cert_der());
        let system = roots::system_roots_pem();
        let system_count = CertificateDer::pem_slice_iter(system.as_bytes()).count();
        assert_eq!(certs.len(), 1 + system_count);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600);
        assert_eq!(mode & 0o022, 0, "never group/world writable");
    }
}
