//! The Letterlock vault: own identities, what is known about each
//! correspondent, and how far each of their keys is trusted.
//!
//! Everything lives in one SQLCipher database (`keystore.db`), keyed from the
//! user's passphrase with Argon2id or from a key file (see [`vault`]), so a
//! copy of the data directory reveals no address, key or fingerprint.
//!
//! The Autocrypt rules themselves are the `autocrypt` crate's: this crate
//! stores [`autocrypt::PeerState`] and applies trust on top of it:
//!
//! - a newer Autocrypt key replaces an unverified peer's key, and the change
//!   is recorded as an event;
//! - a verified key is never replaced by itself: a different key is stored
//!   as a conflict and mail keeps going to the verified key;
//! - gossip never overrides a directly received key (autocrypt's rule);
//! - a rejected key is never used.
//!
//! It also remembers which messages were encrypted (by a hash of their Message-ID), so
//! that a reply to one is never sent in the clear.
//!
//! Several processes (the gateway and `keytool`) may use the same database
//! at once: SQLite's WAL mode and a busy timeout serialize their writes.
//!
//! ```no_run
//! # async fn example() -> Result<(), keystore::KeystoreError> {
//! use keystore::Keystore;
//!
//! // A vault created with a key file needs no passphrase.
//! let data_dir = std::path::Path::new("/home/alice/.local/share/letterlock");
//! let store = Keystore::open(data_dir, None).await?;
//! // Whose key may sign for Bob: verified first, else the one trusted on first use.
//! if let Some(key) = store.signing_key("bob@example.org").await? {
//!     println!("{}", key.fingerprint);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The fingerprint a person reads out (or a QR code holds), in the form the
//! store keeps:
//!
//! ```
//! assert_eq!(
//!     keystore::normalize_fingerprint("openpgp4fpr:9e3a 1b2c"),
//!     "9E3A1B2C"
//! );
//! ```

mod alerts;
mod conversation;
mod discovery;
mod error;
mod group;
mod identity;
mod peers;
mod throttle;
mod time;
pub mod vault;
mod web_login;
pub mod wkd;

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use sqlx::SqlitePool;

pub use alerts::{ContactEvent, Refusal, REFUSALS_KEPT};
pub use conversation::{MAX_LOOKUPS, MAX_PHRASES_RECORDED};
pub use discovery::{openpgpkey_name, Discovered, Discovery, DnsConfig};
pub use error::{database_failure, KeystoreError};
pub use group::GroupCommit;
pub use identity::Identity;
pub use peers::{
    normalize_fingerprint, EventKind, FingerprintCheck, KeyEvent, KeyRecord, KeySource, KeyStatus,
    PeerSummary, TrustLevel,
};
pub use throttle::{
    Attempt as LoginAttempt, Busy as LoginsWaiting, LoginThrottle, LoginVerdict,
    MAX_WAITING as MAX_WAITING_LOGINS,
};
pub use vault::Durability;
pub use vault::Unlock;
pub use wkd::{WkdClient, WkdError};

/// An open vault.
#[derive(Clone)]
pub struct Keystore {
    pool: SqlitePool,
    dir: PathBuf,
    /// Kept (zeroized on drop) so companion databases such as the archive
    /// open with the same key without asking for the passphrase again.
    key: std::sync::Arc<vault::VaultKey>,
    /// Failed logins, shared by every clone (both proxies).
    login_throttle: std::sync::Arc<LoginThrottle>,
    /// IDs of encrypted messages the vault could not take, shared likewise.
    unsaved_ids: std::sync::Arc<conversation::Unsaved>,
    /// What reading mail records, committed in groups ([`group`]).
    group: std::sync::Arc<group::Group>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Keystore {
    /// Creates a new vault in `dir` (which may exist but must not hold one).
    pub async fn create(dir: &Path, unlock: Unlock) -> Result<Self, KeystoreError> {
        let key = vault::create(dir, &unlock)?;
        Self::connect(dir, key).await
    }

    /// Opens the vault in `dir`. `passphrase` is needed unless the vault was
    /// created with a key file.
    pub async fn open(
        dir: &Path,
        passphrase: Option<&SecretString>,
    ) -> Result<Self, KeystoreError> {
        if !vault::exists(dir) {
            return Err(KeystoreError::NoVault(dir.to_path_buf()));
        }
        let key = vault::key(dir, passphrase)?;
        Self::connect(dir, key).await
    }

    async fn connect(dir: &Path, key: vault::VaultKey) -> Result<Self, KeystoreError> {
        let pool =
            vault::open_pool(&dir.join(vault::DATABASE), &key, Durability::EveryCommit).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Keystore {
            pool,
            dir: dir.to_path_buf(),
            key: std::sync::Arc::new(key),
            login_throttle: std::sync::Arc::default(),
            unsaved_ids: std::sync::Arc::default(),
            group: std::sync::Arc::default(),
        })
    }

    /// Opens (creating if needed) another SQLCipher database in the data
    /// directory under the vault's key, e.g. the archive, as durable as
    /// `durability` says. The caller runs its own migrations.
    pub async fn open_companion(
        &self,
        file_name: &str,
        durability: Durability,
    ) -> Result<SqlitePool, KeystoreError> {
        vault::open_pool(&self.dir.join(file_name), &self.key, durability).await
    }

    /// A transaction that takes the write lock at once (for [`group`]; end
    /// it with `vault::commit` or `vault::roll_back`). A deferred one that
    /// later upgrades from reading to writing fails with "database is locked"
    /// when another process wrote in between, without waiting.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, KeystoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Failed logins through either proxy ([`LoginThrottle`]).
    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.login_throttle
    }

    /// The data directory this vault lives in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Closes all connections, checkpointing the write-ahead log.
    pub async fn close(self) {
        self.pool.close().await;
    }
}
