//! Error types of the crate.

use thiserror::Error;

/// Why an `Autocrypt:` or `Autocrypt-Gossip:` header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("the header is {0} bytes long; Autocrypt headers over 10 KiB are ignored")]
    TooLong(usize),
    #[error("the header has no addr attribute")]
    MissingAddr,
    #[error("the header has no keydata attribute")]
    MissingKeydata,
    #[error("the attribute {0:?} appears more than once")]
    DuplicateAttribute(String),
    #[error("the attribute {0:?} is unknown and not optional (optional ones start with '_')")]
    UnknownCriticalAttribute(String),
    #[error("the attribute {0:?} is not of the form name=value")]
    Malformed(String),
    #[error("addr={header_addr} does not match the sender address {expected}")]
    AddrMismatch {
        header_addr: String,
        expected: String,
    },
    #[error("keydata is not valid base64")]
    KeydataNotBase64,
    #[error("keydata is not an OpenPGP certificate: {0}")]
    KeydataNotCert(String),
    #[error("keydata holds secret key material; refusing it")]
    KeydataHasSecret,
    #[error("the message carries more than one valid Autocrypt header; all are ignored")]
    Ambiguous,
}

/// Why an Autocrypt Setup Message could not be created or imported.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error("no armored PGP MESSAGE block found in the setup message")]
    NoArmoredBlock,
    #[error("the setup code must be 36 digits (nine blocks of four); got {0} digits")]
    BadCodeFormat(usize),
    #[error("the setup message is encrypted to a public key, not with a setup code; refusing it, as it could inject a key that is not yours")]
    PublicKeyEncrypted,
    #[error("the setup code does not decrypt this message; check the code and try again")]
    WrongCode,
    #[error("the setup message is not integrity protected or is damaged: {0}")]
    Damaged(String),
    #[error("the decrypted setup message does not hold a secret key")]
    NoSecretKey,
    #[error("the certificate has no secret key material to export")]
    NotASecretKey,
    #[error("OpenPGP error: {0}")]
    OpenPgp(String),
}

impl From<std::io::Error> for SetupError {
    fn from(e: std::io::Error) -> Self {
        SetupError::OpenPgp(e.to_string())
    }
}

impl From<anyhow_compat::Error> for SetupError {
    fn from(e: anyhow_compat::Error) -> Self {
        SetupError::OpenPgp(format!("{e:#}"))
    }
}

/// sequoia-openpgp reports errors as `anyhow::Error`; we only need to render
/// them, so we name the type through sequoia's re-export.
pub(crate) mod anyhow_compat {
    pub type Error = sequoia_openpgp::anyhow::Error;
}
