//! Incoming mail: decryption, verification and header restoration.
//!
//! What is decrypted is deliberately narrow (EFAIL, "Johnny you are fired"):
//! PGP/MIME at the root or directly under an outer multipart/signed, and
//! inline PGP only when the whole body is one armored block. An encrypted
//! part anywhere else is reported, never decrypted, so decrypted text is
//! never joined with text an attacker wrapped around it.

use std::time::SystemTime;

use autocrypt::gossip::{GossipContext, GossipRejection};
use autocrypt::{select_sender_header, AutocryptHeader};
use base64::Engine as _;
use mail_parser::{MimeHeaders, PartType};
use sequoia_openpgp::{Cert, Fingerprint, KeyHandle};
use zeroize::Zeroizing;

use crate::encrypt::to_crlf;
use crate::entity::{ContentType, Entity};
use crate::error::Refusal;
use crate::mime::{self, line_ending, Field};
use crate::openpgp::{self, DecryptFailure, SigCheck, Verifiers};
use crate::padding;

/// The header the gateway uses to tell the user what it found. Any copy that
/// arrives from outside is removed before anything else looks at the message.
pub const STATUS_HEADER: &str = "Letterlock-Security";

/// Messages larger than this are not processed (a 25 MB attachment, base64
/// encoded, is about 34 MB).
pub const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;

/// Fields that exist only for the engine and are removed on restoration.
const ENGINE_FIELDS: &[&str] = &[
    "HP-Outer",
    padding::FIELD,
    "Autocrypt-Gossip",
    STATUS_HEADER,
];

const ARMOR_MESSAGE: &str = "-----BEGIN PGP MESSAGE-----";
const ARMOR_MESSAGE_END: &str = "-----END PGP MESSAGE-----";
const ARMOR_SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// The keys [`decrypt`] may use.
#[derive(Clone, Copy)]
pub struct DecryptContext<'a> {
    /// The account's own certificates with secret keys.
    pub secret_keys: &'a [Cert],
    /// Certificates to check signatures with. The key in the message's own
    /// valid `Autocrypt:` header is used as well, unless
    /// `autocrypt_key_verifies` is false. Being here vouches for nothing:
    /// whose key it is, `signers` says.
    pub verifier_certs: &'a [Cert],
    /// Which key may sign for which address: the keystore's answer. A good
    /// signature is [`SignatureStatus::Valid`] only if `signers` holds its
    /// key for the From address (rule 5); the key's own user IDs decide
    /// nothing, since anyone can put any address in a key they make.
    pub signers: &'a dyn SignerKeys,
    /// Whether the key in the message's own Autocrypt header may check its
    /// signature (trust on first use). The caller says no when the user's
    /// keystore refused that key for the sender: it conflicts with a
    /// verified key, or was rejected.
    pub autocrypt_key_verifies: bool,
    /// Reference time for key and signature validity.
    pub now: SystemTime,
}

impl std::fmt::Debug for DecryptContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptContext")
            .field("secret_keys", &self.secret_keys.len())
            .field("verifier_certs", &self.verifier_certs.len())
            .field("autocrypt_key_verifies", &self.autocrypt_key_verifies)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Which key may sign for an address, as the keystore holds it.
pub trait SignerKeys {
    /// Whether `fingerprint` is the key held for `address`.
    fn holds(&self, address: &str, fingerprint: &Fingerprint) -> bool;
}

/// A fixed answer to [`SignerKeys`]: these (address, key) pairs.
#[derive(Debug, Clone, Default)]
pub struct HeldKeys(Vec<(String, Fingerprint)>);

impl HeldKeys {
    pub fn new() -> Self {
        HeldKeys::default()
    }

    /// `fingerprint` may sign for `address`.
    pub fn hold(&mut self, address: &str, fingerprint: Fingerprint) {
        self.0.push((address.to_string(), fingerprint));
    }

    /// Each certificate held for the addresses of its own user IDs: what a
    /// keystore answers that the user filled with exactly these
    /// certificates, having checked whose each is. Only for callers that
    /// are that judge themselves (tests of third-party corpora, tools);
    /// never for keys that arrived in mail.
    pub fn from_user_ids(certs: &[Cert]) -> Self {
        let mut held = HeldKeys::new();
        for cert in certs {
            for uid in cert.userids() {
                if let Ok(Some(addr)) = uid.userid().email_normalized() {
                    held.hold(&addr, cert.fingerprint());
                }
            }
        }
        held
    }
}

impl SignerKeys for HeldKeys {
    fn holds(&self, address: &str, fingerprint: &Fingerprint) -> bool {
        self.0
            .iter()
            .any(|(a, f)| f == fingerprint && autocrypt::addr_eq(a, address))
    }
}

/// What a signature check found, judged against the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No signature.
    Unsigned,
    /// A good signature over the whole message by the key the keystore
    /// holds for its From address.
    Valid {
        fingerprint: Fingerprint,
        signer: String,
    },
    /// A good signature, but not by the key held for the From address (or
    /// the message has no single From address).
    SignerMismatch { fingerprint: Fingerprint },
    /// The signature does not verify, or the key was not valid when it signed.
    Bad { reason: String },
    /// No certificate for the key that made the signature.
    UnknownKey { issuer: Option<String> },
    /// A signature covers only a part of the message; it says nothing about the rest.
    Partial,
}

impl SignatureStatus {
    pub fn is_valid(&self) -> bool {
        matches!(self, SignatureStatus::Valid { .. })
    }

    /// The verdict for a message of which this signature covers only a
    /// part: `partial`, except that a bad signature stays bad and no
    /// signature stays none.
    fn covering_part(self) -> SignatureStatus {
        match self {
            SignatureStatus::Unsigned | SignatureStatus::Bad { .. } => self,
            _ => SignatureStatus::Partial,
        }
    }

    /// The short word used in the status header.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureStatus::Unsigned => "none",
            SignatureStatus::Valid { .. } => "valid",
            SignatureStatus::SignerMismatch { .. } => "mismatch",
            SignatureStatus::Bad { .. } => "bad",
            SignatureStatus::UnknownKey { .. } => "unknown-key",
            SignatureStatus::Partial => "partial",
        }
    }
}

/// Everything [`decrypt`] found out about a message.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The message was encrypted and has been decrypted.
    pub decrypted: bool,
    pub signature: SignatureStatus,
    /// The message as the user should see it: decrypted with protected
    /// headers restored, or the original. Never carries a status header.
    pub message: Vec<u8>,
    /// The sender's valid `Autocrypt:` header, if exactly one was present.
    pub autocrypt: Option<AutocryptHeader>,
    /// Gossip accepted under the Level 1 rules.
    pub gossip: Vec<AutocryptHeader>,
    pub gossip_rejected: Vec<GossipRejection>,
    /// Why an encrypted message, or an encrypted part, was not decrypted.
    pub refusal: Option<Refusal>,
    /// The technical reason behind a refusal, for logs only: the user-facing
    /// [`Refusal`] stays uniform so it is no oracle.
    pub detail: Option<String>,
    /// Whom a decrypted message was encrypted to, as its packets name them
    /// (`None`: a hidden recipient). An attacker can drop names from a
    /// ciphertext but not add any.
    pub encrypted_to: Vec<Option<KeyHandle>>,
    /// Whether the header shown came from inside the encryption (written by
    /// whoever made the ciphertext, not by whoever sent it on).
    pub protected_header: bool,
}

/// Decrypts and verifies a message (RFC 5322 bytes).
///
/// Never fails: anything that cannot be decrypted comes back unchanged with
/// [`Outcome::refusal`] saying why. Plaintext is released only after the
/// whole ciphertext was read and its integrity protection checked.
pub fn decrypt(message: &[u8], ctx: &DecryptContext<'_>) -> Outcome {
    let original = strip_status_spellings(message).unwrap_or_else(|| message.to_vec());
    let root = Entity::parse(&original);
    let from = single_from(root.header);
    let autocrypt = from.as_deref().and_then(|f| {
        let values = mime::values(root.header, "Autocrypt");
        select_sender_header(&values, f).0
    });
    let mut outcome = Outcome {
        decrypted: false,
        signature: SignatureStatus::Unsigned,
        message: Vec::new(),
        autocrypt,
        gossip: Vec::new(),
        gossip_rejected: Vec::new(),
        refusal: None,
        detail: None,
        encrypted_to: Vec::new(),
        protected_header: false,
    };
    if message.len() > MAX_MESSAGE_SIZE {
        outcome.refusal = Some(Refusal::TooLarge(message.len(), MAX_MESSAGE_SIZE));
        outcome.message = original;
        return outcome;
    }
    // The user's own certificates verify mail they sent themselves (Sent, Drafts).
    let verifiers = Verifiers {
        known: ctx.verifier_certs,
        own: ctx.secret_keys,
        sender: outcome
            .autocrypt
            .as_ref()
            .filter(|_| ctx.autocrypt_key_verifies)
            .map(|ac| &ac.cert),
    };
    let engine = Engine {
        ctx,
        detail: Default::default(),
        verifiers,
        from: from.as_deref(),
    };
    match engine.examine(&root) {
        Ok(Found::Decrypted {
            content,
            signature,
            outer_signature,
            encrypted_to,
        }) => {
            outcome.protected_header = header_protected(&content);
            outcome.encrypted_to = encrypted_to;
            let restored = restore(&root, &content);
            let restored_root = Entity::parse(&restored);
            let signer_from = single_from(restored_root.header);
            outcome.signature = match signature {
                SignatureStatus::Unsigned => outer_signature,
                s => s,
            };
            // The signature must match the From the user will see.
            if let SignatureStatus::Valid {
                fingerprint,
                signer,
            } = &outcome.signature
            {
                if signer_from
                    .as_deref()
                    .is_none_or(|f| !autocrypt::addr_eq(f, signer))
                {
                    outcome.signature = SignatureStatus::SignerMismatch {
                        fingerprint: fingerprint.clone(),
                    };
                }
            }
            let content_entity = Entity::parse(&content);
            let gossip_values = mime::values(content_entity.header, "Autocrypt-Gossip");
            if let Some(f) = &signer_from {
                let to_cc = recipients(restored_root.header);
                let gctx = GossipContext {
                    from_addr: f,
                    to_cc: &to_cc,
                    encrypted: true,
                    signature_valid: outcome.signature.is_valid(),
                };
                let (accepted, rejected) = autocrypt::gossip::accept(&gctx, &gossip_values);
                outcome.gossip = accepted;
                outcome.gossip_rejected = rejected;
            }
            outcome.decrypted = true;
            outcome.message = restored;
        }
        Ok(Found::Clear { signature, refusal }) => {
            // A bare CR ends a line for some clients and not for others (or
            // for mail-parser): where it is, the parts a reader sees need
            // not be the ones that were verified.
            outcome.signature = if has_bare_cr(&original) {
                signature.covering_part()
            } else {
                signature
            };
            outcome.refusal = refusal;
            outcome.message = original;
        }
        Err(refusal) => {
            outcome.refusal = Some(refusal);
            outcome.message = original;
        }
    }
    outcome.detail = engine.detail.into_inner();
    // The sender's own (decrypted) header may spell it too.
    if let Some(clean) = strip_status_spellings(&outcome.message) {
        outcome.message = clean;
    }
    outcome
}

enum Found {
    Decrypted {
        /// The decrypted entity whose headers and body the user sees.
        content: Zeroizing<Vec<u8>>,
        signature: SignatureStatus,
        /// The status of an outer multipart/signed around the ciphertext.
        outer_signature: SignatureStatus,
        /// Whom the ciphertext names as its recipients.
        encrypted_to: Vec<Option<KeyHandle>>,
    },
    Clear {
        signature: SignatureStatus,
        refusal: Option<Refusal>,
    },
}

struct Engine<'a> {
    ctx: &'a DecryptContext<'a>,
    /// What exactly went wrong, for logs (the refusal stays uniform).
    detail: std::cell::RefCell<Option<String>>,
    verifiers: Verifiers<'a>,
    from: Option<&'a str>,
}

impl Engine<'_> {
    fn examine(&self, root: &Entity<'_>) -> Result<Found, Refusal> {
        self.examine_at(root, 0)
    }

    fn examine_at(&self, root: &Entity<'_>, depth: u8) -> Result<Found, Refusal> {
        let ct = root.content_type();
        if ct.is("multipart/encrypted") {
            return self.pgp_mime(root, &ct, SignatureStatus::Unsigned);
        }
        if ct.is("multipart/signed") {
            return self.signed(root, &ct, depth);
        }
        if ct.is("multipart/mixed") {
            if let Some(found) = self.repaired_exchange(root, &ct) {
                return found;
            }
        }
        if ct.is("text/plain") {
            if let Some(found) = self.inline(root, &ct) {
                return found;
            }
        }
        Ok(self.scan_nested(root))
    }

    /// multipart/signed at the root: verify; decrypt a PGP/MIME first part.
    fn signed(&self, root: &Entity<'_>, ct: &ContentType, depth: u8) -> Result<Found, Refusal> {
        let parts = ct
            .param("boundary")
            .and_then(|b| root.parts(b))
            .ok_or_else(|| Refusal::Malformed("multipart/signed without its parts".into()))?;
        let [signed, sig] = parts.as_slice() else {
            return Err(Refusal::Malformed(format!(
                "multipart/signed has {} parts instead of 2",
                parts.len()
            )));
        };
        let is_pgp = ct
            .param("protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"));
        if !is_pgp && depth == 0 {
            // An S/MIME (or other) signature is not checked here; what it
            // wraps is looked at as if it were the whole message. Unless
            // that is decrypted (then only the plaintext is shown), the
            // whole message is shown, its second part included, which no
            // OpenPGP signature inside covers.
            return self
                .examine_at(&Entity::parse(signed), depth + 1)
                .map(|found| match found {
                    Found::Clear { signature, refusal } => Found::Clear {
                        signature: signature.covering_part(),
                        refusal,
                    },
                    decrypted => decrypted,
                });
        }
        let sig = Entity::parse(sig);
        let status = if !is_pgp {
            // S/MIME and other protocols are not checked: no verdict.
            SignatureStatus::Unsigned
        } else if !sig.content_type().is("application/pgp-signature") {
            // RFC 3156 §5: the second part is the signature and nothing
            // else. Any other type is shown as content the signature does
            // not cover (an HTML part with the armor in a comment).
            SignatureStatus::Partial
        } else {
            let checks = openpgp::verify_detached(
                &to_crlf(signed),
                &decoded_body(&sig),
                self.verifiers,
                self.ctx.now,
            );
            self.judge(&checks)
        };
        let inner = Entity::parse(signed);
        let inner_ct = inner.content_type();
        if inner_ct.is("multipart/encrypted") {
            return self.pgp_mime(&inner, &inner_ct, status);
        }
        match self.scan_nested(&inner) {
            Found::Clear { refusal, .. } => Ok(Found::Clear {
                signature: status,
                refusal,
            }),
            found => Ok(found),
        }
    }

    /// RFC 3156 §4: exactly a version part and an octet-stream part.
    fn pgp_mime(
        &self,
        entity: &Entity<'_>,
        ct: &ContentType,
        outer_signature: SignatureStatus,
    ) -> Result<Found, Refusal> {
        if !ct
            .param("protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
        {
            return Err(Refusal::Malformed(
                "multipart/encrypted without protocol=\"application/pgp-encrypted\"".into(),
            ));
        }
        let parts = ct
            .param("boundary")
            .and_then(|b| entity.parts(b))
            .ok_or_else(|| Refusal::Malformed("multipart/encrypted without its parts".into()))?;
        let [version, data] = parts.as_slice() else {
            return Err(Refusal::Malformed(format!(
                "multipart/encrypted has {} parts instead of 2",
                parts.len()
            )));
        };
        if !Entity::parse(version)
            .content_type()
            .is("application/pgp-encrypted")
        {
            return Err(Refusal::Malformed(
                "the first part is not application/pgp-encrypted".into(),
            ));
        }
        let ciphertext = decoded_body(&Entity::parse(data));
        self.open(&ciphertext, outer_signature)
    }

    /// Decrypts ciphertext holding a MIME entity.
    fn open(&self, ciphertext: &[u8], outer_signature: SignatureStatus) -> Result<Found, Refusal> {
        let decrypted = openpgp::decrypt(
            ciphertext,
            self.ctx.secret_keys,
            self.verifiers,
            self.ctx.now,
        )
        .map_err(|e| match e {
            DecryptFailure::NoKey => Refusal::NoKey,
            DecryptFailure::Integrity(detail) => {
                *self.detail.borrow_mut() = Some(detail);
                Refusal::Integrity
            }
        })?;
        let mut signature = self.judge(&decrypted.signatures);
        let plain = decrypted.plaintext;
        let inner = Entity::parse(&plain);
        let inner_ct = inner.content_type();
        // Older clients sign with multipart/signed inside the encryption.
        let pgp_signed = inner_ct.is("multipart/signed")
            && inner_ct
                .param("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"));
        if signature == SignatureStatus::Unsigned && pgp_signed {
            if let Some([signed, sig]) = inner_ct
                .param("boundary")
                .and_then(|b| inner.parts(b))
                .as_deref()
                .filter(|parts| {
                    Entity::parse(parts[1])
                        .content_type()
                        .is("application/pgp-signature")
                })
            {
                let sig_body = decoded_body(&Entity::parse(sig));
                let checks = openpgp::verify_detached(
                    &to_crlf(signed),
                    &sig_body,
                    self.verifiers,
                    self.ctx.now,
                );
                signature = self.judge(&checks);
                let content = Zeroizing::new(signed.to_vec());
                return Ok(Found::Decrypted {
                    content,
                    signature,
                    outer_signature,
                    encrypted_to: decrypted.recipients,
                });
            }
        }
        Ok(Found::Decrypted {
            content: plain,
            signature,
            outer_signature,
            encrypted_to: decrypted.recipients,
        })
    }

    /// Exchange rewrites PGP/MIME into multipart/mixed with an empty text
    /// part first; repair that shape only, nothing looser.
    fn repaired_exchange(
        &self,
        root: &Entity<'_>,
        ct: &ContentType,
    ) -> Option<Result<Found, Refusal>> {
        let parts = root.parts(ct.param("boundary")?)?;
        let [text, version, data] = parts.as_slice() else {
            return None;
        };
        let text = Entity::parse(text);
        let empty =
            text.content_type().is("text/plain") && text.body.iter().all(u8::is_ascii_whitespace);
        let version = Entity::parse(version);
        let data = Entity::parse(data);
        let shaped = empty
            && version.content_type().is("application/pgp-encrypted")
            && data.content_type().is("application/octet-stream");
        if !shaped {
            return None;
        }
        Some(self.open(&decoded_body(&data), SignatureStatus::Unsigned))
    }

    /// Inline PGP in a single text/plain body.
    fn inline(&self, root: &Entity<'_>, ct: &ContentType) -> Option<Result<Found, Refusal>> {
        let body = decoded_body(root);
        let text = String::from_utf8_lossy(&body);
        let trimmed = text.trim();
        if trimmed.starts_with(ARMOR_MESSAGE)
            && trimmed.ends_with(ARMOR_MESSAGE_END)
            && trimmed.matches(ARMOR_MESSAGE).count() == 1
        {
            let found = self
                .open(trimmed.as_bytes(), SignatureStatus::Unsigned)
                .map(|found| match found {
                    Found::Decrypted {
                        content,
                        signature,
                        outer_signature,
                        encrypted_to,
                    } => Found::Decrypted {
                        content: inline_entity(&content, ct, line_ending(root.header)),
                        signature,
                        outer_signature,
                        encrypted_to,
                    },
                    clear => clear,
                });
            return Some(found);
        }
        if trimmed.starts_with(ARMOR_SIGNED) {
            // What is shown is the whole text: a verdict only if all of it
            // is one signed block, and the text Sequoia checked is the text
            // a reader sees in it (no text around the block, no armor
            // header other than Hash, no second block).
            let signature = match cleartext_block(trimmed) {
                Some(shown) => {
                    match openpgp::verify_inline(trimmed.as_bytes(), self.verifiers, self.ctx.now) {
                        Some((checked, checks)) if same_text(&checked, &shown) => {
                            self.judge(&checks)
                        }
                        Some(_) => SignatureStatus::Partial,
                        None => SignatureStatus::Partial,
                    }
                }
                None => SignatureStatus::Partial,
            };
            return Some(Ok(Found::Clear {
                signature,
                refusal: None,
            }));
        }
        if text.contains(ARMOR_MESSAGE) {
            return Some(Ok(Found::Clear {
                signature: SignatureStatus::Unsigned,
                refusal: Some(Refusal::PartialInline),
            }));
        }
        if text.contains(ARMOR_SIGNED) {
            return Some(Ok(Found::Clear {
                signature: SignatureStatus::Partial,
                refusal: None,
            }));
        }
        None
    }

    /// Looks through the whole tree for encrypted or signed parts that are
    /// not at the root: they are reported, not decrypted or trusted.
    fn scan_nested(&self, root: &Entity<'_>) -> Found {
        // Unparseable, or nested too deeply to take apart (letterlock_mime):
        // nothing inside is decrypted or trusted either way.
        let Some(parsed) = letterlock_mime::parse(root.bytes) else {
            return Found::Clear {
                signature: SignatureStatus::Unsigned,
                refusal: None,
            };
        };
        let (mut encrypted, mut signed) = (false, false);
        let mut stack = vec![&parsed];
        let mut budget = 10_000usize;
        while let Some(msg) = stack.pop() {
            for part in &msg.parts {
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    break;
                }
                let ct = part.content_type().map(|c| {
                    format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")).to_ascii_lowercase()
                });
                match ct.as_deref() {
                    Some("multipart/encrypted" | "application/pgp-encrypted") => encrypted = true,
                    Some("multipart/signed" | "application/pgp-signature") => signed = true,
                    _ => {}
                }
                match &part.body {
                    PartType::Text(t) | PartType::Html(t) => {
                        encrypted |= t.contains(ARMOR_MESSAGE);
                        signed |= t.contains(ARMOR_SIGNED);
                    }
                    PartType::Message(m) => stack.push(m),
                    _ => {}
                }
            }
        }
        Found::Clear {
            signature: if signed {
                SignatureStatus::Partial
            } else {
                SignatureStatus::Unsigned
            },
            refusal: encrypted.then_some(Refusal::Nested),
        }
    }

    /// Turns raw signature checks into one verdict against the From
    /// address: valid only for the key held for it ([`SignerKeys`]).
    fn judge(&self, checks: &[SigCheck]) -> SignatureStatus {
        let mut mismatch = None;
        for check in checks {
            if let SigCheck::Good(cert) = check {
                let fingerprint = cert.fingerprint();
                match self.from {
                    Some(from) if self.ctx.signers.holds(from, &fingerprint) => {
                        return SignatureStatus::Valid {
                            fingerprint,
                            signer: from.to_string(),
                        }
                    }
                    _ => mismatch = Some(fingerprint),
                }
            }
        }
        if let Some(fingerprint) = mismatch {
            return SignatureStatus::SignerMismatch { fingerprint };
        }
        for check in checks {
            if let SigCheck::Bad(reason) | SigCheck::Malformed(reason) = check {
                return SignatureStatus::Bad {
                    reason: reason.clone(),
                };
            }
        }
        match checks.first() {
            Some(SigCheck::MissingKey(issuer)) => SignatureStatus::UnknownKey {
                issuer: issuer.as_ref().map(|h| h.to_hex()),
            },
            _ => SignatureStatus::Unsigned,
        }
    }
}

/// Whether `bytes` hold a carriage return that does not start a CRLF.
fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

/// The text a reader sees signed in `text` if all of it is one block of
/// the cleartext signature framework (RFC 9580 §7): the armor line, only
/// `Hash:` headers, the dash-escaped text, one signature, nothing after.
fn cleartext_block(text: &str) -> Option<String> {
    const SIGNATURE: &str = "-----BEGIN PGP SIGNATURE-----";
    const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";
    let mut lines = text.lines().map(|l| l.trim_end_matches([' ', '\t', '\r']));
    if lines.next()? != ARMOR_SIGNED {
        return None;
    }
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if !line.starts_with("Hash: ") {
            return None;
        }
    }
    let mut shown = Vec::new();
    for line in lines.by_ref() {
        if line == SIGNATURE {
            break;
        }
        if line.starts_with("-----BEGIN PGP") {
            return None;
        }
        shown.push(line.strip_prefix("- ").unwrap_or(line));
    }
    let mut ended = false;
    for line in lines {
        if ended || line.starts_with("-----BEGIN PGP") {
            return None;
        }
        ended = line == SIGNATURE_END;
    }
    ended.then(|| shown.join("\n"))
}

/// Whether the text Sequoia verified is `shown`, line for line (trailing
/// blanks are not signed in the framework).
fn same_text(checked: &[u8], shown: &str) -> bool {
    let checked = String::from_utf8_lossy(checked);
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.trim_end_matches([' ', '\t', '\r']).to_string())
            .collect()
    };
    let (mut a, mut b) = (lines(&checked), lines(shown));
    while a.last().is_some_and(String::is_empty) {
        a.pop();
    }
    while b.last().is_some_and(String::is_empty) {
        b.pop();
    }
    a == b
}

/// The body of an entity with its transfer encoding undone.
fn decoded_body(entity: &Entity<'_>) -> Vec<u8> {
    let cte = mime::values(entity.header, "Content-Transfer-Encoding");
    let cte = cte.first().map(|v| v.to_ascii_lowercase());
    match cte.as_deref() {
        Some("base64") => {
            let clean: Vec<u8> = entity
                .body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&clean)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&clean))
                .unwrap_or_default()
        }
        Some("quoted-printable") => letterlock_mime::decode_quoted_printable(entity.body),
        _ => entity.body.to_vec(),
    }
}

/// An inline-PGP plaintext as a MIME entity of its own.
fn inline_entity(plain: &[u8], ct: &ContentType, eol: &str) -> Zeroizing<Vec<u8>> {
    let charset = ct.param("charset").unwrap_or("utf-8");
    let long_lines = plain.split(|&b| b == b'\n').any(|l| l.len() > 998);
    let mut out = Vec::with_capacity(plain.len() * 4 / 3 + 128);
    mime::push_field(
        &mut out,
        "Content-Type",
        &format!("text/plain; charset=\"{charset}\""),
        eol,
    );
    if long_lines || plain.contains(&0) {
        mime::push_field(&mut out, "Content-Transfer-Encoding", "base64", eol);
        out.extend_from_slice(eol.as_bytes());
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
        for chunk in encoded.as_bytes().chunks(76) {
            out.extend_from_slice(chunk);
            out.extend_from_slice(eol.as_bytes());
        }
    } else {
        mime::push_field(&mut out, "Content-Transfer-Encoding", "8bit", eol);
        out.extend_from_slice(eol.as_bytes());
        out.extend_from_slice(plain);
    }
    Zeroizing::new(out)
}

/// Outer fields kept beside a protected header: what the provider's
/// servers added on the way (trace, authentication results, list
/// information). Everything else outside is unauthenticated and would stand
/// next to the sender's own fields as if they had written it.
const TRANSPORT_FIELDS: &[&str] = &[
    "Received",
    "Return-Path",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "Authentication-Results",
    "Received-SPF",
    "DKIM-Signature",
    "Autocrypt",
];
const TRANSPORT_PREFIXES: &[&str] = &["ARC-", "List-", "X-Spam"];

/// Whether the sender protected the header inside the encryption (RFC 9788:
/// `hp` on the inner Content-Type, or a From inside).
fn header_protected(content: &[u8]) -> bool {
    let inner = Entity::parse(content);
    inner.content_type().param("hp").is_some()
        || mime::fields(inner.header).iter().any(|f| f.is("From"))
}

/// The message the user sees: fields that came only from outside, then the
/// decrypted entity's fields, which win over outer ones of the same name,
/// then its body.
///
/// When the sender protected the header (RFC 9788: `hp` on the inner
/// Content-Type, or a From inside), the inner header is the whole header:
/// of the outer fields only transport ones are kept. An attacker who
/// re-sends someone's ciphertext must not be able to add a Reply-To, Cc or
/// Subject that the reader takes for the sender's ("Re: What's up Johnny?").
/// Without protection (older clients) the outer fields are all there is.
fn restore(root: &Entity<'_>, content: &[u8]) -> Vec<u8> {
    let eol = line_ending(root.header);
    let inner = Entity::parse(content);
    let inner_fields = mime::fields(inner.header);
    let protected = header_protected(content);
    // `get`: a hostile field name may have a multi-byte character there.
    let starts_with = |f: &Field<'_>, prefix: &str| {
        f.name
            .get(..prefix.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(prefix))
    };
    let is_content = |f: &Field<'_>| starts_with(f, "Content-") || f.is("MIME-Version");
    let is_transport = |f: &Field<'_>| {
        TRANSPORT_FIELDS.iter().any(|n| f.is(n))
            || TRANSPORT_PREFIXES.iter().any(|p| starts_with(f, p))
    };
    let mut out = Vec::with_capacity(content.len() + root.header.len());
    for f in mime::fields(root.header) {
        let shadowed = inner_fields.iter().any(|i| i.is(f.name));
        let kept = !protected || is_transport(&f);
        if kept && !shadowed && !is_content(&f) && !is_engine_field(&f) {
            push_raw(&mut out, &f, eol);
        }
    }
    if !inner_fields.iter().any(|f| f.is("MIME-Version")) {
        mime::push_field(&mut out, "MIME-Version", "1.0", eol);
    }
    for f in inner_fields.iter().filter(|f| !is_engine_field(f)) {
        push_raw(&mut out, f, eol);
    }
    out.extend_from_slice(line_ending(content).as_bytes());
    out.extend_from_slice(inner.body);
    out
}

fn is_engine_field(f: &Field<'_>) -> bool {
    ENGINE_FIELDS.iter().any(|n| f.is(n))
}

fn push_raw(out: &mut Vec<u8>, f: &Field<'_>, eol: &str) {
    out.extend_from_slice(f.raw);
    if !f.raw.ends_with(b"\n") {
        out.extend_from_slice(eol.as_bytes());
    }
}

/// Whether a header field carries the status header in any spelling a
/// lenient reader accepts (rule 6: remove as the most lenient client
/// reads, trust as the strictest): the name in any case, blanks before
/// the colon (Thunderbird's libmime backs up over them), and at the start
/// of any piece of the field that a bare CR or LF begins, with leading
/// blanks (a reader that ends lines at a bare CR sees a field there).
pub(crate) fn spells_status_header(field: &[u8]) -> bool {
    let name = STATUS_HEADER.as_bytes();
    field.split(|&b| b == b'\r' || b == b'\n').any(|piece| {
        let piece = piece.trim_ascii_start();
        piece
            .get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
            && piece[name.len()..].trim_ascii_start().first() == Some(&b':')
    })
}

/// The message without any field that [`spells_status_header`] (the whole
/// field, continuation lines included), or `None` if it has none.
pub(crate) fn strip_status_spellings(message: &[u8]) -> Option<Vec<u8>> {
    let (header, _) = mime::split_header(message);
    let fields = mime::fields(header);
    if !fields.iter().any(|f| spells_status_header(f.raw)) {
        return None;
    }
    let mut out = Vec::with_capacity(message.len());
    for f in fields.iter().filter(|f| !spells_status_header(f.raw)) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(&message[header.len()..]);
    Some(out)
}

/// The message with every header field called one of `names` removed.
pub(crate) fn strip_fields(message: &[u8], names: &[&str]) -> Vec<u8> {
    let (header, _) = mime::split_header(message);
    let fields = mime::fields(header);
    if !fields.iter().any(|f| names.iter().any(|n| f.is(n))) {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len());
    for f in fields.iter().filter(|f| !names.iter().any(|n| f.is(n))) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(&message[header.len()..]);
    out
}

/// The From address of a message as it arrived, if it has exactly one:
/// the address whose held key may sign it ([`SignerKeys`]). A protected
/// From inside the encryption must name the same address for a signature
/// to count.
pub fn sender_address(message: &[u8]) -> Option<String> {
    let (header, _) = mime::split_header(message);
    single_from(header)
}

/// The From address, if the message has exactly one (one field, one
/// mailbox), as mail-parser's RFC 5322 parser reads it.
fn single_from(header: &[u8]) -> Option<String> {
    letterlock_mime::sender(header).map(|m| m.address)
}

fn recipients(header: &[u8]) -> Vec<String> {
    ["To", "Cc"]
        .iter()
        .flat_map(|n| mime::values(header, n))
        .flat_map(|v| mime::addresses(&v))
        .collect()
}
