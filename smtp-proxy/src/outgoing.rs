//! From a submitted message to what goes to the provider: the decision and
//! the copies.
//!
//! Encrypted, the To/Cc recipients share one copy (with gossip when there
//! is more than one of them) and each Bcc recipient gets a copy of their
//! own with hidden recipient key IDs and no gossip. In the clear, one copy
//! for everybody, with the sender's Autocrypt header and without Bcc. Any
//! failure on the way to an encrypted message is a refusal: nothing is
//! returned that could be sent.

use std::sync::Arc;
use std::time::SystemTime;

use autocrypt::{AutocryptHeader, PeerState};
use keystore::{Discovery, Identity, Keystore};
use mailcrypt::outgoing::{
    carries_decrypted_message, field_value, header_addresses, referenced_message_ids, strip_fields,
};
use mailcrypt::EncryptRequest;
use sequoia_openpgp::Cert;

use crate::decision::{decide, Decision, Override, Policy, Recipient};
use crate::relay::Copy;
use crate::reply::Reply;
use crate::session::Transaction;
use crate::submission;

/// The sending account.
#[derive(Debug, Clone)]
pub struct Account {
    pub address: String,
    pub policy: Policy,
}

/// What will be sent.
#[derive(Debug)]
pub struct Outgoing {
    pub copies: Vec<Copy>,
    pub encrypted: bool,
}

/// The sending account's own key and Autocrypt header, loaded once per
/// login rather than for every message.
#[derive(Debug)]
pub struct OwnKey {
    identity: Identity,
    autocrypt: AutocryptHeader,
}

impl OwnKey {
    /// Loads the account's key pair from the vault. `Err` is the refusal
    /// for every message while it is missing.
    pub async fn load(keystore: &Keystore, address: &str, now: SystemTime) -> Result<Self, Reply> {
        let identity = keystore.identity(address).await.map_err(|e| {
            refusal(format!(
                "there is no key for {address} in the vault ({e}); run `gateway init` for this account"
            ))
        })?;
        let key = autocrypt::key::minimize(&identity.cert, address, now)
            .map_err(|e| refusal(format!("your own key cannot be used ({e})")))?;
        let autocrypt = AutocryptHeader::new(address, identity.prefer_encrypt, key);
        Ok(OwnKey {
            identity,
            autocrypt,
        })
    }
}

/// Reads, decides and (if so decided) encrypts one message. `Err` is the
/// reply for the client; nothing may be sent then.
pub async fn prepare(
    transaction: Transaction,
    account: &Account,
    own: Arc<OwnKey>,
    keystore: &Keystore,
    discovery: Option<&Discovery>,
    now: SystemTime,
) -> Result<Outgoing, Reply> {
    let Transaction {
        mail_from,
        recipients,
        smtputf8,
        data,
        ..
    } = transaction;
    let mut submission = submission::read(data, &recipients)?;
    submission.answers_encrypted = encrypted_conversation(&submission.message, keystore).await?;

    // Look keys up for every recipient; DNS only where the keystore has
    // none and encryption is possible at all (a look-up tells the resolver
    // whom you write to).
    let wants_keys = submission.answers_encrypted
        || account.policy == Policy::Required
        || submission.request != Some(Override::Plain);
    let mut peers: Vec<(String, Option<PeerState>)> = Vec::new();
    for address in submission.visible.iter().chain(&submission.hidden) {
        let mut peer = keystore
            .effective_peer(address)
            .await
            .map_err(|e| refusal(format!("the keys for {address} could not be read ({e})")))?;
        let usable = peer
            .as_ref()
            .and_then(|p| p.target_key())
            .is_some_and(|k| autocrypt::key::is_encryption_usable(k, now));
        if !usable && wants_keys {
            if let Some(discovery) = discovery {
                match discovery.discover(keystore, address, now).await {
                    Ok(found) if !found.certs.is_empty() => {
                        peer = keystore.effective_peer(address).await.map_err(|e| {
                            refusal(format!("the keys for {address} could not be read ({e})"))
                        })?;
                    }
                    Ok(found) => {
                        if let Some(e) = found.wkd_failed {
                            tracing::info!(%address, error = %e, "no key found: the Web Key Directory could not be asked");
                        }
                    }
                    Err(e) => tracing::info!(%address, error = %e, "no key found by DNS or WKD"),
                }
            }
        }
        peers.push((address.clone(), peer));
    }

    // Who, among them, sent on a ciphertext they could not read: asked only
    // for a message of an encrypted conversation, the one it matters for.
    let outsiders = if submission.answers_encrypted {
        let addresses: Vec<String> = peers.iter().map(|(a, _)| a.clone()).collect();
        keystore.outsiders_among(&addresses).await.map_err(|e| {
            refusal(format!(
                "it could not be told whether its recipients may read the conversation ({e})"
            ))
        })?
    } else {
        Vec::new()
    };
    let message_id = field_value(&submission.message, "Message-ID");
    let account = account.clone();
    let peers: Vec<Peer> = peers
        .into_iter()
        .map(|(address, state)| Peer {
            outsider: outsiders.iter().any(|o| autocrypt::addr_eq(o, &address)),
            address,
            state,
        })
        .collect();
    let work = move || build(submission, &peers, &account, &own, mail_from, smtputf8, now);
    let outgoing = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| refusal(format!("the encryption task failed ({e})")))??;
    // Replies to this message are part of an encrypted conversation. (If it
    // is not sent after all, the record does no harm.)
    if let (true, Some(id)) = (outgoing.encrypted, message_id) {
        if let Err(e) = keystore.record_encrypted_message(&id, now).await {
            tracing::warn!(error = %e, "an encrypted message's ID not saved; kept in memory until the data directory takes writes");
        }
    }
    Ok(outgoing)
}

/// Whether the message belongs to an encrypted conversation: it refers to
/// a message read or sent encrypted, or it carries one the gateway
/// decrypted (forwarded as an attachment, or edited as new). If the
/// keystore cannot tell, nothing is sent.
async fn encrypted_conversation(message: &[u8], keystore: &Keystore) -> Result<bool, Reply> {
    if carries_decrypted_message(message) {
        return Ok(true);
    }
    let unknown = |e: keystore::KeystoreError| {
        refusal(format!(
            "it could not be told whether it answers an encrypted message ({e})"
        ))
    };
    let ids = referenced_message_ids(message);
    if !ids.is_empty() && keystore.refers_to_encrypted(&ids).await.map_err(unknown)? {
        return Ok(true);
    }
    // An encrypted message without any Message-ID is linked by its text: a
    // message quoting it answers it, whatever its header says.
    if !keystore.holds_encrypted_text().await.map_err(unknown)? {
        return Ok(false);
    }
    let owned = message.to_vec();
    let phrases =
        tokio::task::spawn_blocking(move || mailcrypt::outgoing::quotable_phrases(&owned, None))
            .await
            .map_err(|e| refusal(format!("the quote check failed ({e})")))?;
    keystore
        .quotes_encrypted_text(&phrases)
        .await
        .map_err(unknown)
}

/// A recipient and what the keystore knows about them.
struct Peer {
    address: String,
    state: Option<PeerState>,
    /// See [`Recipient::outsider`].
    outsider: bool,
}

fn build(
    submission: submission::Submission,
    peers: &[Peer],
    account: &Account,
    own: &OwnKey,
    mail_from: String,
    smtputf8: bool,
    now: SystemTime,
) -> Result<Outgoing, Reply> {
    let recipients: Vec<Recipient<'_>> = peers
        .iter()
        .map(|p| Recipient {
            address: &p.address,
            peer: p.state.as_ref(),
            outsider: p.outsider,
        })
        .collect();
    let decision = decide(
        &recipients,
        account.policy,
        submission.request,
        own.identity.prefer_encrypt,
        submission.answers_encrypted,
        now,
    );
    let sender_is_account = header_addresses(&submission.message, &["From"])
        .iter()
        .any(|from| autocrypt::addr_eq(from, &account.address));
    let identity = &own.identity;
    let own_header = sender_is_account.then_some(&own.autocrypt);
    match decision {
        Decision::Refuse(sentence) => Err(Reply::new(550, "5.7.1", sentence)),
        Decision::Plain => {
            let mut message = strip_fields(&submission.message, &["Bcc"]);
            if let Some(header) = own_header {
                message = mailcrypt::add_autocrypt_header(&message, header);
            }
            Ok(Outgoing {
                copies: vec![Copy {
                    mail_from,
                    recipients: submission
                        .visible
                        .iter()
                        .chain(&submission.hidden)
                        .cloned()
                        .collect(),
                    data: message,
                    smtputf8,
                }],
                encrypted: false,
            })
        }
        Decision::Encrypt(keys) => {
            // `decide` encrypts only when every recipient has a key, in
            // recipient order; anything else is a bug to stop on.
            if keys.len() != peers.len() {
                return Err(refusal(
                    "not every recipient has a key, yet encryption was chosen".into(),
                ));
            }
            let visible = submission.visible.len();
            let (to_cc, bcc) = keys.split_at(visible);
            let mut copies = Vec::new();
            if !to_cc.is_empty() {
                let gossip = if to_cc.len() > 1 {
                    let pairs: Vec<(&str, &Cert)> = submission
                        .visible
                        .iter()
                        .map(String::as_str)
                        .zip(to_cc.iter().copied())
                        .collect();
                    autocrypt::gossip::headers_to_emit(&pairs, now).map_err(|e| {
                        refusal(format!("a recipient's key cannot be gossiped ({e})"))
                    })?
                } else {
                    Vec::new()
                };
                let certs: Vec<Cert> = to_cc.iter().map(|c| (*c).clone()).collect();
                let data = encrypt(
                    &submission.message,
                    identity,
                    &certs,
                    own_header,
                    &gossip,
                    false,
                    now,
                )?;
                copies.push(Copy {
                    mail_from: mail_from.clone(),
                    recipients: submission.visible.clone(),
                    data,
                    smtputf8,
                });
            }
            for (address, key) in submission.hidden.iter().zip(bcc) {
                let data = encrypt(
                    &submission.message,
                    identity,
                    &[(*key).clone()],
                    own_header,
                    &[],
                    true,
                    now,
                )?;
                copies.push(Copy {
                    mail_from: mail_from.clone(),
                    recipients: vec![address.clone()],
                    data,
                    smtputf8,
                });
            }
            Ok(Outgoing {
                copies,
                encrypted: true,
            })
        }
    }
}

fn encrypt(
    message: &[u8],
    identity: &Identity,
    recipients: &[Cert],
    autocrypt: Option<&AutocryptHeader>,
    gossip: &[AutocryptHeader],
    hide_recipients: bool,
    now: SystemTime,
) -> Result<Vec<u8>, Reply> {
    let request = EncryptRequest {
        autocrypt,
        gossip,
        hide_recipients,
        now,
        ..EncryptRequest::new(&identity.cert, recipients)
    };
    mailcrypt::encrypt(message, &request)
        .map_err(|e| refusal(format!("the message could not be encrypted ({e})")))
}

/// A failure on the way to an encrypted message: permanent, so that the
/// client shows the sentence instead of retrying.
fn refusal(why: String) -> Reply {
    Reply::new(
        554,
        "5.3.0",
        format!("Not sent: {why}. Nothing left your computer."),
    )
}
