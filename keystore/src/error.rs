//! Error types of the crate.

use std::path::PathBuf;

use thiserror::Error;

/// Why the keystore could not do what was asked.
#[derive(Debug, Error)]
pub enum KeystoreError {
    #[error("no vault in {0}: run `gateway init` first")]
    NoVault(PathBuf),
    #[error("a vault already exists in {0}")]
    VaultExists(PathBuf),
    #[error(
        "the passphrase is wrong (or the vault file is damaged); try again or restore a backup"
    )]
    WrongPassphrase,
    #[error("this vault is protected by a passphrase: give it with --passphrase-file, LETTERLOCK_PASSPHRASE or at the prompt")]
    PassphraseRequired,
    #[error("the vault key file {} is unreadable: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the vault description {} is invalid: {source}", path.display())]
    VaultConfig {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the SQLite library in this build has no SQLCipher support; the database would not be encrypted")]
    NoSqlCipher,
    #[error("no identity for {0}: add the account with `gateway init`")]
    NoIdentity(String),
    #[error("nothing is known about {0}")]
    UnknownPeer(String),
    #[error("{address} has no key with fingerprint {fingerprint}")]
    UnknownKey {
        address: String,
        fingerprint: String,
    },
    #[error("the certificate is invalid: {0}")]
    Certificate(#[source] sequoia_openpgp::anyhow::Error),
    #[error("an identity needs its secret key; this certificate has only the public part")]
    NoSecretKey,
    #[error("{fingerprint} has no user ID with an email address")]
    NoEmailUserId { fingerprint: String },
    #[error("key derivation failed: {0}")]
    Kdf(#[source] argon2::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the vault did not save it: {0}")]
    NotSaved(String),
    #[error("database error: {}", database_failure(.0))]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("DNS lookup failed: {0}")]
    Dns(#[from] crate::discovery::DnsError),
    #[error("Web Key Directory lookup failed: {0}")]
    Wkd(#[from] crate::wkd::WkdError),
}

/// A database error with what it means for the data directory: SQLite says
/// "disk I/O error" whether the disk failed or the file system turned
/// read-only (EROFS on a write), which tells a person nothing they can act on.
pub fn database_failure(error: &sqlx::Error) -> String {
    let code = match error {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    };
    // Primary result codes (the low byte of an extended one).
    let hint = match code.map(|c| c & 0xff) {
        Some(8) => Some("the data directory is read-only"),
        Some(10) => {
            Some("the data directory cannot be written or read: a read-only or failing file system")
        }
        Some(13) => Some("the disk holding the data directory is full"),
        _ => None,
    };
    match hint {
        Some(hint) => format!("{error} ({hint})"),
        None => error.to_string(),
    }
}

impl KeystoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| KeystoreError::Io { path, source }
    }
}

impl From<sequoia_openpgp::anyhow::Error> for KeystoreError {
    fn from(e: sequoia_openpgp::anyhow::Error) -> Self {
        KeystoreError::Certificate(e)
    }
}
