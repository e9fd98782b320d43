//! Loading an existing CA, failing closed on anything doubtful.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rcgen::PKCS_ECDSA_P256_SHA256;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, PublicKeyData};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{der, random_serial, CertificateAuthority, BACKDATE};
use crate::state::StateError;
use crate::tls::{provider, TlsError};

/// The name of the probe certificate that checks a loaded CA.
const PROBE_NAME: &str = "ca-check.keyhole.invalid";

// === impl CertificateAuthority ===

impl CertificateAuthority {
    /// Builds the CA from the files' contents after checking that the
    /// certificate is a current CA and that the key is its key.
    pub(super) fn load(
        cert_path: &Path,
        cert: &[u8],
        key_path: &Path,
        key_pem: &str,
    ) -> Result<Self, TlsError> {
        let invalid = |path: &Path, reason: String| TlsError::InvalidCa {
            path: path.to_owned(),
            reason,
        };
        let cert_pem = std::str::from_utf8(cert)
            .map_err(|_| invalid(cert_path, "the file is not PEM text".into()))?;
        let cert_der = CertificateDer::from_pem_slice(cert)
            .map_err(|e| invalid(cert_path, format!("no PEM CERTIFICATE block ({e})")))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| invalid(key_path, format!("not a PKCS#8 PEM private key ({e})")))?;
        let facts = der::inspect(&cert_der).map_err(|reason| invalid(cert_path, reason))?;
        if !facts.is_ca {
            return Err(invalid(
                cert_path,
                "the certificate is not a CA (no basicConstraints CA:TRUE)".into(),
            ));
        }
        if !facts.can_sign_certs {
            return Err(invalid(
                cert_path,
                "the certificate's key usage does not allow keyCertSign".into(),
            ));
        }
        if facts.not_after <= OffsetDateTime::now_utc() {
            return Err(invalid(
                cert_path,
                format!("the certificate expired on {}", facts.not_after.date()),
            ));
        }
        if facts.spki != key.subject_public_key_info().as_slice() {
            return Err(invalid(
                key_path,
                format!("this key does not belong to {}", cert_path.display()),
            ));
        }
        let ca = Self::new(key, cert_der, cert_pem.to_owned());
        ca.verify_probe().map_err(|e| {
            invalid(
                cert_path,
                format!(
                    "a probe certificate signed by the CA key does not verify against it ({e})"
                ),
            )
        })?;
        Ok(ca)
    }

    /// Signs a short-lived certificate on a throwaway key and verifies it
    /// as rustls would: proves the rebuilt issuer chains to `ca.pem`.
    fn verify_probe(&self) -> Result<(), String> {
        let probe_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(vec![PROBE_NAME.to_owned()]).map_err(|e| e.to_string())?;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + BACKDATE;
        params.serial_number = Some(random_serial().map_err(|e| e.to_string())?);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let probe = self.sign(&params, &probe_key).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(PROBE_NAME).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(probe.der(), &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Reads the CA key, or `None` when there is none; refuses a file that
/// group or others may read. The mode is checked on the opened file, so
/// the file checked is the file read.
pub(super) fn read_key(path: &Path) -> Result<Option<Zeroizing<String>>, TlsError> {
    let io = |action: &'static str| {
        move |source| StateError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e).into()),
    };
    let metadata = file.metadata().map_err(io("inspect"))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    // Sized up front so that no reallocation leaves a copy of the key behind.
    let size = usize::try_from(metadata.len()).unwrap_or(0);
    let mut text = Zeroizing::new(String::with_capacity(size.saturating_add(1)));
    match file.read_to_string(&mut text) {
        Ok(_) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(TlsError::InvalidCa {
            path: path.to_owned(),
            reason: "the key file is not PEM text".into(),
        }),
        Err(e) => Err(io("read")(e).into()),
    }
}
