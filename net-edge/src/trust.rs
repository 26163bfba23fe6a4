//! What the gateway trusts in a provider's certificate: a chain to the
//! system's roots or the account's `ca_file`, or, for a home server's
//! self-signed certificate, exactly the certificate whose SHA-256
//! fingerprint the account pins (`provider_cert_sha256`).
//!
//! A certificate made with `openssl req -x509` is marked as a CA, which
//! webpki refuses as a server's own certificate (`CaUsedAsEndEntity`) even
//! when it is given as `ca_file`; pinning its fingerprint, as Thunderbird's
//! certificate exception does, is how such a provider is used. A pin adds
//! one certificate to what verifies; a certificate that verifies through a
//! root is still accepted (the pin does not weaken that check, and a
//! provider moving to a public CA keeps working). Every refusal names the
//! presented fingerprint, so the person can compare it with the server's.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, CertificateError, DigitallySignedStruct, OtherError};

/// A certificate's SHA-256 fingerprint (of its DER encoding), shown as
/// `openssl x509 -noout -fingerprint -sha256` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateFingerprint([u8; 32]);

impl CertificateFingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        CertificateFingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for CertificateFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertificateFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateFingerprint({self})")
    }
}

/// Why a fingerprint could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("\"{0}\" is not a SHA-256 certificate fingerprint: give the 64 hex digits `openssl x509 -noout -fingerprint -sha256` prints (colons optional)")]
pub struct BadFingerprint(String);

impl FromStr for CertificateFingerprint {
    type Err = BadFingerprint;

    /// Takes the 64 hex digits with or without colons (or spaces), and the
    /// whole line openssl prints (`sha256 Fingerprint=AB:CD:…`).
    fn from_str(text: &str) -> Result<Self, BadFingerprint> {
        let bad = || BadFingerprint(text.to_string());
        let digits = text.rsplit('=').next().unwrap_or(text).trim();
        let digits = digits
            .strip_prefix("SHA256:")
            .or_else(|| digits.strip_prefix("sha256:"))
            .unwrap_or(digits);
        let hex: Vec<u8> = digits
            .bytes()
            .filter(|b| !matches!(b, b':' | b' '))
            .collect();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(CertificateFingerprint(bytes))
    }
}

/// What a person needs to recognise a certificate: who it names, who
/// issued it, and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate {
    pub fingerprint: CertificateFingerprint,
    /// The subject's distinguished name (`CN=mail.home.example, …`).
    pub subject: String,
    pub issuer: String,
}

impl PresentedCertificate {
    /// Reads a DER certificate; one that does not parse is still named by
    /// its fingerprint.
    pub fn from_der(der: &[u8]) -> Self {
        let (subject, issuer) = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => (cert.subject().to_string(), cert.issuer().to_string()),
            Err(_) => ("(unreadable)".into(), "(unreadable)".into()),
        };
        PresentedCertificate {
            fingerprint: CertificateFingerprint::of(der),
            subject,
            issuer,
        }
    }
}

impl fmt::Display for PresentedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subject {}, issuer {}, SHA-256 {}",
            self.subject, self.issuer, self.fingerprint
        )
    }
}

/// A provider certificate the gateway does not trust, with what to do.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CertificateRejected {
    #[error(
        "the provider's certificate does not verify ({reason}): {presented}. If this is your own \
         server's self-signed certificate and the server shows the same fingerprint \
         (`openssl x509 -noout -fingerprint -sha256`), trust it with provider_cert_sha256 = \
         \"{fingerprint}\" in the account (gateway init --trust-provider-cert); if a private CA \
         issued it, set ca_file",
        fingerprint = presented.fingerprint
    )]
    Unverified {
        reason: String,
        presented: PresentedCertificate,
    },
    #[error(
        "the provider presented a certificate with SHA-256 fingerprint {fingerprint}, but this \
         account trusts only {pinned} (provider_cert_sha256), and the new one does not verify \
         ({reason}; {presented}). Someone may be intercepting the connection; if the server's \
         certificate really changed, check the new fingerprint on the server and replace the pin",
        fingerprint = presented.fingerprint
    )]
    NotPinned {
        reason: String,
        presented: PresentedCertificate,
        pinned: CertificateFingerprint,
    },
}

impl CertificateRejected {
    /// The certificate that was refused.
    pub fn presented(&self) -> &PresentedCertificate {
        match self {
            CertificateRejected::Unverified { presented, .. }
            | CertificateRejected::NotPinned { presented, .. } => presented,
        }
    }
}

/// The refusal of a provider certificate somewhere in `error`'s chain: in
/// rustls's error, which tokio-rustls and lettre wrap in `io::Error`.
pub fn certificate_rejection<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CertificateRejected> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(rejected) = e.downcast_ref::<CertificateRejected>() {
            return Some(rejected);
        }
        if let Some(rejected) = e.downcast_ref::<Box<CertificateRejected>>() {
            return Some(rejected);
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) =
            e.downcast_ref::<rustls::Error>()
        {
            if let Some(rejected) = inner.downcast_ref::<CertificateRejected>() {
                return Some(rejected);
            }
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = certificate_rejection(inner) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

/// webpki's verification, plus the pinned certificate, with refusals that
/// name the fingerprint.
#[derive(Debug)]
pub(crate) struct ProviderVerifier {
    pub(crate) chain: Arc<WebPkiServerVerifier>,
    pub(crate) pin: Option<CertificateFingerprint>,
}

impl ServerCertVerifier for ProviderVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin == Some(CertificateFingerprint::of(end_entity.as_ref())) {
            return Ok(ServerCertVerified::assertion());
        }
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(rustls::Error::InvalidCertificate(why)) => {
                let reason = plain_reason(&why);
                let presented = PresentedCertificate::from_der(end_entity.as_ref());
                let rejected = match self.pin {
                    Some(pinned) => CertificateRejected::NotPinned {
                        reason,
                        presented,
                        pinned,
                    },
                    None => CertificateRejected::Unverified { reason, presented },
                };
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(rejected)),
                )))
            }
            Err(other) => Err(other),
        }
    }

    // The handshake's signature is checked with the certificate's key in
    // every case, pinned or not: a pin names the certificate, and only its
    // key's holder can complete the handshake with it.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Why a certificate did not verify, in words a person setting up a home
/// server recognises (webpki's own errors print as `CaUsedAsEndEntity`).
fn plain_reason(why: &CertificateError) -> String {
    let webpki = match why {
        CertificateError::Other(OtherError(inner)) => inner.to_string(),
        CertificateError::UnknownIssuer => "UnknownIssuer".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            return format!("it has expired: {why}")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            return format!("it is not made out to this server's name: {why}")
        }
        other => return other.to_string(),
    };
    match webpki.as_str() {
        "CaUsedAsEndEntity" => {
            "it is a CA certificate of its own, as `openssl req -x509` makes them, not one a CA issued to the server".into()
        }
        "UnknownIssuer" => "no CA this gateway trusts issued it (self-signed, or a private CA)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        let fpr = CertificateFingerprint::of(b"a certificate");
        let shown = fpr.to_string();
        assert_eq!(shown.len(), 95, "{shown}");
        assert_eq!(shown.parse(), Ok(fpr));
        assert_eq!(shown.replace(':', "").to_lowercase().parse(), Ok(fpr));
        assert_eq!(format!("sha256 Fingerprint={shown}").parse(), Ok(fpr));
        assert_eq!(
            format!("SHA256:{}", shown.replace(':', "")).parse(),
            Ok(fpr)
        );
        let not_hex = format!("G{}", &shown[1..]);
        let short = shown[..94].to_string();
        let long = format!("{shown}:00");
        for bad in ["", "AB:CD", &short, &long, &not_hex] {
            assert!(bad.parse::<CertificateFingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rejection_is_found_inside_io_and_rustls_errors() {
        let rejected = CertificateRejected::Unverified {
            reason: "CaUsedAsEndEntity".into(),
            presented: PresentedCertificate::from_der(b"x"),
        };
        let tls = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            rejected.clone(),
        ))));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        assert_eq!(certificate_rejection(&io), Some(&rejected));
        assert!(crate::describe(&io).contains("provider_cert_sha256 = \""));
        let unrelated = std::io::Error::other("connection reset");
        assert_eq!(certificate_rejection(&unrelated), None);
    }
}
