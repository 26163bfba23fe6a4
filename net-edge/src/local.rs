//! The certificate the local listeners present to the mail client (IMAP
//! and SMTP STARTTLS, when `local_tls = true`): made once with rcgen, kept
//! in the vault, the same for both listeners.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;

/// Why a local certificate could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalCertificateError {
    #[error("making a self-signed certificate failed")]
    Generate(#[source] rcgen::Error),
    #[error("the certificate cannot serve TLS")]
    Rustls(#[source] tokio_rustls::rustls::Error),
}

/// The local certificate clients see on STARTTLS.
#[derive(Clone)]
pub struct LocalCertificate {
    pub cert_der: Vec<u8>,
    pub key_der: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LocalCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCertificate")
            .field("sha256", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl LocalCertificate {
    /// A new self-signed certificate for these names (rcgen).
    pub fn generate(names: &[&str]) -> Result<Self, LocalCertificateError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certified =
            rcgen::generate_simple_self_signed(names).map_err(LocalCertificateError::Generate)?;
        Ok(LocalCertificate {
            cert_der: certified.cert.der().to_vec(),
            key_der: zeroize::Zeroizing::new(certified.signing_key.serialize_der()),
        })
    }

    /// The certificate in PEM, e.g. for a client's trust store.
    pub fn cert_pem(&self) -> String {
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        pem::encode_config(&pem::Pem::new("CERTIFICATE", self.cert_der.clone()), config)
    }

    /// SHA-256 of the certificate, colon-separated hex (what `gateway
    /// status` shows and what a person compares in the client's dialog).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.cert_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// A rustls server configuration presenting this certificate, for
    /// either listener.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, LocalCertificateError> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(LocalCertificateError::Rustls)?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.to_vec())),
            )
            .map_err(LocalCertificateError::Rustls)?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_serves_tls_and_prints_as_pem() {
        let cert = LocalCertificate::generate(&["localhost", "127.0.0.1"]).expect("cert");
        assert!(cert.server_config().is_ok());
        let pem = cert.cert_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(cert.fingerprint().split(':').count(), 32);
        assert!(!format!("{cert:?}").contains("key_der"));
    }

    #[test]
    fn a_broken_key_is_an_error_not_a_panic() {
        let mut cert = LocalCertificate::generate(&["localhost"]).expect("cert");
        cert.key_der = zeroize::Zeroizing::new(vec![1, 2, 3]);
        assert!(matches!(
            cert.server_config(),
            Err(LocalCertificateError::Rustls(_))
        ));
    }
}
