//! The vault: where the database key comes from, and the encrypted database.
//!
//! The key that SQLCipher uses for the whole database file is derived from
//! the user's passphrase with Argon2id (parameters and salt in `vault.json`
//! beside the database), or — only when the user chose `--no-passphrase` —
//! read from a random key file with mode 0600. Either way a copy of the data
//! directory without the passphrase reveals nothing but sizes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions as _;
use zeroize::Zeroizing;

use crate::error::KeystoreError;

pub(crate) const DATABASE: &str = "keystore.db";
const DESCRIPTION: &str = "vault.json";
const KEY_FILE: &str = "vault.key";

/// How the vault is unlocked.
#[derive(Debug)]
pub enum Unlock {
    /// A passphrase the user typed or gave in a file.
    Passphrase(SecretString),
    /// The random key file, for vaults created with `--no-passphrase`.
    KeyFile,
}

/// `vault.json`: how to get the database key. Holds no secret.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kdf", rename_all = "kebab-case")]
enum Description {
    Argon2id {
        version: u32,
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
        salt: String,
    },
    KeyFile {
        version: u32,
    },
}

/// Argon2id parameters for new vaults: 64 MiB, 3 passes (RFC 9106's second
/// recommended option), a fraction of a second on a laptop.
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

/// A 256-bit database key.
pub(crate) struct VaultKey(Zeroizing<[u8; 32]>);

impl VaultKey {
    fn pragma(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("\"x'{}'\"", hex::encode(*self.0)))
    }
}

/// Whether `dir` holds a vault.
pub fn exists(dir: &Path) -> bool {
    dir.join(DESCRIPTION).exists()
}

/// Whether the vault in `dir` needs a passphrase.
pub fn needs_passphrase(dir: &Path) -> Result<bool, KeystoreError> {
    Ok(matches!(
        read_description(dir)?,
        Description::Argon2id { .. }
    ))
}

/// Creates a new vault description (and key file) and returns the key.
pub(crate) fn create(dir: &Path, unlock: &Unlock) -> Result<VaultKey, KeystoreError> {
    if exists(dir) {
        return Err(KeystoreError::VaultExists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(KeystoreError::io(dir))?;
    restrict_dir(dir)?;
    let (description, key) = match unlock {
        Unlock::Passphrase(passphrase) => {
            let mut salt = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            let key = derive(passphrase, &salt, M_COST_KIB, T_COST, P_COST)?;
            let d = Description::Argon2id {
                version: 1,
                m_cost_kib: M_COST_KIB,
                t_cost: T_COST,
                p_cost: P_COST,
                salt: hex::encode(salt),
            };
            (d, key)
        }
        Unlock::KeyFile => {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut *key);
            let path = dir.join(KEY_FILE);
            write_private(&path, hex::encode(*key).as_bytes())?;
            (Description::KeyFile { version: 1 }, VaultKey(key))
        }
    };
    let json = serde_json::to_vec_pretty(&description).map_err(|e| KeystoreError::VaultConfig {
        path: dir.join(DESCRIPTION),
        source: e.into(),
    })?;
    write_private(&dir.join(DESCRIPTION), &json)?;
    Ok(key)
}

/// Reads the vault description and derives or loads the key.
pub(crate) fn key(
    dir: &Path,
    passphrase: Option<&SecretString>,
) -> Result<VaultKey, KeystoreError> {
    match read_description(dir)? {
        Description::Argon2id {
            m_cost_kib,
            t_cost,
            p_cost,
            salt,
            ..
        } => {
            let passphrase = passphrase.ok_or(KeystoreError::PassphraseRequired)?;
            let salt = hex::decode(&salt).map_err(|e| KeystoreError::VaultConfig {
                path: dir.join(DESCRIPTION),
                source: format!("the salt is not hex ({e})").into(),
            })?;
            derive(passphrase, &salt, m_cost_kib, t_cost, p_cost)
        }
        Description::KeyFile { .. } => {
            let path = dir.join(KEY_FILE);
            let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                KeystoreError::KeyFile {
                    path: path.clone(),
                    source: e.into(),
                }
            })?);
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text.trim(), &mut *key).map_err(|e| KeystoreError::KeyFile {
                path,
                source: format!("not 64 hex digits ({e})").into(),
            })?;
            Ok(VaultKey(key))
        }
    }
}

fn read_description(dir: &Path) -> Result<Description, KeystoreError> {
    let path = dir.join(DESCRIPTION);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeystoreError::NoVault(dir.to_path_buf()))
        }
        Err(e) => return Err(KeystoreError::io(&path)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| KeystoreError::VaultConfig {
        path,
        source: e.into(),
    })
}

fn derive(
    passphrase: &SecretString,
    salt: &[u8],
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
) -> Result<VaultKey, KeystoreError> {
    let params = Params::new(m_cost_kib, t_cost, p_cost, Some(32)).map_err(KeystoreError::Kdf)?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut *key)
        .map_err(KeystoreError::Kdf)?;
    Ok(VaultKey(key))
}

/// What a power cut may cost a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing committed is lost: every commit waits for the disk (SQLite
    /// `synchronous=FULL`). The vault: keys and trust decisions exist
    /// nowhere else.
    EveryCommit,
    /// The last commits before a power cut may be lost, never the database's
    /// consistency (WAL with `synchronous=NORMAL`: no fsync per commit, one
    /// per checkpoint). For what can be built again from elsewhere: the
    /// archive holds copies of the provider's mail, and the next sync puts
    /// back what a power cut took. An fsync per archived message was a large
    /// part of a first sync's time.
    Rebuildable,
}

/// Opens the encrypted database, creating it if needed, and checks that the
/// key fits and that SQLCipher is really in use.
pub(crate) async fn open_pool(
    path: &Path,
    key: &VaultKey,
    durability: Durability,
) -> Result<SqlitePool, KeystoreError> {
    // SQLCipher encrypts with the system libcrypto. Left to itself, OpenSSL
    // registers an `atexit` cleanup that frees its per-thread state while
    // sqlx's SQLite worker threads may still be exiting; that race aborts
    // the process at exit now and then ("double free or corruption", after
    // `keytool list` had printed its answer). `openssl_sys::init` asks for
    // no exit-time cleanup (OPENSSL_INIT_NO_ATEXIT), as rust-openssl and
    // CPython do; it must run before SQLCipher first touches OpenSSL.
    openssl_sys::init();
    let pragma = key.pragma();
    // `key` must be the first statement on every connection; sqlx issues
    // the `key` pragma before all others.
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .pragma("key", pragma.to_string())
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("secure_delete", "ON")
        .synchronous(match durability {
            Durability::EveryCommit => SqliteSynchronous::Full,
            Durability::Rebuildable => SqliteSynchronous::Normal,
        })
        // 16 MiB of decrypted pages per connection (default 2 MiB): every
        // page read from disk costs an AES decryption and an HMAC check.
        .pragma("cache_size", "-16384")
        .foreign_keys(true)
        // sqlx logs every statement at DEBUG, the `key` pragma (the vault
        // key in hex) and message text in archive queries included.
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        // One connection: SQLite drops a connection's whole page cache when
        // another connection has written, and the read path writes for
        // nearly every message, so with four each read began cold and
        // decrypted its pages again (SQLCipher: AES and an HMAC per page, a
        // fifth of a first read's CPU). Writes are serialized by SQLite
        // anyway; reads now wait for them, a few milliseconds at most.
        // Nothing holds a connection while asking the pool for another.
        .max_connections(1)
        // When a write fails with SQLITE_FULL or an I/O error, SQLite rolls
        // the transaction back itself; sqlx 0.8.6's own ROLLBACK then fails
        // and it keeps counting the connection as inside a transaction, so
        // every later BEGIN on it is refused ("non-zero transaction depth")
        // even after the disk has room again. Such a connection is closed
        // rather than reused.
        .after_release(|conn, _| {
            Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
        })
        .connect_with(options)
        .await
        .map_err(map_open_error)?;
    let version: Option<String> = sqlx::query_scalar("PRAGMA cipher_version")
        .fetch_optional(&pool)
        .await?;
    if version.is_none_or(|v| v.is_empty()) {
        return Err(KeystoreError::NoSqlCipher);
    }
    sqlx::query("SELECT count(*) FROM sqlite_master")
        .execute(&pool)
        .await
        .map_err(map_open_error)?;
    restrict_file(path)?;
    Ok(pool)
}

fn map_open_error(e: sqlx::Error) -> KeystoreError {
    match &e {
        sqlx::Error::Database(db) if db.message().contains("file is not a database") => {
            KeystoreError::WrongPassphrase
        }
        _ => KeystoreError::Database(e),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), KeystoreError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(KeystoreError::io(path))?;
    file.write_all(data).map_err(KeystoreError::io(path))?;
    file.sync_all().map_err(KeystoreError::io(path))
}

fn restrict_dir(dir: &Path) -> Result<(), KeystoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(KeystoreError::io(dir))?;
    }
    Ok(())
}

fn restrict_file(path: &Path) -> Result<(), KeystoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(KeystoreError::io(path))?;
    }
    Ok(())
}

/// Commits `tx`, leaving its connection in a state sqlx agrees with
/// whatever happens. When a COMMIT (or a statement before it) fails on a
/// full disk or an I/O error, SQLite may already have rolled the
/// transaction back itself; sqlx does not know that, its own ROLLBACK then
/// fails, and it goes on counting a transaction as open on that connection:
/// every later `BEGIN IMMEDIATE` on it is refused, and with a full disk
/// even the reads that followed failed (`tests/tests/disk_faults.rs`). So
/// COMMIT is sent as a statement, and sqlx's transaction is then ended by
/// [`roll_back`]. Use this instead of `Transaction::commit` everywhere.
pub async fn commit(mut tx: sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), sqlx::Error> {
    let committed = sqlx::query("COMMIT").execute(&mut *tx).await.map(|_| ());
    roll_back(tx).await;
    committed
}

/// Ends `tx` without keeping what it wrote, whether or not SQLite still
/// has it open (see [`commit`]): a transaction is begun first (refused,
/// harmlessly, while SQLite's is still open), for sqlx's ROLLBACK to end.
pub async fn roll_back(mut tx: sqlx::Transaction<'_, sqlx::Sqlite>) {
    let _ = sqlx::query("BEGIN").execute(&mut *tx).await;
    let _ = tx.rollback().await;
}

/// Runs `work` in a `BEGIN IMMEDIATE` transaction on `pool`, then
/// [`commit`]s it; if `work` fails, the transaction is ended with
/// [`roll_back`], never just dropped (see [`commit`] for why that matters).
pub async fn write<T, E, W>(pool: &sqlx::SqlitePool, work: W) -> Result<T, E>
where
    E: From<sqlx::Error>,
    W: for<'c> FnOnce(
        &'c mut sqlx::SqliteConnection,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
    >,
{
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let result = work(&mut tx).await;
    finish(tx, result).await
}

/// Ends `tx` as `result` says: [`commit`]ted if it is `Ok` (a commit that
/// fails becomes the error), [`roll_back`] if not.
pub async fn finish<T, E: From<sqlx::Error>>(
    tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    result: Result<T, E>,
) -> Result<T, E> {
    match result {
        Ok(value) => {
            commit(tx).await?;
            Ok(value)
        }
        Err(e) => {
            roll_back(tx).await;
            Err(e)
        }
    }
}
