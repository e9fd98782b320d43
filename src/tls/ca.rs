//! keyhole's local certificate authority.
//!
//! Created on first start in the state directory (`ca.pem`, 0644, and
//! `ca-key.pem`, 0600) and reused afterwards, so that clients trust it once.
//! Loading fails closed: a key file others may read, a certificate that is
//! not a CA, an expired one, or a key that does not belong to it is refused
//! with a message saying what to do; keyhole never silently replaces a CA
//! that clients may already trust.
//!
//! The CA key is an ECDSA P-256 key held as an rcgen [`Issuer`]. It signs
//! leaf certificates through the crate-private `CertificateAuthority::sign`
//! and nothing else: it is never a leaf key (`sign` refuses to certify it)
//! and is never handed out of this module.
//!
//! Trade-offs: the subject name is rebuilt from constants on load instead of
//! parsed from `ca.pem` (rcgen is built without an X.509 parser), so a load
//! proves by signing and verifying a probe certificate that the rebuilt
//! issuer really chains to the file; the constants must therefore never
//! change. Two processes creating the CA at the same moment are serialised
//! by hard-linking the key into place (only one link can win); the loser
//! waits for the winner's certificate and loads it.

mod der;
mod load;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::TlsError;
use crate::state::{self, StateError};

/// File name of the CA certificate in the state directory.
pub const CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in the state directory.
pub const KEY_FILE: &str = "ca-key.pem";

/// The CA's common name. Never change it: existing CAs on disk carry it.
const COMMON_NAME: &str = "keyhole local CA";
/// The CA's organisation. Never change it: existing CAs on disk carry it.
const ORGANIZATION: &str = "keyhole egress proxy";
/// How long a new CA is valid: ten years.
const CA_VALIDITY: time::Duration = time::Duration::days(3652);
/// Back-dating of every certificate, for clients whose clock is behind.
pub(super) const BACKDATE: time::Duration = time::Duration::hours(1);
/// How long to wait for another process that is creating the CA.
const CREATION_WAIT: Duration = Duration::from_secs(5);

/// keyhole's CA: the certificate clients trust and the key that signs leaves.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

// === impl CertificateAuthority ===

impl CertificateAuthority {
    /// Loads the CA from `state_dir`, creating the folder and a new CA on
    /// first start. See the module documentation for what is refused.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, TlsError> {
        state::ensure_dir(state_dir)?;
        let cert_path = Self::cert_path(state_dir);
        let key_path = state_dir.join(KEY_FILE);
        let key = load::read_key(&key_path)?;
        let cert = state::read_optional(&cert_path)?;
        match (cert, key) {
            (Some(cert), Some(key)) => Self::load(&cert_path, &cert, &key_path, &key),
            (None, None) => Self::create(state_dir),
            (Some(_), None) => Err(TlsError::IncompleteCa {
                present: cert_path,
                missing: key_path,
            }),
            (None, Some(_)) => Self::wait_for_creator(state_dir),
        }
    }

    /// Where the CA certificate lives in `state_dir`.
    pub fn cert_path(state_dir: &Path) -> PathBuf {
        state_dir.join(CERT_FILE)
    }

    /// The CA certificate, PEM-encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER-encoded (the last element of every leaf chain).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Signs `params` for `public_key`, which must not be the CA's own key.
    pub(super) fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
    ) -> Result<rcgen::Certificate, TlsError> {
        if public_key.der_bytes() == self.issuer.key().der_bytes() {
            return Err(TlsError::Crypto {
                action: "sign a certificate",
                reason: "the subject key is the CA's own key".into(),
            });
        }
        params
            .signed_by(public_key, &self.issuer)
            .map_err(TlsError::crypto("sign a certificate"))
    }

    fn create(state_dir: &Path) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(TlsError::crypto("generate the CA key"))?;
        let now = OffsetDateTime::now_utc();
        let mut params = ca_params();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(TlsError::crypto("sign the CA certificate"))?;
        let key_pem = Zeroizing::new(key.serialize_pem());

        // Unique per process and call; the last extension stays `.new` since
        // `write_atomic` derives its own temporary name by replacing it.
        static ATTEMPT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}",
            std::process::id(),
            ATTEMPT.fetch_add(1, Ordering::Relaxed)
        );
        let cert_path = Self::cert_path(state_dir);
        let key_path = state_dir.join(KEY_FILE);
        let cert_new = state_dir.join(format!("{CERT_FILE}.{unique}.new"));
        let key_new = state_dir.join(format!("{KEY_FILE}.{unique}.new"));
        state::write_atomic(&cert_new, cert.pem().as_bytes(), 0o644)?;
        if let Err(e) = state::write_atomic(&key_new, key_pem.as_bytes(), 0o600) {
            let _ = fs::remove_file(&cert_new);
            return Err(e.into());
        }
        // The hard link fails if a key already exists: exactly one creator wins.
        let linked = match fs::hard_link(&key_new, &key_path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                tracing::debug!(error = %e, "cannot hard-link the CA key; renaming it instead");
                fs::rename(&key_new, &key_path)
            }
            other => other,
        };
        let _ = fs::remove_file(&key_new);
        match linked {
            Ok(()) => {
                fs::rename(&cert_new, &cert_path).map_err(|source| StateError::Io {
                    action: "rename into",
                    path: cert_path.clone(),
                    source,
                })?;
                tracing::info!(path = %cert_path.display(), "created a new keyhole CA; clients must trust this certificate");
                Ok(Self::new(key, cert.der().clone(), cert.pem()))
            }
            Err(e) => {
                let _ = fs::remove_file(&cert_new);
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Self::wait_for_creator(state_dir);
                }
                Err(StateError::Io {
                    action: "create",
                    path: key_path,
                    source: e,
                }
                .into())
            }
        }
    }

    /// The key exists but the certificate not yet: another process is
    /// creating the CA. Waits for its certificate, then loads both.
    fn wait_for_creator(state_dir: &Path) -> Result<Self, TlsError> {
        let cert_path = Self::cert_path(state_dir);
        let key_path = state_dir.join(KEY_FILE);
        let deadline = Instant::now() + CREATION_WAIT;
        loop {
            if let Some(cert) = state::read_optional(&cert_path)? {
                let key = load::read_key(&key_path)?.ok_or_else(|| TlsError::IncompleteCa {
                    present: cert_path.clone(),
                    missing: key_path.clone(),
                })?;
                return Self::load(&cert_path, &cert, &key_path, &key);
            }
            if Instant::now() >= deadline {
                return Err(TlsError::CaCreationStalled {
                    dir: state_dir.to_owned(),
                    missing: cert_path,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn new(key: KeyPair, cert_der: CertificateDer<'static>, cert_pem: String) -> Self {
        CertificateAuthority {
            issuer: Issuer::new(ca_params(), key),
            cert_der,
            cert_pem,
        }
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &COMMON_NAME)
            .field("key", &"[elided]")
            .finish()
    }
}

/// The CA's parameters, without dates and serial (the issuer needs only
/// its name, key identifier method and key usages).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, COMMON_NAME);
    name.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A random positive 16-byte serial. Every leaf shares one key, so rcgen's
/// default (a hash of the public key) would repeat; clients reject a reused
/// issuer and serial.
pub(super) fn random_serial() -> Result<SerialNumber, TlsError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError::Crypto {
            action: "draw a serial number",
            reason: "the system random generator failed".into(),
        })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
