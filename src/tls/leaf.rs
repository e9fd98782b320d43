//! Leaf certificates shown to sandboxed clients, one per intercepted host.
//!
//! All leaves share one ECDSA P-256 key generated at start-up and never
//! written to disk; it is distinct from the CA key, which only signs. One key
//! keeps issuance to a single signature per host; the cost is that a leaked
//! leaf key would serve every host until restart, which is no worse than a
//! leaked process, where the CA key lives too.
//!
//! Each leaf names exactly its host: a DNS SAN for a name, an IP SAN for an
//! IPv4 or IPv6 address (never a DNS SAN for an IP). Wildcard and empty names
//! are refused. Leaves are valid from an hour ago for 30 days and are
//! reissued once a week, so a long-running sidecar never serves an expired
//! one.
//!
//! Cache policy: at most `capacity` hosts; when full, the host inserted
//! longest ago is evicted (FIFO). FIFO needs no bookkeeping on hits, and
//! evicting a busy host costs one reissue (a signature, well under a
//! millisecond). Concurrent misses for one host share one issuance through a
//! per-host `OnceCell`; the map's lock is held only to find or insert that
//! cell, never across an issuance.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::ca::{random_serial, BACKDATE};
use super::{provider, CertificateAuthority, TlsError};
use crate::host::{Host, HostKind};

/// Default number of hosts whose leaf is kept.
///
/// A sandbox talks to tens of intercepted hosts, not thousands; 1024 leaves
/// that with wide headroom while bounding memory to a few megabytes (a
/// `ServerConfig` and a certificate of about 600 bytes per host). A miss
/// costs one ECDSA signature, so a smaller cache is cheap too.
pub const DEFAULT_LEAF_CACHE_CAPACITY: usize = 1024;

/// How long a leaf is valid after issuance.
const LEAF_VALIDITY: time::Duration = time::Duration::days(30);
/// When a cached leaf is replaced by a new one (well before it expires).
const REISSUE_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Longest common name X.509 allows (RFC 5280 `ub-common-name`); longer
/// names are carried by the SAN alone.
const MAX_COMMON_NAME: usize = 64;
/// TLS sessions kept for resumption, shared by every leaf's configuration
/// so that memory does not grow with the number of hosts.
const SESSION_CACHE_SIZE: usize = 4096;

/// Issues and caches one `ServerConfig` per intercepted host.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    public_key: LeafPublicKey,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    sessions: Arc<dyn StoresServerSessions>,
    capacity: usize,
    entries: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    slots: HashMap<Host, Arc<OnceCell<Leaf>>>,
    /// Hosts in insertion order, oldest first.
    order: VecDeque<Host>,
}

struct Leaf {
    config: Arc<ServerConfig>,
    issued: SystemTime,
}

/// The shared leaf key's public half, as rcgen needs it to issue.
struct LeafPublicKey(Vec<u8>);

// === impl LeafCache ===

impl LeafCache {
    /// Generates the leaf key and makes an empty cache holding at most
    /// `capacity` hosts (0 is taken as 1).
    pub fn new(ca: Arc<CertificateAuthority>, capacity: usize) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(TlsError::crypto("generate the leaf key"))?;
        let public_key = LeafPublicKey(key.public_key_raw().to_vec());
        // The private half moves into rustls; rcgen's copy is dropped here.
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        drop(key);
        let signing_key = provider().key_provider.load_private_key(der)?;
        Ok(LeafCache {
            ca,
            public_key,
            signing_key,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The TLS server configuration for `host`: its leaf (then the CA
    /// certificate), ALPN `h2` then `http/1.1`, TLS 1.2 and 1.3, no client
    /// authentication. Cached; see the module documentation.
    pub async fn server_config(&self, host: &Host) -> Result<Arc<ServerConfig>, TlsError> {
        refuse_unsafe(host)?;
        let slot = self.slot(host);
        if let Some(leaf) = slot.get() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(leaf.config.clone());
        }
        let mut issued_here = false;
        let leaf = slot
            .get_or_try_init(|| {
                issued_here = true;
                std::future::ready(self.issue(host))
            })
            .await?;
        let counter = if issued_here {
            &self.misses
        } else {
            &self.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(leaf.config.clone())
    }

    /// Requests answered from the cache (including those that waited for
    /// another request's issuance).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Leaves issued.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Hosts currently cached (issued or being issued).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether no host is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Nothing panics while the lock is held; a poisoned map is intact.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cell for `host`: the cached one unless its leaf is due for
    /// reissue, else a new one, inserted and evicting the oldest if full.
    fn slot(&self, host: &Host) -> Arc<OnceCell<Leaf>> {
        let mut entries = self.lock();
        if let Some(slot) = entries.slots.get(host) {
            if slot.get().is_none_or(Leaf::is_fresh) {
                return slot.clone();
            }
            entries.order.retain(|h| h != host);
        }
        let slot = Arc::new(OnceCell::new());
        entries.slots.insert(host.clone(), slot.clone());
        entries.order.push_back(host.clone());
        while entries.slots.len() > self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            entries.slots.remove(&oldest);
        }
        slot
    }

    /// Issues a leaf for `host` and builds its configuration.
    fn issue(&self, host: &Host) -> Result<Leaf, TlsError> {
        let certified = self.certify(host)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = self.sessions.clone();
        tracing::debug!(%host, "issued a leaf certificate");
        Ok(Leaf {
            config: Arc::new(config),
            issued: SystemTime::now(),
        })
    }

    /// Signs a leaf certificate for `host`: the chain (leaf, CA) and the key.
    fn certify(&self, host: &Host) -> Result<CertifiedKey, TlsError> {
        refuse_unsafe(host)?;
        let (san, common_name) = match host.kind() {
            HostKind::Name => {
                let name = Ia5String::try_from(host.as_str()).map_err(|e| TlsError::Crypto {
                    action: "encode a host name",
                    reason: e.to_string(),
                })?;
                (SanType::DnsName(name), host.as_str().to_owned())
            }
            HostKind::Ipv4(addr) => (SanType::IpAddress(addr.into()), addr.to_string()),
            HostKind::Ipv6(addr) => (SanType::IpAddress(addr.into()), addr.to_string()),
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        let mut subject = DistinguishedName::new();
        if common_name.len() <= MAX_COMMON_NAME {
            subject.push(DnType::CommonName, common_name);
        }
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = self.ca.sign(&params, &self.public_key)?;

        let chain = vec![cert.der().clone(), self.ca.cert_der().clone()];
        Ok(CertifiedKey::new(chain, self.signing_key.clone()))
    }
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache")
            .field("capacity", &self.capacity)
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish_non_exhaustive()
    }
}

/// [`Host`] cannot hold `*` or be empty; checked again here because a
/// wildcard leaf signed by a trusted CA would impersonate whole domains.
fn refuse_unsafe(host: &Host) -> Result<(), TlsError> {
    let name = host.as_str();
    if name.is_empty() || name.contains('*') {
        return Err(TlsError::RefusedName {
            host: name.to_owned(),
        });
    }
    Ok(())
}

// === impl Leaf ===

impl Leaf {
    /// Younger than a week. A clock set back by more than the back-dating
    /// also counts as stale, since the leaf may then not be valid yet.
    fn is_fresh(&self) -> bool {
        match SystemTime::now().duration_since(self.issued) {
            Ok(age) => age < REISSUE_AFTER,
            Err(ahead) => ahead.duration() < Duration::from_secs(60 * 60),
        }
    }
}

// === impl LeafPublicKey ===

impl rcgen::PublicKeyData for LeafPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}
