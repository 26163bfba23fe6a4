//! Which conversations are encrypted.
//!
//! The gateway remembers the Message-ID of every message it read or sent
//! encrypted. An outgoing message that answers or forwards one of them (its
//! In-Reply-To, References or X-Forwarded-Message-Id names it) quotes, as
//! far as anyone can tell, text the provider must never see; the SMTP proxy
//! encrypts it or refuses it. This closes the decryption oracle of
//! "Re: What's up Johnny?" (2019): a message built to be answered in the
//! clear by someone whose client decrypted it.

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::time::to_db;
use crate::{Keystore, KeystoreError};

/// At most this many of an outgoing message's references are looked up (a
/// long thread's References field lists every ancestor; the nearest are last).
pub const MAX_LOOKUPS: usize = 100;

impl Keystore {
    /// Records that the message with this Message-ID was read or sent
    /// encrypted. An empty ID is ignored.
    pub async fn record_encrypted_message(
        &self,
        message_id: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let Some(hash) = id_hash(message_id) else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO encrypted_message (id_hash, seen) VALUES (?, ?)
             ON CONFLICT (id_hash) DO UPDATE SET seen = excluded.seen",
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_space_do_not_count() {
        assert_eq!(id_hash("<a@x>"), id_hash(" a@x "));
        assert_eq!(id_hash("<a@\r\n x>"), id_hash("<a@x>"));
        assert_ne!(id_hash("<a@x>"), id_hash("<A@x>"));
        assert_eq!(id_hash("<>"), None);
    }
}
