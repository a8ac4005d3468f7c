//! TLS for every direction, in one place: the SMTP listener's STARTTLS now; the SMTP client and
//! HTTP next. rustls with the ring provider (already in the tree). A listener with no certificate
//! configured gets a self-signed one made at start, so STARTTLS is always offered (as KumoMTA does):
//! opportunistic senders encrypt even when the operator has not set up a certificate yet.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {error}")]
    Certificate { path: String, error: String },
    #[error("cannot read a private key from {path}: {error}")]
    Key { path: String, error: String },
    #[error("certificate and key do not make a usable TLS setup: {0}")]
    Config(String),
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// What a finished handshake negotiated, as log records name it (KumoMTA's spelling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3`, `TLSv1_2`.
    pub protocol_version: String,
    /// `TLS13_AES_256_GCM_SHA384`, …
    pub cipher: String,
}

impl TlsInfo {
    pub fn of(conn: &rustls::CommonState) -> TlsInfo {
        TlsInfo {
            protocol_version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
            cipher: conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The listener's TLS: from PEM files (`tls_certificate`, `tls_private_key`), or self-signed for
/// `hostname` when none are given.
pub fn server_config(files: Option<(&Path, &Path)>, hostname: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = match files {
        Some((cert, key)) => (load_certs(cert)?, load_key(key)?),
        None => self_signed(hostname)?,
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |error: String| TlsError::Certificate { path: path.display().to_string(), error };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE section".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Key { path: path.display().to_string(), error: e.to_string() })
}

fn self_signed(hostname: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let made = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    Ok((vec![made.cert.der().clone()], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_file_configs_build_and_bad_files_are_named() {
        assert!(server_config(None, "mx.ferry.test").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["mx.ferry.test".to_string()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        assert!(server_config(Some((&cert, &key)), "ignored").is_ok());
        let missing = dir.path().join("nope.pem");
        let e = server_config(Some((&missing, &key)), "x").unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let e = server_config(Some((&cert, &cert)), "x").unwrap_err().to_string();
        assert!(e.contains("private key") && e.contains("cert.pem"), "{e}");
    }
}
