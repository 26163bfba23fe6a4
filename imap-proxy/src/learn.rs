//! Keys learned from what the gateway reads: the sender's `Autocrypt:`
//! header (trust on first use, key changes recorded) and the gossip that
//! mailcrypt accepted inside an encrypted, signed message.

use std::time::SystemTime;

use autocrypt::{AutocryptHeader, Ignored, Incoming};
use keystore::{KeyStatus, Keystore, KeystoreError};
use sequoia_openpgp::Cert;

/// What one message teaches about its sender and the other recipients.
#[derive(Debug, Clone, Default)]
pub struct Lessons {
    /// The sender's update (`None`: the message may not update peer state,
    /// e.g. no single From, a delivery report, an auto-reply).
    pub incoming: Option<Incoming>,
    /// Accepted `Autocrypt-Gossip:` headers.
    pub gossip: Vec<AutocryptHeader>,
}

impl Lessons {
    /// Reads the lessons of a message as the provider holds it.
    pub fn of(provider_bytes: &[u8], gossip: Vec<AutocryptHeader>, arrival: SystemTime) -> Self {
        Self::from_facts(&mailcrypt::message_facts(provider_bytes, arrival), gossip)
    }

    /// Reads the lessons of a decrypted message: its protected header
    /// counts (`mailcrypt::decrypted_facts`: the inner Autocrypt header and
    /// Date), `shown` being the message as decrypted.
    pub fn of_decrypted(
        provider_bytes: &[u8],
        shown: &[u8],
        gossip: Vec<AutocryptHeader>,
        arrival: SystemTime,
    ) -> Self {
        Self::from_facts(
            &mailcrypt::decrypted_facts(provider_bytes, shown, arrival),
            gossip,
        )
    }

    pub(crate) fn from_facts(
        facts: &autocrypt::MessageFacts,
        gossip: Vec<AutocryptHeader>,
    ) -> Self {
        match autocrypt::examine(facts) {
            Ok(incoming) => Lessons {
                incoming: Some(incoming),
                gossip,
            },
            // Without a sender to date it by, gossip is not used either.
            Err(
                Ignored::NoFrom | Ignored::SeveralFrom | Ignored::Report | Ignored::AutoReplied,
            ) => Lessons::default(),
        }
    }
}

/// Applies a message's lessons to the keystore. Mail from the account
/// itself (Sent, Drafts) teaches nothing about the account's own key.
/// Returns the sender's key status, if the sender was updated.
pub async fn learn(
    keystore: &Keystore,
    account: &str,
    lessons: &Lessons,
    now: SystemTime,
) -> Result<Option<KeyStatus>, KeystoreError> {
    let status = record_incoming(keystore, account, lessons, now).await?;
    learn_gossip(keystore, account, lessons).await?;
    Ok(status)
}

/// The sender's part of `lessons`, recorded (nothing for the account's own
/// mail, whose key the account holds).
async fn record_incoming(
    keystore: &Keystore,
    account: &str,
    lessons: &Lessons,
    now: SystemTime,
) -> Result<Option<KeyStatus>, KeystoreError> {
    match sender_lesson(account, lessons) {
        Some(incoming) => Ok(Some(keystore.record_incoming(incoming, now).await?)),
        None => Ok(None),
    }
}

/// What `lessons` teach about their sender, unless the sender is the
/// account itself.
pub(crate) fn sender_lesson<'l>(account: &str, lessons: &'l Lessons) -> Option<&'l Incoming> {
    lessons
        .incoming
        .as_ref()
        .filter(|incoming| !autocrypt::addr_eq(&incoming.from_addr, account))
}

/// The key a message's own `Autocrypt:` header offered for its sender, and
/// what recording it did ([`record_sender`]). Viewing the message then knows
/// whether that key may check its signature ([`SenderKey::usable`]) and
/// whether it is a change the reader should see.
#[derive(Debug, Clone)]
pub struct SenderKey {
    pub cert: Cert,
    pub status: KeyStatus,
}

impl SenderKey {
    /// Whether the key may verify the message's signature: it is the peer's
    /// key now (first seen, unchanged, changed, or verified) — not a key
    /// that conflicts with a verified one, nor a rejected one.
    pub fn usable(&self) -> bool {
        matches!(
            self.status,
            KeyStatus::Tofu | KeyStatus::Changed | KeyStatus::Verified
        )
    }
}

/// Records the sender's Autocrypt header of `lessons` (of the outer header,
/// [`Lessons::of`], before a clear message is viewed, so that a first
/// signed message verifies with the key it brings; or of the protected one,
/// [`Lessons::of_decrypted`], after decryption). Nothing for the account's
/// own mail.
pub async fn record_sender(
    keystore: &Keystore,
    account: &str,
    lessons: &Lessons,
    now: SystemTime,
) -> Result<Option<SenderKey>, KeystoreError> {
    let Some(status) = record_incoming(keystore, account, lessons, now).await? else {
        return Ok(None);
    };
    let offered = lessons.incoming.as_ref().and_then(|i| i.header.as_ref());
    Ok(offered.map(|h| SenderKey {
        cert: h.cert.clone(),
        status,
    }))
}

/// Records the gossip a viewed message carried (after [`record_sender`]).
pub async fn learn_gossip(
    keystore: &Keystore,
    account: &str,
    lessons: &Lessons,
) -> Result<(), KeystoreError> {
    let Some(incoming) = &lessons.incoming else {
        return Ok(());
    };
    if autocrypt::addr_eq(&incoming.from_addr, account) {
        return Ok(());
    }
    for header in &lessons.gossip {
        if autocrypt::addr_eq(&header.addr, account) {
            continue;
        }
        keystore
            .record_gossip(&header.addr, incoming.effective_date, &header.cert)
            .await?;
    }
    Ok(())
}

/// How many Message-IDs of one message are remembered.
const MAX_IDS_RECORDED: usize = 8;

/// Remembers that a message was encrypted at the provider, so that an
/// answer to it is never sent in the clear (keystore's `encrypted_message`).
/// Both Message-IDs count: the one served (from the protected header) and
/// the provider's outer one, should they differ. Applies to the account's
/// own mail too: a reply to one's own encrypted message continues that
/// conversation. A message with no Message-ID at all leaves its text
/// instead (phrases of the first, served message): a reply quoting it is
/// linked by that. An `outsider` (`View::outsider`) is remembered too.
pub async fn learn_encrypted(
    keystore: &Keystore,
    messages: &[&[u8]],
    outsider: Option<&str>,
    now: SystemTime,
) -> Result<(), KeystoreError> {
    if let Some(address) = outsider {
        keystore.record_outsider(address, now).await?;
    }
    let mut all_ids = Vec::new();
    for message in messages {
        let (header, _) = letterlock_mime::header::split_header(message);
        // Every id of every Message-ID field, read as the SMTP side reads
        // the ids a reply refers to (comments, folding, several ids).
        // At most a few: a hostile field must not cost a write per id.
        let ids = letterlock_mime::header::values(header, "Message-ID")
            .iter()
            .flat_map(|value| mailcrypt::outgoing::message_ids(value))
            .take(MAX_IDS_RECORDED)
            .collect::<Vec<_>>();
        all_ids.extend(ids);
    }
    all_ids.sort();
    all_ids.dedup();
    keystore.record_encrypted_messages(&all_ids, now).await?;
    let any_id = !all_ids.is_empty();
    // Nothing for a reply to refer to (ciphertext without protected
    // headers, re-sent bare): what it shows is remembered instead.
    if let (false, Some(served)) = (any_id, messages.first()) {
        let phrases =
            mailcrypt::outgoing::quotable_phrases(served, Some(keystore::MAX_PHRASES_RECORDED));
        if !phrases.is_empty() {
            keystore.record_encrypted_text(&phrases, now).await?;
        }
    }
    Ok(())
}
