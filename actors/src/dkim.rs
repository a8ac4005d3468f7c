//! DKIM signers (RFC 6376) on mail-auth with ring. Parsing a private key is the expensive part
//! (an RSA key costs milliseconds), so a [`Signer`] is built once per distinct parameters and kept
//! in a process-wide [`SignerCache`] shared by every Lua state; signing a message then only
//! canonicalises, hashes and signs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::crypto::{DkimKey, Ed25519Key, HashAlgorithm, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::DkimSigner;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::model::dkim::{Canonicalization, over_signed_headers};
use crate::secrets::{KeySource, SecretError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    RsaSha256,
    Ed25519,
}

/// Everything a policy passes to `kumo.dkim.*_signer`; also the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignerSpec {
    pub kind: KeyKind,
    pub domain: String,
    pub selector: String,
    pub headers: Vec<String>,
    pub key: KeySource,
    pub header_canonicalization: Canonicalization,
    pub body_canonicalization: Canonicalization,
    /// Seconds from signing until the signature expires (`x=`).
    pub expiration: Option<u64>,
    pub atps: Option<String>,
    /// "sha1" or "sha256".
    pub atpsh: Option<String>,
    pub agent_user_identifier: Option<String>,
    pub body_length: bool,
    pub reporting: bool,
    pub over_sign: bool,
}

impl SignerSpec {
    /// The required parameters; the optional ones at KumoMTA's defaults (relaxed/relaxed, no
    /// expiration, no ATPS, no over-signing).
    pub fn new(kind: KeyKind, domain: &str, selector: &str, headers: &[&str], key: KeySource) -> Self {
        SignerSpec {
            kind,
            domain: domain.into(),
            selector: selector.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            key,
            header_canonicalization: Canonicalization::Relaxed,
            body_canonicalization: Canonicalization::Relaxed,
            expiration: None,
            atps: None,
            atpsh: None,
            agent_user_identifier: None,
            body_length: false,
            reporting: false,
            over_sign: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("DKIM key: {0}")]
    Key(#[from] SecretError),
    /// `from` is the file name or "key_data"; the key itself is never shown.
    #[error("DKIM key {from} is not a usable {kind} private key: {reason}")]
    BadKey { from: String, kind: &'static str, reason: String },
    #[error("DKIM signer: {0}")]
    Spec(String),
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// A ready signer: the parsed key and the parameters.
pub struct Signer {
    spec: SignerSpec,
    key: DkimKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({:?} d={} s={})", self.spec.kind, self.spec.domain, self.spec.selector)
    }
}

/// Lends the cached key to a per-message mail-auth signer without copying it.
struct KeyRef<'a>(&'a DkimKey);

impl SigningKey for KeyRef<'_> {
    type Hasher = Sha256;
    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }
    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

fn canon(c: Canonicalization) -> mail_auth::dkim::Canonicalization {
    match c {
        Canonicalization::Relaxed => mail_auth::dkim::Canonicalization::Relaxed,
        Canonicalization::Simple => mail_auth::dkim::Canonicalization::Simple,
    }
}

/// PEM (any PKCS#1 or PKCS#8 private key block) or raw DER.
fn private_key_der(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if let Ok(der) = PrivateKeyDer::from_pem_slice(bytes) {
        return Ok(der);
    }
    PrivateKeyDer::try_from(bytes).map(|k| k.clone_key()).map_err(|e| e.to_string())
}

fn parse_key(kind: KeyKind, bytes: &[u8]) -> Result<DkimKey, String> {
    match kind {
        KeyKind::RsaSha256 => {
            let der = private_key_der(bytes)?;
            RsaKey::<Sha256>::from_key_der(der).map(DkimKey::Rsa).map_err(|e| e.to_string())
        }
        KeyKind::Ed25519 => {
            let der = match PrivatePkcs8KeyDer::from_pem_slice(bytes) {
                Ok(der) => der.secret_pkcs8_der().to_vec(),
                Err(_) => bytes.to_vec(),
            };
            // PKCS#8 v2 carries the public key and is checked against it; v1 (what
            // `openssl genpkey` writes) has only the private key.
            Ed25519Key::from_pkcs8_der(&der)
                .or_else(|_| Ed25519Key::from_pkcs8_maybe_unchecked_der(&der))
                .map(DkimKey::Ed25519)
                .map_err(|e| e.to_string())
        }
    }
}

impl Signer {
    /// Load and parse the key. Errors name the key file, never its contents.
    pub fn build(spec: SignerSpec) -> Result<Signer, DkimError> {
        if spec.domain.is_empty() || spec.selector.is_empty() || spec.headers.is_empty() {
            return Err(DkimError::Spec("domain, selector and headers are required".into()));
        }
        if let Some(h) = &spec.atpsh
            && !["sha1", "sha256"].contains(&h.to_ascii_lowercase().as_str())
        {
            return Err(DkimError::Spec(format!("atpsh {h:?} must be \"sha1\" or \"sha256\"")));
        }
        let bytes = spec.key.load()?;
        let key = parse_key(spec.kind, &bytes).map_err(|reason| DkimError::BadKey {
            from: spec.key.describe(),
            kind: match spec.kind {
                KeyKind::RsaSha256 => "RSA",
                KeyKind::Ed25519 => "ed25519",
            },
            reason,
        })?;
        Ok(Signer { spec, key })
    }

    pub fn spec(&self) -> &SignerSpec {
        &self.spec
    }

    /// The `DKIM-Signature` header (name, folded value, trailing CRLF) for `data`.
    pub fn sign(&self, data: &[u8]) -> Result<String, DkimError> {
        let s = &self.spec;
        let headers = if s.over_sign { over_signed_headers(data, &s.headers) } else { s.headers.clone() };
        let mut signer = DkimSigner::from_key(KeyRef(&self.key))
            .domain(s.domain.as_str())
            .selector(s.selector.as_str())
            .headers(headers)
            .header_canonicalization(canon(s.header_canonicalization))
            .body_canonicalization(canon(s.body_canonicalization))
            .body_length(s.body_length)
            .reporting(s.reporting);
        if let Some(x) = s.expiration {
            signer = signer.expiration(x);
        }
        if let Some(atps) = &s.atps {
            signer = signer.atps(atps.as_str());
        }
        if let Some(h) = &s.atpsh {
            let h = if h.eq_ignore_ascii_case("sha1") { HashAlgorithm::Sha1 } else { HashAlgorithm::Sha256 };
            signer = signer.atpsh(h);
        }
        if let Some(i) = &s.agent_user_identifier {
            signer = signer.agent_user_identifier(i.as_str());
        }
        let signature = signer.sign(data).map_err(|e| DkimError::Sign(e.to_string()))?;
        let mut header = signature.to_header();
        if !header.ends_with("\r\n") {
            header.push_str("\r\n");
        }
        Ok(header)
    }
}

/// KumoMTA's default TTL for a cached signer: a key rotated on disk is picked up within it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
const CAPACITY: usize = 1024;

/// Built signers by their parameters, each kept for its TTL. Failures are not cached, so a key
/// file that appears later is used on the next message.
#[derive(Default)]
pub struct SignerCache {
    entries: Mutex<HashMap<SignerSpec, (Arc<Signer>, Instant)>>,
    builds: AtomicU64,
}

impl SignerCache {
    pub fn get(&self, spec: SignerSpec, ttl: Duration, now: Instant) -> Result<Arc<Signer>, DkimError> {
        if let Some((signer, expires)) = self.lock().get(&spec)
            && now < *expires
        {
            return Ok(signer.clone());
        }
        // Built outside the lock: another state may build the same signer meanwhile, harmlessly.
        let signer = Arc::new(Signer::build(spec.clone())?);
        self.builds.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, expires)| now < *expires);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(spec, (signer.clone(), now + ttl));
        Ok(signer)
    }

    /// How many signers were built (cache misses that succeeded).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SignerSpec, (Arc<Signer>, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cache every policy state shares.
pub fn signer_cache() -> &'static SignerCache {
    static CACHE: LazyLock<SignerCache> = LazyLock::new(SignerCache::default);
    &CACHE
}

#[cfg(test)]
pub(crate) mod tests;
