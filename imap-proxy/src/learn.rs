//! Keys learned from what the gateway reads: the sender's `Autocrypt:`
//! header (trust on first use, key changes recorded) and the gossip that
//! mailcrypt accepted inside an encrypted, signed message.

use std::time::SystemTime;

use autocrypt::{AutocryptHeader, Ignored, Incoming};
use keystore::{KeyStatus, Keystore, KeystoreError};

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
        let facts = mailcrypt::message_facts(provider_bytes, arrival);
        match autocrypt::examine(&facts) {
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
    let Some(incoming) = &lessons.incoming else {
        return Ok(None);
    };
    if autocrypt::addr_eq(&incoming.from_addr, account) {
        return Ok(None);
    }
    let status = keystore.record_incoming(incoming, now).await?;
    for header in &lessons.gossip {
        if autocrypt::addr_eq(&header.addr, account) {
            continue;
        }
        keystore
            .record_gossip(&header.addr, incoming.effective_date, &header.cert)
            .await?;
    }
    Ok(Some(status))
}
