//! The network edge both proxies share.
//!
//! - Towards the mail provider: the account's [`Security`] setting, the TLS
//!   client configuration ([`client_config`]) that trusts the system's roots
//!   plus the account's `ca_file` (a provider with a private CA, and the
//!   tests' own CA) or the certificate it pins (a self-signed home server;
//!   `trust.rs`), and how long a login there may take
//!   ([`LOGIN_PATIENCE`]), all in one [`Endpoint`].
//! - Towards the mail client: the local listeners' certificate
//!   ([`LocalCertificate`]), SASL PLAIN ([`parse_plain`], one reading for
//!   IMAP and SMTP), and the [`Listener`] both proxies accept on, with a
//!   connection limit and one shutdown (stop accepting, tell every session,
//!   a grace period).
//! - For both: [`describe`], an error and its causes as one line (a client's
//!   sentence, a log entry).
//!
//! rustls does the TLS; this crate only decides what it trusts and
//! presents. Both proxies, for implicit TLS and STARTTLS alike, handshake
//! with [`client_config`], so there is one trust decision.
//!
//! ```
//! let login = net_edge::parse_plain(b"\0alice@example.org\0secret").expect("PLAIN");
//! assert_eq!(login.username, "alice@example.org");
//! ```

mod describe;
mod listener;
mod local;
mod sasl;
mod trust;

pub use describe::describe;
pub use listener::{BindError, Listener, DEFAULT_MAX_CONNECTIONS};
pub use local::{LocalCertificate, LocalCertificateError};
pub use sasl::{parse_plain, PlainError, PlainLogin};
pub use tokio_util::sync::CancellationToken;
pub use trust::{
    certificate_rejection, BadFingerprint, CertificateFingerprint, CertificateRejected,
    PresentedCertificate,
};

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use thiserror::Error;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The longest a login at the provider may take in all (greeting, TLS,
/// STARTTLS, the login itself), or the account's provider timeout if that
/// is shorter: below the 100 s after which Thunderbird gives up on its own,
/// so that the person reads the gateway's reason, not a bare timeout.
pub const LOGIN_PATIENCE: Duration = Duration::from_secs(60);

/// Where an account's provider listens (IMAP or SMTP) and how to reach it
/// there: the one description both proxies connect with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// An extra trust anchor (PEM) besides the system's roots, for a
    /// provider with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The certificate trusted by its fingerprint even though it does not
    /// verify (`provider_cert_sha256`: a self-signed home server).
    pub pinned: Option<CertificateFingerprint>,
}

/// How the connection to the provider is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (IMAP 993, SMTP 465).
    Tls,
    /// A plain connection upgraded with STARTTLS before anything else is
    /// said; the upgrade is required (IMAP 143, SMTP 587).
    StartTls,
    /// No TLS at all: only for a provider on the same machine.
    Plain,
}

impl Security {
    /// The config file's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
            Security::Plain => "plain",
        }
    }
}

impl FromStr for Security {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::StartTls),
            "plain" => Ok(Security::Plain),
            other => Err(format!(
                "unknown security \"{other}\"; use tls, starttls or plain"
            )),
        }
    }
}

/// Why no TLS configuration could be made.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("no TLS version both sides support: {0}")]
    Protocol(String),
    #[error("no certificate verifier: {0}")]
    Verifier(String),
}

/// TLS client settings that trust the system's roots plus every PEM
/// certificate in `ca_file`, and the `pinned` certificate whatever its chain.
/// A `ca_file` that cannot be read or holds no certificate is an error (the
/// account's setting would silently do nothing otherwise); unreadable
/// system certificates are not: `ca_file` or a pin may be all that is
/// needed, and a missing root shows up as a handshake error naming the
/// presented certificate ([`CertificateRejected`]).
pub fn client_config(
    ca_file: Option<&Path>,
    pinned: Option<CertificateFingerprint>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let unreadable = |reason: String| TlsSetupError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(e.to_string()))? {
            let cert = cert.map_err(|e| unreadable(e.to_string()))?;
            roots.add(cert).map_err(|e| unreadable(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(unreadable("it holds no PEM certificate".into()));
        }
    }
    let provider = Arc::new(ring::default_provider());
    let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Protocol(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(trust::ProviderVerifier { chain, pin: pinned }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system's trust anchors, read once per process: parsing the whole
/// store for every login would cost more than the login.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_words_round_trip() {
        for security in [Security::Tls, Security::StartTls, Security::Plain] {
            assert_eq!(security.as_str().parse::<Security>(), Ok(security));
        }
        let wrong = "ssl".parse::<Security>().unwrap_err();
        assert!(wrong.contains("use tls, starttls or plain"), "{wrong}");
    }

    #[test]
    fn a_ca_file_is_read_and_a_useless_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = testbed::TestCa::create(dir.path());
        assert!(client_config(Some(&ca.ca_cert), None).is_ok());
        assert!(client_config(None, None).is_ok());

        let missing = dir.path().join("missing.pem");
        let err = client_config(Some(&missing), None).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty), None).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}
