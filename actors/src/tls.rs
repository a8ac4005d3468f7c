//! TLS for every direction, in one place: the SMTP listener's STARTTLS now; the SMTP client and
//! HTTP next. rustls with the ring provider (already in the tree). A listener with no certificate
//! configured gets a self-signed one made at start, so STARTTLS is always offered (as KumoMTA does):
//! opportunistic senders encrypt even when the operator has not set up a certificate yet.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

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
    /// The peer certificate's subject as `SN=value` parts (`["C=US", "CN=mx.example.com"]`),
    /// KumoMTA's `tls_peer_subject_name`; empty when the peer sent none (a client, usually).
    pub peer_subject_name: Vec<String>,
}

impl TlsInfo {
    pub fn of(conn: &rustls::CommonState) -> TlsInfo {
        TlsInfo {
            protocol_version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
            cipher: conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
            peer_subject_name: conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| subject_name(leaf.as_ref()))
                .unwrap_or_default(),
        }
    }
}

/// A DER certificate's subject as `SN=value` strings, in order.
pub fn subject_name(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else { return Vec::new() };
    let registry = x509_parser::objects::oid_registry();
    cert.subject()
        .iter_attributes()
        .filter_map(|attr| {
            let name = x509_parser::objects::oid2sn(attr.attr_type(), registry).ok()?;
            // OpenSSL's short names, as KumoMTA logs them.
            let name = match name {
                "commonName" => "CN",
                "countryName" => "C",
                "stateOrProvinceName" => "ST",
                "localityName" => "L",
                "organizationName" => "O",
                "organizationalUnitName" => "OU",
                other => other,
            };
            Some(format!("{name}={}", attr.as_str().ok()?))
        })
        .collect()
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

/// The two client configs outbound STARTTLS chooses between (`enable_tls`): verifying against
/// the system's roots plus `[tls] ca_file`, or accepting any certificate (`*Insecure`).
pub struct ClientTls {
    pub verifying: Arc<ClientConfig>,
    pub insecure: Arc<ClientConfig>,
}

impl ClientTls {
    pub fn new(ca_file: Option<&Path>) -> Result<ClientTls, TlsError> {
        Self::with_ca_files(ca_file.into_iter().collect())
    }

    /// Trusting the system's roots plus every PEM file given.
    pub fn with_ca_files(ca_files: Vec<&Path>) -> Result<ClientTls, TlsError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            // No system store (a minimal container): Mozilla's roots rather than none at all.
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in ca_files {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::Certificate {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?;
            }
        }
        let builder = || {
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))
        };
        let verifying = builder()?.with_root_certificates(roots).with_no_client_auth();
        let insecure = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth();
        Ok(ClientTls { verifying: Arc::new(verifying), insecure: Arc::new(insecure) })
    }
}

/// `OpportunisticInsecure` / `RequiredInsecure`: encrypt, but take whatever certificate comes
/// (signatures are still checked, so the handshake itself is sound).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
