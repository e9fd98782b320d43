//! The TLS client configuration keyhole uses towards upstream servers.
//!
//! Trusted roots are the system's, read with `rustls-native-certs`, plus
//! every certificate of each `--upstream-ca` file. `rustls-native-certs` was
//! chosen over the compiled-in `webpki-roots` because it follows the
//! machine's trust store: corporate and private roots an administrator
//! installed, and `SSL_CERT_FILE` / `SSL_CERT_DIR` overrides, are honoured,
//! and they are the same roots keyhole hands to sandboxes in its CA bundle,
//! so a host verifies the same whether it is intercepted or tunnelled. The
//! price is that a machine without a trust store has no roots; keyhole then
//! refuses to start rather than verify nothing, and says to pass
//! `--upstream-ca`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::{provider, TlsError};

/// The client configuration for upstream connections: system roots plus
/// `extra_roots` (PEM files), ALPN `h2` then `http/1.1`, TLS 1.2 and 1.3.
///
/// A missing, unreadable or certificate-less extra file is an error; an
/// unparsable system certificate is skipped (and logged at debug level).
pub fn client_config(extra_roots: &[PathBuf]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in native_roots() {
        if let Err(e) = roots.add(cert) {
            tracing::debug!(error = %e, "skipping a system root certificate rustls cannot use");
        }
    }
    for path in extra_roots {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::UpstreamCa {
                path: path.clone(),
                reason: format!("a certificate cannot be used as a trust anchor ({e})"),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    tracing::debug!(roots = roots.len(), "upstream trust store loaded");
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The system's trusted roots, PEM-encoded one after another (for the CA
/// bundle). Empty when the system has none.
pub fn system_roots_pem() -> String {
    let mut out = String::new();
    for cert in native_roots() {
        push_pem(&mut out, &cert);
    }
    out
}

/// The system's roots as DER; load errors are logged, not fatal.
fn native_roots() -> Vec<CertificateDer<'static>> {
    let result = rustls_native_certs::load_native_certs();
    for error in &result.errors {
        tracing::debug!(%error, "could not read part of the system trust store");
    }
    result.certs
}

/// Every CERTIFICATE block of a PEM file; at least one.
fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::UpstreamCa {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(error("the file holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Appends `der` as a PEM CERTIFICATE block with 64-character lines.
pub(super) fn push_pem(out: &mut String, der: &[u8]) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_root_is_trusted_and_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::CertificateAuthority::load_or_create(dir.path()).unwrap();
        let pem = dir.path().join("extra.pem");
        std::fs::write(&pem, ca.cert_pem()).unwrap();
        let config = client_config(std::slice::from_ref(&pem)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        let missing = dir.path().join("missing.pem");
        let err = client_config(&[missing]).unwrap_err();
        assert!(matches!(err, TlsError::UpstreamCa { .. }), "{err}");
        assert!(err.to_string().contains("--upstream-ca"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&[empty]).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE block"), "{err}");
    }

    #[test]
    fn pem_round_trips() {
        let der = vec![7u8; 100];
        let mut pem = String::new();
        push_pem(&mut pem, &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }
}
