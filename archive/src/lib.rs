//! The archive: decrypted messages, stored encrypted at rest, and a
//! full-text index over them.
//!
//! It is a SQLCipher database of its own (`archive.db`) in the data
//! directory, opened with the vault's key ([`keystore::Keystore::open_companion`]),
//! so a copy of the data directory reveals nothing but sizes and counts.
//! The index holds real terms (SQLite FTS5): keyed-hash search tokens leak
//! the vocabulary to anyone who knows a few archived messages, encryption
//! of the whole file does not.
//!
//! Messages are stored once per content (the SHA-256 of the provider's
//! bytes) and linked from every (account, mailbox, UIDVALIDITY, UID) where
//! they live; a message that moves keeps its entry and is never decrypted
//! again. Deleting overwrites freed pages (`secure_delete`); see
//! ARCHITECTURE.md for the compaction policy.
//!
//! The search language, as `gateway search` and the IMAP proxy's SEARCH
//! take it:
//!
//! ```
//! let query = archive::Query::parse("subject:invoice has:attachment after:2026-01-01")?;
//! assert!(query.has_attachment);
//! assert!(query.fts.is_some());
//! assert!(archive::Query::parse("colour:red").is_err());
//! # Ok::<(), archive::QueryError>(())
//! ```

mod extract;
mod fold;
mod query;
mod search;
mod snippet;
mod write;

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use thiserror::Error;

use write::Writes;

pub use query::{Query, QueryError};
pub use search::Field;

const DATABASE: &str = "archive.db";

/// Why the archive could not do what was asked.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Vault(#[from] keystore::KeystoreError),
    #[error("archive database error: {}", keystore::database_failure(.0))]
    Database(#[from] sqlx::Error),
    #[error("archive migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("the search query is not valid: {0}")]
    Query(#[from] QueryError),
    #[error("the archive write was interrupted before it was committed")]
    Interrupted,
}

/// Where a message lives at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    pub account: String,
    pub mailbox: String,
    pub uidvalidity: u32,
    pub uid: u32,
}

/// How a search orders its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Best match first (FTS5 rank).
    #[default]
    Relevance,
    NewestFirst,
}

/// Narrowing and ordering of a search.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    pub account: Option<String>,
    pub mailbox: Option<String>,
    pub limit: Option<u32>,
    pub order: Order,
}

/// One search result.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub location: Location,
    /// Unix seconds from the Date header.
    pub date: Option<i64>,
    pub from: String,
    pub subject: String,
    /// A piece of the body around the first hit, marked with `[` and `]`
    /// (the opening words when the hit is elsewhere, e.g. in the subject).
    pub snippet: String,
}

/// What [`Archive::store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// New content, indexed. `note` says what was left out of the index.
    Indexed { note: Option<&'static str> },
    /// New content that could not be parsed; stored but not indexed.
    NotIndexed,
    /// The content was already archived; only the location was added.
    Linked,
}

/// A message with its index text extracted: the CPU-bound half of storing,
/// done outside the database's write lock (and on any thread).
#[derive(Debug)]
pub struct Prepared {
    message: Vec<u8>,
    text: Option<extract::IndexText>,
}

impl Prepared {
    pub fn new(message: Vec<u8>) -> Self {
        let text = extract::extract(&message);
        Prepared { message, text }
    }

    /// The message as it will be stored and served.
    pub fn message(&self) -> &[u8] {
        &self.message
    }
}

/// The open archive.
#[derive(Debug, Clone)]
pub struct Archive {
    pool: SqlitePool,
    writes: Arc<Writes>,
}

/// The content hash the archive keys messages by.
pub fn content_hash(provider_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(provider_bytes).into()
}

impl Archive {
    /// Opens the archive of a vault, creating it on first use.
    pub async fn open(vault: &keystore::Keystore) -> Result<Self, ArchiveError> {
        // Copies of the provider's mail: a power cut may cost the last few,
        // which the next sync brings back (keystore::Durability).
        let pool = vault
            .open_companion(DATABASE, keystore::Durability::Rebuildable)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Archive {
            pool,
            writes: Arc::default(),
        })
    }

    /// The stored message for a provider copy with this content hash, if it
    /// was archived before (so it need not be decrypted again).
    pub async fn message_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, ArchiveError> {
        Ok(sqlx::query_scalar(
            "SELECT m.bytes FROM content c JOIN message m ON m.id = c.id WHERE c.hash = ?",
        )
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The stored message at a location.
    pub async fn message_at(&self, loc: &Location) -> Result<Option<Vec<u8>>, ArchiveError> {
        Ok(sqlx::query_scalar(
            "SELECT m.bytes FROM location l JOIN message m ON m.id = l.content_id
             WHERE l.account = ? AND l.mailbox = ? AND l.uidvalidity = ? AND l.uid = ?",
        )
        .bind(&loc.account)
        .bind(&loc.mailbox)
        .bind(i64::from(loc.uidvalidity))
        .bind(i64::from(loc.uid))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Archives a message at a location. `hash` is [`content_hash`] of the
    /// provider's bytes; `message` is what the user reads (decrypted).
    pub async fn store(
        &self,
        loc: &Location,
        hash: &[u8; 32],
        message: &[u8],
        encrypted: bool,
    ) -> Result<Stored, ArchiveError> {
        if self.link(loc, hash).await? {
            return Ok(Stored::Linked);
        }
        self.store_prepared(
            loc,
            hash,
            Arc::new(Prepared::new(message.to_vec())),
            encrypted,
        )
        .await
    }

    /// Whether the location holds the content with this hash already.
    async fn holds(&self, loc: &Location, hash: &[u8; 32]) -> Result<bool, ArchiveError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM location l JOIN content c ON c.id = l.content_id
             WHERE l.account = ? AND l.mailbox = ? AND l.uidvalidity = ? AND l.uid = ? AND c.hash = ?",
        )
        .bind(&loc.account)
        .bind(&loc.mailbox)
        .bind(i64::from(loc.uidvalidity))
        .bind(i64::from(loc.uid))
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Which of these content hashes are archived already: one look-up for
    /// a whole download, so that only those few go through [`Archive::link`]
    /// (on a first sync nearly none) instead of a database round trip per
    /// message standing between the download and the decryption workers.
    pub async fn known_contents(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<std::collections::HashSet<[u8; 32]>, ArchiveError> {
        let mut conn = self.pool.acquire().await?;
        Ok(write::content_ids(&mut conn, hashes)
            .await?
            .into_keys()
            .collect())
    }

    /// Adds a location to content that is already archived; `false` if there
    /// is no content with this hash (the message must be prepared and stored).
    pub async fn link(&self, loc: &Location, hash: &[u8; 32]) -> Result<bool, ArchiveError> {
        // Most messages of a first sync are new: answer those with a read,
        // without taking the write lock the indexing workers need.
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM content WHERE hash = ?")
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Ok(false);
        }
        // New mail is fetched by every open session at once; all but the
        // first find it in place, and need no write (nor a commit's fsync).
        if self.holds(loc, hash).await? {
            return Ok(true);
        }
        // Look again under the lock: the content may have been removed since.
        let (loc, hash) = (loc.clone(), *hash);
        keystore::vault::write(&self.pool, move |tx| {
            Box::pin(async move {
                let existing: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM content WHERE hash = ?")
                        .bind(&hash[..])
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(id) = existing else {
                    return Ok::<_, ArchiveError>(false);
                };
                put_location(tx, &loc, id).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The UIDs archived for a mailbox under one UIDVALIDITY, ascending.
    pub async fn uids(
        &self,
        account: &str,
        mailbox: &str,
        uidvalidity: u32,
    ) -> Result<Vec<u32>, ArchiveError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT uid FROM location WHERE account = ? AND mailbox = ? AND uidvalidity = ? ORDER BY uid",
        )
        .bind(account)
        .bind(mailbox)
        .bind(i64::from(uidvalidity))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|u| u32::try_from(u).ok())
            .collect())
    }

    /// The served messages of several UIDs of one mailbox in one query (the
    /// IMAP proxy answers a FETCH of many messages with it). UIDs not
    /// archived are absent from the answer.
    pub async fn messages_at(
        &self,
        account: &str,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<u8>)>, ArchiveError> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .at_uids(
                "SELECT l.uid, m.bytes FROM location l JOIN message m ON m.id = l.content_id",
                (account, mailbox, uidvalidity),
                uids,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(uid, bytes)| Some((u32::try_from(uid).ok()?, bytes)))
            .collect())
    }

    /// The header sections (blank line included) and whole sizes of the
    /// served messages of several UIDs of one mailbox: what a client's header
    /// sync asks for, without reading the messages. UIDs not archived are
    /// absent; a message archived before header sections were kept comes
    /// whole (still a correct header section, for what is cut from it).
    pub async fn headers_at(
        &self,
        account: &str,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<u8>, u32)>, ArchiveError> {
        // SQLite reads `m.bytes` only where there is no header row
        // (COALESCE is lazy); `length()` comes from the record header.
        let rows: Vec<(i64, Vec<u8>, i64)> = self
            .at_uids(
                "SELECT l.uid, COALESCE(h.header, m.bytes), length(m.bytes)
                 FROM location l JOIN message m ON m.id = l.content_id
                 LEFT JOIN message_header h ON h.id = l.content_id",
                (account, mailbox, uidvalidity),
                uids,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(uid, header, size)| {
                Some((u32::try_from(uid).ok()?, header, u32::try_from(size).ok()?))
            })
            .collect())
    }

    /// The served sizes of several UIDs of one mailbox (RFC822.SIZE for a
    /// mailbox-wide FETCH, without reading the messages: SQLite answers
    /// `length()` of a BLOB from the record header).
    pub async fn sizes_at(
        &self,
        account: &str,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<Vec<(u32, u32)>, ArchiveError> {
        let rows: Vec<(i64, i64)> = self
            .at_uids(
                "SELECT l.uid, length(m.bytes) FROM location l JOIN message m ON m.id = l.content_id",
                (account, mailbox, uidvalidity),
                uids,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(uid, size)| Some((u32::try_from(uid).ok()?, u32::try_from(size).ok()?)))
            .collect())
    }

    /// Runs `select` (over `location l` and what it joins) for the `uids`
    /// of one (account, mailbox, UIDVALIDITY), in one query.
    async fn at_uids<T>(
        &self,
        select: &str,
        (account, mailbox, uidvalidity): (&str, &str, u32),
        uids: &[u32],
    ) -> Result<Vec<T>, ArchiveError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; uids.len()].join(",");
        let sql = format!(
            "{select} WHERE l.account = ? AND l.mailbox = ? AND l.uidvalidity = ? \
             AND l.uid IN ({placeholders})"
        );
        let mut query = sqlx::query_as::<_, T>(&sql)
            .bind(account)
            .bind(mailbox)
            .bind(i64::from(uidvalidity));
        for uid in uids {
            query = query.bind(i64::from(*uid));
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// The UIDs archived for a mailbox, ascending, each with whether its
    /// provider copy is encrypted (the messages only the gateway can
    /// search).
    pub async fn uids_and_encryption(
        &self,
        account: &str,
        mailbox: &str,
        uidvalidity: u32,
    ) -> Result<Vec<(u32, bool)>, ArchiveError> {
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT l.uid, c.encrypted FROM location l JOIN content c ON c.id = l.content_id
             WHERE l.account = ? AND l.mailbox = ? AND l.uidvalidity = ?
             ORDER BY l.uid",
        )
        .bind(account)
        .bind(mailbox)
        .bind(i64::from(uidvalidity))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(u, encrypted)| Some((u32::try_from(u).ok()?, encrypted)))
            .collect())
    }

    /// Removes locations (expunged messages); content no location refers to
    /// any more is deleted with its index entry.
    pub async fn remove(&self, locations: &[Location]) -> Result<u64, ArchiveError> {
        let locations = locations.to_vec();
        keystore::vault::write(&self.pool, move |tx| {
            Box::pin(async move {
                let mut removed = 0;
                for loc in &locations {
                    removed += sqlx::query("DELETE FROM location WHERE account = ? AND mailbox = ? AND uidvalidity = ? AND uid = ?")
                        .bind(&loc.account)
                        .bind(&loc.mailbox)
                        .bind(i64::from(loc.uidvalidity))
                        .bind(i64::from(loc.uid))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                collect_orphans(tx).await?;
                Ok::<_, ArchiveError>(removed)
            })
        })
        .await
    }

    /// Forgets every location of a mailbox whose UIDVALIDITY is not
    /// `current` (the provider renumbered it); returns how many.
    pub async fn drop_stale_uidvalidity(
        &self,
        account: &str,
        mailbox: &str,
        current: u32,
    ) -> Result<u64, ArchiveError> {
        let (account, mailbox) = (account.to_string(), mailbox.to_string());
        keystore::vault::write(&self.pool, move |tx| {
            Box::pin(async move {
                let n = sqlx::query(
                    "DELETE FROM location WHERE account = ? AND mailbox = ? AND uidvalidity != ?",
                )
                .bind(&account)
                .bind(&mailbox)
                .bind(i64::from(current))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                collect_orphans(tx).await?;
                Ok::<_, ArchiveError>(n)
            })
        })
        .await
    }

    /// The mailboxes of an account that have archived messages.
    pub async fn mailboxes(&self, account: &str) -> Result<Vec<String>, ArchiveError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT mailbox FROM location WHERE account = ? ORDER BY mailbox",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts for `gateway status`: (messages, locations).
    pub async fn counts(&self) -> Result<(i64, i64), ArchiveError> {
        let contents: i64 = sqlx::query_scalar("SELECT count(*) FROM content")
            .fetch_one(&self.pool)
            .await?;
        let locations: i64 = sqlx::query_scalar("SELECT count(*) FROM location")
            .fetch_one(&self.pool)
            .await?;
        Ok((contents, locations))
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

async fn put_location(
    tx: &mut sqlx::SqliteConnection,
    loc: &Location,
    content_id: i64,
) -> Result<(), ArchiveError> {
    sqlx::query(
        "INSERT INTO location (account, mailbox, uidvalidity, uid, content_id) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (account, mailbox, uidvalidity, uid) DO UPDATE SET content_id = excluded.content_id",
    )
    .bind(&loc.account)
    .bind(&loc.mailbox)
    .bind(i64::from(loc.uidvalidity))
    .bind(i64::from(loc.uid))
    .bind(content_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes content no location refers to any more, with its index entry.
/// FTS5's `secure-delete` is on for these statements only (it is off for
/// stores, migration 0004): FTS5 flushes pending deletions when the next
/// statement starts, so they are applied in secure-delete mode and the
/// expunged words leave the index pages instead of staying behind a
/// tombstone (`expunged_words_leave_the_index_pages`).
async fn collect_orphans(tx: &mut sqlx::SqliteConnection) -> Result<(), ArchiveError> {
    set_secure_delete(tx, true).await?;
    sqlx::query("DELETE FROM content_fts WHERE rowid IN (SELECT id FROM content WHERE id NOT IN (SELECT content_id FROM location))")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM message_header WHERE id NOT IN (SELECT content_id FROM location)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM message WHERE id NOT IN (SELECT content_id FROM location)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM content WHERE id NOT IN (SELECT content_id FROM location)")
        .execute(&mut *tx)
        .await?;
    set_secure_delete(tx, false).await
}

async fn set_secure_delete(
    conn: &mut sqlx::SqliteConnection,
    on: bool,
) -> Result<(), ArchiveError> {
    sqlx::query("INSERT INTO content_fts (content_fts, rank) VALUES ('secure-delete', ?)")
        .bind(i64::from(on))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty archive in a vault of its own (kept while the directory is).
    pub(crate) async fn fresh() -> (tempfile::TempDir, Archive) {
        let dir = tempfile::tempdir().expect("dir");
        let vault = keystore::Keystore::create(dir.path(), keystore::Unlock::KeyFile)
            .await
            .expect("vault");
        let archive = Archive::open(&vault).await.expect("archive");
        (dir, archive)
    }

    /// A location in Alice's INBOX.
    pub(crate) fn at(uid: u32) -> Location {
        Location {
            account: "alice@example.org".into(),
            mailbox: "INBOX".into(),
            uidvalidity: 1,
            uid,
        }
    }

    /// Raw FTS5 index pages, where terms sit prefix-compressed but legible.
    async fn index_pages(archive: &Archive) -> Vec<Vec<u8>> {
        sqlx::query_scalar("SELECT block FROM content_fts_data")
            .fetch_all(&archive.pool)
            .await
            .expect("index pages")
    }

    fn holds(pages: &[Vec<u8>], needle: &[u8]) -> bool {
        pages
            .iter()
            .any(|p| p.windows(needle.len()).any(|w| w == needle))
    }

    /// An expunged message's words leave the index pages themselves, not
    /// only its results (FTS5 without secure-delete only adds a tombstone).
    /// Several messages, so that each word's list crosses the sizes where
    /// FTS5 stores it differently, and stores after the delete too.
    #[tokio::test]
    async fn expunged_words_leave_the_index_pages() {
        let (dir, archive) = fresh().await;
        let common = "harbour ".repeat(200);
        for uid in 1..=20u32 {
            let secret = if uid == 7 { "quetzalwhisper" } else { "" };
            let body = format!(
                "From: bob@example.org\r\nSubject: note {uid}\r\n\r\n{common} {secret} {}\r\n",
                "quetzalwhisper2 ".repeat(if uid == 7 { 100 } else { 0 })
            );
            let hash = content_hash(body.as_bytes());
            archive
                .store(&at(uid), &hash, body.as_bytes(), true)
                .await
                .expect("store");
        }
        assert!(holds(&index_pages(&archive).await, b"tzalwhisper"));
        archive.remove(&[at(7)]).await.expect("expunge");
        let later = "From: bob@example.org\r\nSubject: later\r\n\r\nharbour again\r\n";
        archive
            .store(
                &at(21),
                &content_hash(later.as_bytes()),
                later.as_bytes(),
                true,
            )
            .await
            .expect("store");
        assert!(
            !holds(&index_pages(&archive).await, b"tzalwhisper"),
            "the expunged message's words are still in the index pages"
        );

        // The other way content leaves: the provider renumbered the
        // mailbox (a new UIDVALIDITY), after a restart (the vault and the
        // archive opened again, the index's settings read from the file).
        archive.close().await;
        let vault = keystore::Keystore::open(dir.path(), None)
            .await
            .expect("vault again");
        let again = Archive::open(&vault).await.expect("archive again");
        let body = "From: bob@example.org\r\nSubject: renumbered\r\n\r\nxylophonemarmot\r\n";
        again
            .store(
                &at(30),
                &content_hash(body.as_bytes()),
                body.as_bytes(),
                true,
            )
            .await
            .expect("store");
        assert!(holds(&index_pages(&again).await, b"lophonemarmot"));
        again
            .drop_stale_uidvalidity("alice@example.org", "INBOX", 2)
            .await
            .expect("renumbered");
        assert!(
            !holds(&index_pages(&again).await, b"lophonemarmot"),
            "a dropped message's words are still in the index pages"
        );
    }

    #[tokio::test]
    async fn known_contents_answers_for_many_hashes_at_once() {
        let (_dir, archive) = fresh().await;
        let mut archived = Vec::new();
        for uid in 1..=3u32 {
            let body = format!("From: bob@example.org\r\nSubject: n{uid}\r\n\r\nbody {uid}\r\n");
            let hash = content_hash(body.as_bytes());
            archive
                .store(&at(uid), &hash, body.as_bytes(), false)
                .await
                .expect("stored");
            archived.push(hash);
        }
        // More hashes than one statement takes, the archived ones among them.
        let mut asked: Vec<[u8; 32]> = (0..1200u32)
            .map(|n| content_hash(format!("never archived {n}").as_bytes()))
            .collect();
        asked.insert(10, archived[0]);
        asked.insert(700, archived[2]);
        let known = archive.known_contents(&asked).await.expect("answered");
        assert_eq!(
            known,
            [archived[0], archived[2]].into_iter().collect(),
            "exactly the archived hashes asked for"
        );
        assert!(archive
            .known_contents(&[])
            .await
            .expect("answered")
            .is_empty());
    }
}
