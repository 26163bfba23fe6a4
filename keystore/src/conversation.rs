//! Which conversations are encrypted.
//!
//! The gateway remembers the Message-ID of every message it read or sent
//! encrypted. An outgoing message that answers or forwards one of them (its
//! In-Reply-To, References or X-Forwarded-Message-Id names it) quotes, as
//! far as anyone can tell, text the provider must never see; the SMTP proxy
//! encrypts it or refuses it. This closes the decryption oracle of
//! "Re: What's up Johnny?" (2019): a message built to be answered in the
//! clear by someone whose client decrypted it.
//!
//! An encrypted message without any Message-ID (ciphertext re-sent bare,
//! as gpg or Enigmail leave it without protected headers) gives a reply
//! nothing to refer to; phrases of its text are remembered instead, and a
//! message quoting one of them belongs to the conversation all the same.
//!
//! Someone who sends on a ciphertext that was neither encrypted to them nor
//! signed by them could not read it: they are remembered as an outsider, and
//! no message of an encrypted conversation goes to them, even encrypted.
//!
//! When the vault takes no writes (a full or failed disk) the message is
//! still read and sent, so the ID must not be forgotten: it is kept in
//! memory ([`Unsaved`]), counted as encrypted by every lookup, and written
//! with the next record that succeeds.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::time::to_db;
use crate::{Keystore, KeystoreError};

const INSERT_ENCRYPTED: &str = "INSERT INTO encrypted_message (id_hash, seen) VALUES (?, ?)
     ON CONFLICT (id_hash) DO UPDATE SET seen = excluded.seen";

/// At most this many of an outgoing message's references are looked up (a
/// long thread's References field lists every ancestor; the nearest are last).
pub const MAX_LOOKUPS: usize = 100;

impl Keystore {
    /// Records that the message with this Message-ID was read or sent
    /// encrypted. An empty ID is ignored.
    ///
    /// When the vault cannot be written the ID is still remembered, in
    /// memory until a later record succeeds, and the error is returned for
    /// the caller to log: lookups count it as encrypted either way.
    pub async fn record_encrypted_message(
        &self,
        message_id: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        self.record_encrypted_messages(&[message_id], now).await
    }

    /// As [`Keystore::record_encrypted_message`] for several Message-IDs
    /// (those of one message: served and outer), in one transaction shared
    /// with whatever else reading mail records meanwhile ([`crate::group`]):
    /// one wait for the disk per group instead of one per ID, on every
    /// encrypted message a first mailbox sync reads.
    pub async fn record_encrypted_messages<S: AsRef<str>>(
        &self,
        message_ids: &[S],
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let hashes: Vec<[u8; 32]> = message_ids
            .iter()
            .filter_map(|id| id_hash(id.as_ref()))
            .collect();
        if hashes.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.insert_encrypted_all(&hashes, now).await {
            for hash in hashes {
                self.unsaved_ids.keep(hash);
            }
            return Err(e);
        }
        // The vault takes writes (again): save what was kept in memory. An
        // ID leaves memory only once it is saved, so that no lookup meanwhile
        // misses it, and none is lost if a later one fails.
        let pending = self.unsaved_ids.pending();
        if pending.is_empty() {
            return Ok(());
        }
        let mut saved = Vec::new();
        let mut result = Ok(());
        for pending in pending {
            match self.insert_encrypted(&pending, now).await {
                Ok(()) => saved.push(pending),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.unsaved_ids.forget(&saved);
        result
    }

    /// One grouped write ([`crate::group`]): a first sync records the IDs
    /// of every encrypted message it reads.
    async fn insert_encrypted_all(
        &self,
        hashes: &[[u8; 32]],
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let hashes = hashes.to_vec();
        self.grouped(move |tx| {
            Box::pin(async move {
                for hash in &hashes {
                    sqlx::query(INSERT_ENCRYPTED)
                        .bind(&hash[..])
                        .bind(to_db(now))
                        .execute(&mut *tx)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn insert_encrypted(
        &self,
        hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        sqlx::query(INSERT_ENCRYPTED)
            .bind(&hash[..])
            .bind(to_db(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether any of these Message-IDs (the last [`MAX_LOOKUPS`]) belongs
    /// to a message that was read or sent encrypted.
    pub async fn refers_to_encrypted(&self, message_ids: &[String]) -> Result<bool, KeystoreError> {
        let skip = message_ids.len().saturating_sub(MAX_LOOKUPS);
        for id in &message_ids[skip..] {
            let Some(hash) = id_hash(id) else { continue };
            if self.unsaved_ids.holds(&hash) {
                return Ok(true);
            }
            let found: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM encrypted_message WHERE id_hash = ?")
                    .bind(&hash[..])
                    .fetch_optional(&self.pool)
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// At most this many phrases of one encrypted message are remembered
/// (`mailcrypt::outgoing::quotable_phrases` samples a longer text evenly).
pub const MAX_PHRASES_RECORDED: usize = 2_000;

/// At most this many phrases are kept in all (about 25 MB; 250 long
/// messages without a Message-ID, or many more short ones).
const MAX_PHRASES_KEPT: i64 = 500_000;

/// At most this many phrases of one outgoing message are looked up.
const MAX_PHRASES_LOOKED_UP: usize = 100_000;

/// Phrases looked up with one query.
const PHRASE_BATCH: usize = 500;

impl Keystore {
    /// Records phrases of an encrypted message that had no Message-ID
    /// (`mailcrypt::outgoing::quotable_phrases`), so that a reply quoting it
    /// is recognised by its text. Only truncated hashes are stored.
    pub async fn record_encrypted_text<S: AsRef<str>>(
        &self,
        phrases: &[S],
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        self.record_phrases(phrases, now, MAX_PHRASES_KEPT).await
    }

    async fn record_phrases<S: AsRef<str>>(
        &self,
        phrases: &[S],
        now: SystemTime,
        cap: i64,
    ) -> Result<(), KeystoreError> {
        let hashes: Vec<_> = phrases
            .iter()
            .take(MAX_PHRASES_RECORDED)
            .map(|phrase| phrase_hash(phrase.as_ref()))
            .collect();
        self.grouped(move |tx| {
            Box::pin(async move {
                for hash in &hashes {
                    sqlx::query(
                        "INSERT INTO encrypted_text (phrase_hash, seen) VALUES (?, ?)
                         ON CONFLICT (phrase_hash) DO UPDATE SET seen = excluded.seen",
                    )
                    .bind(&hash[..])
                    .bind(to_db(now))
                    .execute(&mut *tx)
                    .await?;
                }
                // Anyone can encrypt to the reader, so the table is bounded:
                // past the cap the phrases seen longest ago go first.
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM encrypted_text")
                    .fetch_one(&mut *tx)
                    .await?;
                let excess = count - cap;
                if excess > 0 {
                    sqlx::query(
                        "DELETE FROM encrypted_text WHERE phrase_hash IN
                         (SELECT phrase_hash FROM encrypted_text ORDER BY seen LIMIT ?)",
                    )
                    .bind(excess)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Whether any phrase is recorded at all: most vaults hold none, and
    /// then an outgoing message need not be taken apart for its phrases.
    pub async fn holds_encrypted_text(&self) -> Result<bool, KeystoreError> {
        let found: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM encrypted_text LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Whether any of these phrases of an outgoing message is one recorded
    /// by [`Keystore::record_encrypted_text`]: the message quotes an
    /// encrypted message that had no Message-ID.
    pub async fn quotes_encrypted_text<S: AsRef<str>>(
        &self,
        phrases: &[S],
    ) -> Result<bool, KeystoreError> {
        let phrases = &phrases[..phrases.len().min(MAX_PHRASES_LOOKED_UP)];
        for batch in phrases.chunks(PHRASE_BATCH) {
            let marks = vec!["?"; batch.len()].join(", ");
            let sql =
                format!("SELECT 1 FROM encrypted_text WHERE phrase_hash IN ({marks}) LIMIT 1");
            let mut query = sqlx::query_as::<_, (i64,)>(&sql);
            for phrase in batch {
                query = query.bind(phrase_hash(phrase.as_ref()).to_vec());
            }
            if query.fetch_optional(&self.pool).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records that `address` sent an encrypted message that was not
    /// encrypted to them and that they did not sign: they could not read
    /// what they sent.
    pub async fn record_outsider(
        &self,
        address: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        sqlx::query(
            "INSERT INTO outsider (address_hash, seen) VALUES (?, ?)
             ON CONFLICT (address_hash) DO UPDATE SET seen = excluded.seen",
        )
        .bind(&address_hash(address)[..])
        .bind(to_db(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Those of `addresses` recorded by [`Keystore::record_outsider`].
    pub async fn outsiders_among(
        &self,
        addresses: &[String],
    ) -> Result<Vec<String>, KeystoreError> {
        let mut found = Vec::new();
        for address in addresses {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM outsider WHERE address_hash = ?")
                    .bind(&address_hash(address)[..])
                    .fetch_optional(&self.pool)
                    .await?;
            if row.is_some() {
                found.push(address.clone());
            }
        }
        Ok(found)
    }
}

fn address_hash(address: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"letterlock outsider v1\0")
        .chain_update(address.trim().to_lowercase().as_bytes())
        .finalize()
        .into()
}

/// IDs of encrypted messages that could not be written to the vault, shared
/// by every clone of a [`crate::Keystore`].
///
/// Bounded: past [`Unsaved::LIMIT`] IDs (a disk broken for that many
/// encrypted messages) the oldest are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Unsaved(Mutex<UnsavedIds>);

#[derive(Debug, Default)]
struct UnsavedIds {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Unsaved {
    const LIMIT: usize = 100_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, UnsavedIds> {
        // The set stays consistent even if a holder panicked.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, hash: [u8; 32]) {
        let mut ids = self.lock();
        if !ids.set.insert(hash) {
            return;
        }
        ids.order.push_back(hash);
        if ids.order.len() > Self::LIMIT {
            if let Some(oldest) = ids.order.pop_front() {
                ids.set.remove(&oldest);
            }
        }
    }

    fn holds(&self, hash: &[u8; 32]) -> bool {
        self.lock().set.contains(hash)
    }

    /// The IDs held, oldest first.
    fn pending(&self) -> Vec<[u8; 32]> {
        self.lock().order.iter().copied().collect()
    }

    /// Lets go of IDs that are saved now.
    fn forget(&self, saved: &[[u8; 32]]) {
        if saved.is_empty() {
            return;
        }
        let mut ids = self.lock();
        for hash in saved {
            ids.set.remove(hash);
        }
        let UnsavedIds { set, order } = &mut *ids;
        order.retain(|hash| set.contains(hash));
    }
}

/// The key under which an ID is kept: angle brackets and white space do not
/// count (clients differ in both), the rest is compared exactly.
fn id_hash(message_id: &str) -> Option<[u8; 32]> {
    let id: String = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (!id.is_empty()).then(|| Sha256::digest(id.as_bytes()).into())
}

fn phrase_hash(phrase: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"letterlock quoted phrase v1\0")
        .chain_update(phrase.as_bytes())
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_phrase_table_is_bounded_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Keystore::create(dir.path(), crate::Unlock::KeyFile)
            .await
            .expect("create");
        let at =
            |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + s);
        let old: Vec<String> = (0..10).map(|i| format!("old phrase {i}")).collect();
        let new: Vec<String> = (0..3).map(|i| format!("new phrase {i}")).collect();
        store.record_phrases(&old, at(0), 5).await.expect("old");
        store.record_phrases(&new, at(1), 5).await.expect("new");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM encrypted_text")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(count, 5);
        for phrase in &new {
            let found = store.quotes_encrypted_text(&[phrase]).await;
            assert!(found.expect("look up"), "{phrase} kept");
        }
        let kept_old = {
            let mut n = 0;
            for phrase in &old {
                n += usize::from(
                    store
                        .quotes_encrypted_text(&[phrase])
                        .await
                        .expect("look up"),
                );
            }
            n
        };
        assert_eq!(kept_old, 2, "the oldest went first");
    }

    #[test]
    fn unsaved_ids_are_bounded_and_forget_the_oldest_first() {
        let unsaved = Unsaved::default();
        let id = |n: usize| -> [u8; 32] {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(n as u64).to_le_bytes());
            h
        };
        for n in 0..=Unsaved::LIMIT {
            unsaved.keep(id(n));
        }
        unsaved.keep(id(5));
        assert!(!unsaved.holds(&id(0)));
        assert!(unsaved.holds(&id(1)) && unsaved.holds(&id(Unsaved::LIMIT)));
        let taken = unsaved.pending();
        assert_eq!(taken.len(), Unsaved::LIMIT);
        assert_eq!(taken[0], id(1));
        unsaved.forget(&taken[..1]);
        assert!(!unsaved.holds(&id(1)));
        // The rest stay until they are saved, in their order.
        assert!(unsaved.holds(&id(2)));
        assert_eq!(unsaved.pending()[0], id(2));
    }

    #[test]
    fn brackets_and_space_do_not_count() {
        assert_eq!(id_hash("<a@x>"), id_hash(" a@x "));
        assert_eq!(id_hash("<a@\r\n x>"), id_hash("<a@x>"));
        assert_ne!(id_hash("<a@x>"), id_hash("<A@x>"));
        assert_eq!(id_hash("<>"), None);
    }
}
