//! What the user is shown for a message from the provider: decrypted where
//! possible, with the `Letterlock-Security` status header in front.
//!
//! This is the one place that turns provider bytes into what a client reads,
//! so the IMAP proxy and `gateway archive sync` archive exactly the same
//! bytes for the same message.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::learn::{record_sender, sender_lesson, Lessons, SenderKey};
use mailcrypt::{DecryptContext, HeldKeys, Outcome, Refusal, SignatureStatus};
use sequoia_openpgp::Cert;
use tracing::warn;

use keystore::{KeyRecord, KeyStatus, Keystore, KeystoreError, TrustLevel};

/// The keys one account reads its mail with, loaded once for many messages.
#[derive(Debug, Clone)]
pub struct Keys {
    account: String,
    secret: Vec<Cert>,
    own: HashSet<String>,
    /// Peer keys to check signatures with; they vouch for nobody ([`Signer`]).
    known: Vec<Cert>,
}

impl Keys {
    /// The account's secret key and every peer key the user has not rejected.
    pub async fn load(store: &Keystore, account: &str) -> Result<Self, KeystoreError> {
        let identity = store.identity(account).await?;
        let own = HashSet::from([identity.cert.fingerprint().to_hex()]);
        Ok(Keys {
            account: account.to_string(),
            secret: vec![identity.cert],
            own,
            known: store.known_certs().await?,
        })
    }
}

/// The key the keystore holds for a message's sender (its single From
/// address): the one key whose signature makes the message
/// `signature=valid` (rule 5).
#[derive(Debug, Clone)]
pub struct Signer {
    pub address: String,
    pub key: KeyRecord,
}

/// What the keystore says about a message's sender, asked right before the
/// message is viewed ([`Sender::record`]).
#[derive(Debug, Clone, Default)]
pub struct Sender {
    /// The key the message's own Autocrypt header offered, and what
    /// recording it did.
    pub offered: Option<SenderKey>,
    /// The key held for the From address after that.
    pub held: Option<Signer>,
    /// The message's Autocrypt header is not recorded yet (it is read from
    /// inside the encryption first, [`crate::ingest::read`]), so its key checks nothing.
    pub header_unrecorded: bool,
}

impl Sender {
    /// The key held for the From address of an encrypted message, before
    /// anything of it is recorded: what decides whether the message's
    /// announcement is read from inside first ([`crate::ingest::read`]).
    pub(crate) async fn before_decryption(store: &Keystore, from: Option<String>) -> Sender {
        Sender {
            offered: None,
            held: held_key(store, from).await,
            header_unrecorded: true,
        }
    }

    /// Records what a message announces about its sender (`lessons`: of the
    /// outer header, or of a decrypted message: the Autocrypt header inside,
    /// else the outer one, dated by the protected Date), then asks which key
    /// is held for `from`, the address shown. In this order, so that a first
    /// signed message verifies with the key it brings; asked per message
    /// rather than once per session, so that a key verified, changed or
    /// rejected meanwhile (by another session, `keytool`, or the message
    /// itself) counts at once. A failure is logged and leaves the message
    /// unverified, never wrongly valid.
    pub(crate) async fn record(
        store: &Keystore,
        account: &str,
        lessons: &Lessons,
        from: Option<String>,
    ) -> Sender {
        let now = SystemTime::now();
        let recorded = match (sender_lesson(account, lessons), from.as_deref()) {
            // A peer's message: both from one vault job.
            (Some(incoming), Some(address)) => store
                .record_incoming_and_signer(incoming, address, now)
                .await
                .map(|(status, key)| {
                    let offered = incoming.header.as_ref().map(|h| SenderKey {
                        cert: h.cert.clone(),
                        status,
                    });
                    let held = key.map(|key| Signer {
                        address: address.to_string(),
                        key,
                    });
                    (offered, Some(held))
                }),
            _ => record_sender(store, account, lessons, now)
                .await
                .map(|offered| (offered, None)),
        };
        let (offered, held) = recorded.unwrap_or_else(|e| {
            warn!(error = %e, "the sender's key in a message not recorded");
            (None, None)
        });
        let held = match held {
            Some(held) => held,
            None => held_key(store, from).await,
        };
        Sender {
            offered,
            held,
            header_unrecorded: false,
        }
    }

    /// Whether a message viewed with `self` must be viewed again with
    /// `after`: the key whose signature counts changed, or recording found
    /// something the status must say (a changed, conflicting or rejected
    /// key).
    pub(crate) fn needs_second_look(&self, after: &Sender) -> bool {
        let fpr = |s: &Sender| s.held.as_ref().map(|h| h.key.cert.fingerprint());
        fpr(self) != fpr(after)
            || after.offered.as_ref().is_some_and(|o| {
                matches!(
                    o.status,
                    KeyStatus::Changed | KeyStatus::Conflict | KeyStatus::Rejected
                )
            })
    }
}

/// The key the keystore holds for `address` (whose signature counts). A
/// failure is logged and counts as none: unverified, never wrongly valid.
async fn held_key(store: &Keystore, address: Option<String>) -> Option<Signer> {
    let address = address?;
    match store.signing_key(&address).await {
        Ok(key) => key.map(|key| Signer { address, key }),
        Err(e) => {
            warn!(error = %e, "the sender's key not looked up; no signature counts");
            None
        }
    }
}

/// A message as the user sees it.
#[derive(Debug)]
pub struct View {
    /// The bytes to show (and to archive).
    pub message: Vec<u8>,
    /// The provider's copy was encrypted (whether or not it could be opened).
    pub encrypted: bool,
    /// The status header value, if the gateway decrypted or verified anything.
    pub status: Option<String>,
    /// Why an encrypted message stayed closed, in technical terms for the log.
    pub detail: Option<String>,
    /// What it teaches about keys (apply with [`crate::learn::learn`]);
    /// from its protected header when it was decrypted.
    pub lessons: Lessons,
    /// It was decrypted (its lessons come from inside).
    pub decrypted: bool,
    /// The sender, if they sent on a ciphertext that was neither encrypted
    /// to them nor signed by them ([`outsider`]); recorded with
    /// `Keystore::record_outsider`.
    pub outsider: Option<String>,
}

/// Decrypts and verifies one message from the provider.
///
/// `sender` is what the message's own Autocrypt header taught
/// ([`crate::learn::record_sender`]): a changed key makes the status say
/// `key=changed`; a key refused (conflicting with a verified one, or
/// rejected) does not check the signature, and the status says so.
pub fn view(provider_bytes: &[u8], keys: &Keys, sender: &Sender, now: SystemTime) -> View {
    let signer = sender.held.as_ref();
    let mut held = HeldKeys::new();
    for cert in &keys.secret {
        held.hold(&keys.account, cert.fingerprint());
    }
    if let Some(s) = signer {
        held.hold(&s.address, s.key.cert.fingerprint());
    }
    // The held key may be newer than the session's list of known keys.
    let with_signer;
    let candidates = match signer {
        Some(s)
            if !keys
                .known
                .iter()
                .any(|c| c.fingerprint() == s.key.cert.fingerprint()) =>
        {
            with_signer = [&keys.known[..], std::slice::from_ref(&s.key.cert)].concat();
            &with_signer[..]
        }
        _ => &keys.known[..],
    };
    let ctx = DecryptContext {
        secret_keys: &keys.secret,
        verifier_certs: candidates,
        signers: &held,
        // The header's own key checks the signature (trust on first use)
        // unless the keystore refused it for this sender.
        autocrypt_key_verifies: !sender.header_unrecorded
            && sender.offered.as_ref().is_none_or(SenderKey::usable),
        now,
    };
    let outcome = mailcrypt::decrypt(provider_bytes, &ctx);
    let mut status = status_value(&outcome, keys, signer, sender.offered.as_ref());
    // Warnings about the sender the user sees, each a word in the status
    // and a sentence in the note in front of the message.
    let shown_sender = match (&status, &outcome.refusal) {
        (Some(_), None) => {
            letterlock_mime::sender(letterlock_mime::header::split_header(&outcome.message).0)
        }
        _ => None,
    };
    let outsider = shown_sender
        .as_ref()
        .and_then(|from| outsider(&outcome, from, keys, signer));
    let mut notes = Vec::new();
    if let Some(from) = &shown_sender {
        // Most clients show only the sender's name.
        if let Some(shown) = deceptive_name(from) {
            notes.push((
                "display-name",
                format!(
                    "the sender's name shows {}, but this message is from {}. Check the address \
                 before you trust or answer it.",
                    one_line(&shown),
                    one_line(&from.address)
                ),
            ));
        }
    }
    if let Some(address) = &outsider {
        let address = one_line(address);
        notes.push((
            "not-a-recipient",
            format!(
                "this message was not encrypted to its sender, {address}, and not signed by them, \
             so they cannot read it: someone else wrote it. The gateway will not send {address} \
             a reply to it or to its conversation."
            ),
        ));
    }
    if let Some(value) = status.as_mut() {
        for (word, _) in &notes {
            value.push_str(&format!("; warning={word}"));
        }
    }
    // Every refusal is about encrypted content (or content too large to
    // look at), so the message counts as encrypted either way.
    let encrypted = outcome.decrypted || outcome.refusal.is_some();
    let detail = match (&outcome.refusal, &outcome.detail) {
        (Some(r), Some(d)) => Some(format!("{r} ({d})")),
        (Some(r), None) => Some(r.to_string()),
        _ => None,
    };
    let lessons = if outcome.decrypted {
        Lessons::of_decrypted(provider_bytes, &outcome.message, outcome.gossip, now)
    } else {
        Lessons::of(provider_bytes, outcome.gossip, now)
    };
    let decrypted = outcome.decrypted;
    let message = match &outcome.refusal {
        Some(refusal) => explained(&outcome.message, refusal),
        // A sender's plaintext may end its lines in bare LF (gpg encrypts
        // files as they are); IMAP serves CRLF, as the provider would.
        None if outcome.decrypted => crlf(&outcome.message),
        None => outcome.message,
    };
    let message = if notes.is_empty() {
        message
    } else {
        let sentences: Vec<String> = notes
            .iter()
            .map(|(_, sentence)| format!("[Letterlock] Careful: {sentence}"))
            .collect();
        with_note(&message, &sentences.join("\r\n\r\n"))
    };
    let message = match &status {
        Some(value) => mailcrypt::add_status_header(&message, value),
        None => message,
    };
    View {
        message,
        encrypted,
        status,
        detail,
        lessons,
        decrypted,
        outsider,
    }
}

/// Bare LF line ends made CRLF; CRLF left alone.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let bare = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        .count();
    let mut out = Vec::with_capacity(bytes.len() + bare);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// A message the gateway could not open, as the user sees it: a
/// multipart/mixed whose first part says why in a sentence and whose second
/// part is the original content, untouched. The boundary is derived from
/// the message, so the same message always gives the same bytes.
fn explained(message: &[u8], refusal: &Refusal) -> Vec<u8> {
    with_note(message, &explanation(refusal))
}

/// A message with a note of the gateway's in front: a multipart/mixed whose
/// first part is `sentence` and whose second part is the original content,
/// untouched.
fn with_note(message: &[u8], sentence: &str) -> Vec<u8> {
    use letterlock_mime::header as mime;
    const CONTENT_FIELDS: [&str; 4] = [
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "MIME-Version",
    ];
    let (header, body) = mime::split_header(message);
    let fields = mime::fields(header);
    let hash = archive::content_hash(message);
    let boundary: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    let boundary = format!("letterlock-explained-{boundary}");
    let mut out = Vec::with_capacity(message.len() + 1024);
    for field in fields
        .iter()
        .filter(|f| !CONTENT_FIELDS.iter().any(|n| f.is(n)))
    {
        out.extend_from_slice(field.raw);
    }
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\r\n\
             --{boundary}\r\n",
            sentence
        )
        .as_bytes(),
    );
    for field in fields
        .iter()
        .filter(|f| CONTENT_FIELDS[..3].iter().any(|n| f.is(n)))
    {
        out.extend_from_slice(field.raw);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// An address other than the sender's that the sender's display name
/// shows (`"bob@example.org" <m@evil.example>`), if any.
fn deceptive_name(from: &letterlock_mime::Mailbox) -> Option<String> {
    letterlock_mime::addresses_in_name(from.name.as_deref()?)
        .into_iter()
        .find(|a| !autocrypt::addr_eq(a, &from.address))
}

/// The sender's text as one bounded line, for a note of the gateway's.
fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The shown sender of a decrypted message, if they cannot have written it:
/// the header is not protected inside (so it is whatever the last sender
/// put outside), the signature is not theirs, the ciphertext names all its
/// recipients, and none of them is a key the keystore holds for that
/// address. That is Bob's ciphertext sent on by Mallory as his own ("Re:
/// What's up Johnny?", 2019): an answer to Mallory quoting it is the leak.
fn outsider(
    outcome: &Outcome,
    from: &letterlock_mime::Mailbox,
    keys: &Keys,
    signer: Option<&Signer>,
) -> Option<String> {
    if !outcome.decrypted
        || outcome.protected_header
        || outcome.signature.is_valid()
        || outcome.encrypted_to.iter().any(Option::is_none)
        || autocrypt::addr_eq(&from.address, &keys.account)
    {
        return None;
    }
    let recipient = signer
        .filter(|s| autocrypt::addr_eq(&s.address, &from.address))
        .is_some_and(|s| {
            s.key.cert.keys().any(|k| {
                outcome
                    .encrypted_to
                    .iter()
                    .flatten()
                    .any(|r| r.aliases(k.key().key_handle()))
            })
        });
    (!recipient).then(|| from.address.clone())
}

/// Why a message stayed closed, for a person (mailcrypt's sentences).
fn explanation(refusal: &Refusal) -> String {
    format!(
        "[Letterlock] This message was not decrypted: {refusal}. The original follows unchanged."
    )
}

fn refusal_word(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::NoKey => "no-key",
        Refusal::Integrity => "integrity",
        Refusal::Nested => "nested",
        Refusal::PartialInline => "partial-inline",
        Refusal::Malformed(_) => "malformed",
        Refusal::TooLarge(..) => "too-large",
    }
}

/// The `Letterlock-Security` value: `encrypted; signature=valid;
/// signer=bob@example.org; key=verified; fpr=…` (SPEC.md).
fn status_value(
    outcome: &Outcome,
    keys: &Keys,
    signer: Option<&Signer>,
    sender: Option<&SenderKey>,
) -> Option<String> {
    let mut value = signature_status(outcome, keys, signer, sender)?;
    if let Some(s) = sender {
        match s.status {
            KeyStatus::Conflict => value.push_str(&format!(
                "; autocrypt=conflict; offered={}",
                s.cert.fingerprint().to_hex()
            )),
            KeyStatus::Rejected => value.push_str("; autocrypt=rejected"),
            _ => {}
        }
    }
    Some(value)
}

fn signature_status(
    outcome: &Outcome,
    keys: &Keys,
    signer: Option<&Signer>,
    sender: Option<&SenderKey>,
) -> Option<String> {
    let mut fields = Vec::new();
    if outcome.decrypted {
        fields.push("encrypted".to_string());
    } else if let Some(refusal) = &outcome.refusal {
        fields.push("encrypted".to_string());
        fields.push("decryption=failed".to_string());
        fields.push(format!("reason={}", refusal_word(refusal)));
        return Some(fields.join("; "));
    } else if outcome.signature == SignatureStatus::Unsigned {
        // Neither decrypted nor verified: nothing to say.
        return None;
    } else {
        fields.push("unencrypted".to_string());
    }
    fields.push(format!("signature={}", outcome.signature.as_str()));
    match &outcome.signature {
        SignatureStatus::Valid {
            fingerprint,
            signer: signer_addr,
        } => {
            let fpr = fingerprint.to_hex();
            fields.push(format!("signer={signer_addr}"));
            let changed = sender.is_some_and(|s| {
                s.status == KeyStatus::Changed && s.cert.fingerprint() == *fingerprint
            });
            let word = if keys.own.contains(&fpr) {
                "own"
            } else if changed {
                "changed"
            } else {
                match signer.map(|s| s.key.trust) {
                    Some(TrustLevel::Verified) => "verified",
                    // Never held for signing; here for completeness.
                    Some(TrustLevel::Rejected) => "rejected",
                    Some(TrustLevel::Tofu) | None => "tofu",
                }
            };
            fields.push(format!("key={word}"));
            fields.push(format!("fpr={fpr}"));
        }
        SignatureStatus::SignerMismatch { fingerprint } => {
            fields.push(format!("fpr={}", fingerprint.to_hex()));
        }
        _ => {}
    }
    Some(fields.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            account: "me@example.org".into(),
            secret: Vec::new(),
            own: HashSet::new(),
            known: Vec::new(),
        }
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"\n"), b"\r\n");
        assert_eq!(crlf(b"no end"), b"no end");
    }

    #[test]
    fn undecryptable_mail_says_why_and_keeps_the_original() {
        let now = SystemTime::now();
        let carol = autocrypt::key::generate("carol@example.org", now).expect("key");
        let encrypted = mailcrypt::encrypt(
            b"From: carol@example.org\r\nTo: dave@example.org\r\nSubject: not for you\r\n\r\nsecret\r\n",
            &mailcrypt::EncryptRequest { pad: false, now, ..mailcrypt::EncryptRequest::new(&carol, &[]) },
        )
        .expect("encrypt");
        let v = view(&encrypted, &keys(), &Sender::default(), now);
        assert!(v.encrypted);
        assert_eq!(
            v.status.as_deref(),
            Some("encrypted; decryption=failed; reason=no-key")
        );
        let text = String::from_utf8_lossy(&v.message).into_owned();
        assert!(
            text.starts_with("Letterlock-Security: encrypted; decryption=failed"),
            "{text}"
        );
        assert!(text.contains("Content-Type: multipart/mixed; boundary=\"letterlock-explained-"));
        assert!(text.contains(
            "This message was not decrypted: the message is not encrypted to any of your keys"
        ));
        assert!(text.contains("Content-Type: multipart/encrypted;"));
        assert!(text.contains("-----BEGIN PGP MESSAGE-----"));
        assert!(!text.contains("secret\r\n"));
        // The same message always gives the same bytes.
        assert_eq!(
            view(&encrypted, &keys(), &Sender::default(), now).message,
            v.message
        );
    }

    #[test]
    fn plain_unsigned_mail_gets_no_header_and_loses_forged_ones() {
        let msg = b"Letterlock-Security: encrypted; signature=valid\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let v = view(msg, &keys(), &Sender::default(), SystemTime::now());
        assert!(v.status.is_none());
        assert!(!v.encrypted);
        assert_eq!(
            v.message,
            b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
        );
    }
}
