//! TLS: keyhole's own certificate authority, the leaf certificates it shows
//! to sandboxed clients, and the configuration it uses towards upstreams.
//!
//! - [`ca`]: the local CA, created once in the state directory and reused.
//!   Its key signs leaves and nothing else; it is never a leaf key.
//! - [`leaf`]: per-host leaf certificates, all on one start-up key distinct
//!   from the CA's, cached (bounded, single-flight on misses, reissued after
//!   a week), with an IP SAN for IP hosts and a DNS SAN for names.
//! - [`roots`]: the client configuration towards real servers: the
//!   system's roots plus `--upstream-ca`.
//! - [`bundle`]: the CA bundle handed to sandboxes: keyhole's CA followed
//!   by the system roots, because tunnelled hosts show their real
//!   certificates.
//!
//! Every rustls configuration is built with [`provider()`] (ring), never
//! with the process-wide default provider: a library that installs another
//! default (or none) cannot change what keyhole negotiates.

pub mod bundle;
pub mod ca;
pub mod leaf;
pub mod roots;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub use ca::CertificateAuthority;
pub use leaf::LeafCache;

use crate::state::StateError;

/// The one crypto provider keyhole uses: rustls' ring provider.
///
/// Built once per process and shared. Pass it to
/// `ServerConfig::builder_with_provider` / `ClientConfig::builder_with_provider`.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// What went wrong with keyhole's CA, its leaves or its TLS configuration.
///
/// No variant ever carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The state directory could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The CA key file may be read by other users.
    #[error("the CA key {path} is readable by group or others (mode 0{mode:03o}); run `chmod 600 {path}`, and create a new CA if others may have read it")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Only one of the CA certificate and the CA key exists.
    #[error("found {present} but not {missing}; restore the missing file, or delete both to create a new CA (clients must then trust the new certificate)")]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// The CA certificate or key on disk is not usable.
    #[error("the CA in {path} is not usable: {reason}; fix or delete ca.pem and ca-key.pem to create a new CA (clients must then trust the new certificate)")]
    InvalidCa {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process started creating the CA and did not finish.
    #[error("another keyhole began creating the CA in {dir} but {missing} did not appear; if no other keyhole is running, delete ca-key.pem there and start again")]
    CaCreationStalled {
        /// The state directory.
        dir: PathBuf,
        /// The file that never appeared.
        missing: PathBuf,
    },
    /// Generating a key or signing a certificate failed.
    #[error("cannot {action}: {reason}; this is a bug in keyhole or its crypto library, please report it")]
    Crypto {
        /// What was being done.
        action: &'static str,
        /// The library's message (never key material).
        reason: String,
    },
    /// rustls refused a configuration.
    #[error("cannot build the TLS configuration: {0}; this is a bug in keyhole, please report it")]
    Config(#[from] rustls::Error),
    /// A leaf was asked for a name keyhole never certifies.
    #[error("refusing to issue a leaf certificate for {host:?}: wildcard and empty names are never certified; connect to a concrete host name")]
    RefusedName {
        /// The refused name.
        host: String,
    },
    /// An `--upstream-ca` file could not be used.
    #[error("cannot use --upstream-ca {path}: {reason}; pass a readable PEM file holding at least one CERTIFICATE block")]
    UpstreamCa {
        /// The file given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No root at all to verify upstream servers with.
    #[error("no trusted roots for upstream servers: the system trust store is empty or unreadable; pass --upstream-ca PEM (or point SSL_CERT_FILE at a CA bundle)")]
    NoRoots,
}

impl TlsError {
    fn crypto(action: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
        move |e| TlsError::Crypto {
            action,
            reason: e.to_string(),
        }
    }
}
