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

mod engine;
mod restore;

use engine::{has_bare_cr, Engine};
pub use restore::sender_address;
use restore::{header_protected, recipients, restore, single_from};
pub(crate) use restore::{spells_status_header, strip_fields, strip_status_spellings};

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
    let engine = Engine::new(ctx, verifiers, from.as_deref());
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
    outcome.detail = engine.into_detail();
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
