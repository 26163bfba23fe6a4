//! The OpenPGP operations the engine needs, on top of sequoia-openpgp:
//! sign-and-encrypt, detached signing, decryption with integrity checking,
//! and signature verification that records what it found instead of failing.

use std::io::{Read, Write};
use std::time::SystemTime;

use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::cert::Preferences;
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::types::{KeyFlags, SymmetricAlgorithm};
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use crate::error::EncryptError;

/// Upper bound on what decryption may produce, so a compression bomb or a
/// quine cannot exhaust memory.
pub(crate) const MAX_PLAINTEXT: usize = 256 * 1024 * 1024;

fn policy() -> &'static openpgp::policy::StandardPolicy<'static> {
    autocrypt::policy()
}

/// The sender's signing key pair.
pub(crate) fn signing_keypair(cert: &Cert, now: SystemTime) -> Result<KeyPair, EncryptError> {
    cert.keys()
        .with_policy(policy(), now)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .unencrypted_secret()
        .next()
        .and_then(|ka| ka.key().clone().into_keypair().ok())
        .ok_or_else(|| EncryptError::NoSigningKey(cert.fingerprint().to_hex()))
}

/// Signs and encrypts `plaintext` into an ASCII-armored OpenPGP message.
/// Signs and encrypts the concatenation of `plaintext`'s pieces, appending
/// the ASCII-armored result to `out` with `eol` line endings. Streaming
/// keeps a large message from existing as a whole a second or third time.
pub(crate) fn sign_and_encrypt(
    plaintext: &[&[u8]],
    signer: KeyPair,
    recipients: &[&Cert],
    hidden: bool,
    now: SystemTime,
    out: &mut Vec<u8>,
    eol: &str,
) -> Result<(), EncryptError> {
    if recipients.is_empty() {
        return Err(EncryptError::NoRecipients);
    }
    let flags = KeyFlags::empty()
        .set_transport_encryption()
        .set_storage_encryption();
    let mut keys = Vec::new();
    for cert in recipients {
        let before = keys.len();
        for ka in cert
            .keys()
            .with_policy(policy(), now)
            .supported()
            .alive()
            .revoked(false)
            .key_flags(flags.clone())
        {
            let handle: Option<KeyHandle> = (!hidden).then(|| ka.key().key_handle());
            keys.push(Recipient::new(ka.valid_cert().features(), handle, ka.key()));
        }
        if keys.len() == before {
            return Err(EncryptError::NoEncryptionKey(cert.fingerprint().to_hex()));
        }
    }
    let total: usize = plaintext.iter().map(|p| p.len()).sum();
    // Armor is 4/3 of the ciphertext plus line ends (66 bytes per 48);
    // reserving too little would make the buffer grow by copying, with
    // both copies resident. Untouched capacity costs no memory.
    out.reserve(total + total / 2 + 64 * 1024);
    let mut sink = LineEnds {
        out,
        crlf: eol == "\r\n",
    };
    let message = Message::new(&mut sink);
    let message = Armorer::new(message).build()?;
    let message = Encryptor::for_recipients(message, keys).build()?;
    let message = Signer::new(message, signer)?.creation_time(now).build()?;
    let mut literal = LiteralWriter::new(message).date(now)?.build()?;
    // In pieces: the writers below (encryption, armor) each make a
    // scratch copy the size of one write.
    for piece in plaintext {
        for chunk in piece.chunks(64 * 1024) {
            literal.write_all(chunk)?;
        }
    }
    literal.finalize()?;
    Ok(())
}

/// Sequoia's armor ends lines in LF; a CRLF message needs CRLF.
struct LineEnds<'a> {
    out: &'a mut Vec<u8>,
    crlf: bool,
}

impl std::io::Write for LineEnds<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.crlf {
            self.out.extend_from_slice(buf);
            return Ok(buf.len());
        }
        for piece in buf.split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(line) => {
                    self.out
                        .extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                    self.out.extend_from_slice(b"\r\n");
                }
                None => self.out.extend_from_slice(piece),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A detached, armored signature over `data`.
pub(crate) fn sign_detached(
    data: &[u8],
    signer: KeyPair,
    now: SystemTime,
) -> Result<Vec<u8>, EncryptError> {
    let mut sink = Vec::new();
    {
        let message = Message::new(&mut sink);
        let message = Armorer::new(message)
            .kind(openpgp::armor::Kind::Signature)
            .build()?;
        let mut signer = Signer::new(message, signer)?
            .creation_time(now)
            .detached()
            .build()?;
        signer.write_all(data)?;
        signer.finalize()?;
    }
    Ok(sink)
}

/// What the signatures on some data said.
#[derive(Debug, Clone)]
pub(crate) enum SigCheck {
    /// A good signature made by a key of this certificate.
    Good(Box<Cert>),
    /// A signature whose key we do not have.
    MissingKey(Option<KeyHandle>),
    /// The key is known but the signature is wrong, or the key was not valid.
    Bad(String),
    /// The signature packet could not be understood.
    Malformed(String),
}

/// What decryption produced.
pub(crate) struct Decrypted {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub signatures: Vec<SigCheck>,
    /// Whom the message was encrypted to, as its PKESK packets name them
    /// (`None`: a hidden recipient).
    pub recipients: Vec<Option<KeyHandle>>,
}

/// Why decryption failed, before mapping to the uniform refusal.
#[derive(Debug)]
pub(crate) enum DecryptFailure {
    NoKey,
    Integrity(String),
}

/// The certificates a signature may be checked with, borrowed where they
/// already are, so a message costs no copy of the whole contact list.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Verifiers<'a> {
    /// Known contacts.
    pub known: &'a [Cert],
    /// The user's own certificates (mail they sent themselves); secret parts
    /// are stripped before any is handed to sequoia.
    pub own: &'a [Cert],
    /// The key in the message's own valid Autocrypt header.
    pub sender: Option<&'a Cert>,
}

impl<'a> Verifiers<'a> {
    fn iter(&self) -> impl Iterator<Item = &'a Cert> {
        self.known.iter().chain(self.own).chain(self.sender)
    }
}

struct Helper<'a> {
    secret: &'a [Cert],
    verifiers: Verifiers<'a>,
    signatures: Vec<SigCheck>,
    encrypted: bool,
    session_key_rejected: bool,
    recipients: Vec<Option<KeyHandle>>,
}

impl<'a> Helper<'a> {
    fn new(secret: &'a [Cert], verifiers: Verifiers<'a>) -> Self {
        Helper {
            secret,
            verifiers,
            signatures: Vec::new(),
            encrypted: false,
            session_key_rejected: false,
            recipients: Vec::new(),
        }
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self
            .verifiers
            .iter()
            .filter(|c| {
                c.keys()
                    .any(|k| ids.iter().any(|id| id.aliases(k.key().key_handle())))
            })
            .map(|c| c.clone().strip_secret_key_material())
            .collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            match layer {
                MessageLayer::Encryption { .. } => self.encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    for result in results {
                        self.signatures.push(classify(result));
                    }
                }
            }
        }
        Ok(())
    }
}

fn classify(result: Result<openpgp::parse::stream::GoodChecksum, VerificationError>) -> SigCheck {
    match result {
        Ok(good) => SigCheck::Good(Box::new(good.ka.cert().clone())),
        Err(VerificationError::MissingKey { sig }) => {
            SigCheck::MissingKey(sig.get_issuers().into_iter().next())
        }
        Err(VerificationError::UnboundKey { cert, error, .. }) => {
            SigCheck::Bad(format!("key {}: {error}", cert.fingerprint()))
        }
        Err(VerificationError::BadKey { ka, error, .. })
        | Err(VerificationError::BadSignature { ka, error, .. }) => {
            SigCheck::Bad(format!("key {}: {error}", ka.cert().fingerprint()))
        }
        Err(e) => SigCheck::Malformed(e.to_string()),
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        self.recipients = pkesks.iter().map(|p| p.recipient()).collect();
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for cert in self.secret {
                // Expired or revoked keys still open old mail, so no policy
                // filter on validity here; only the recipient must match
                // (a wildcard recipient tries every key).
                for ka in cert.keys().unencrypted_secret() {
                    if let Some(r) = &recipient {
                        if !r.aliases(ka.key().key_handle()) {
                            continue;
                        }
                    }
                    let Ok(mut pair) = ka.key().clone().into_keypair() else {
                        continue;
                    };
                    if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo) {
                        if decrypt(algo, &sk) {
                            return Ok(Some(cert.clone()));
                        }
                        // The key opened the session key but the data did
                        // not check out (e.g. a damaged first AEAD chunk).
                        self.session_key_rejected = true;
                    }
                }
            }
        }
        if self.session_key_rejected {
            return Err(openpgp::anyhow::anyhow!(
                "the session key does not open the encrypted data"
            ));
        }
        Err(openpgp::anyhow::anyhow!("no matching secret key"))
    }
}

/// Runs a parser over hostile input, turning a panic inside it into `None`.
///
/// sequoia-openpgp 2.4.2 panics on some damaged SEIP packets (an `unwrap` in
/// `parse.rs` after a short read; found by our property test). A panic must
/// never take the gateway down, so every parse of outside data goes through
/// here; the caller reports the input as damaged.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// How much plaintext Sequoia's decryptor (and verifier) holds back until the signatures
/// are checked. Its default, 25 MiB, is allocated and zeroed per message
/// whenever the data comes in partial-body chunks (as gpg and rnp write
/// it): a quarter of the time of reading a mailbox of such mail. The
/// holding back is not what keeps unchecked plaintext from the user here:
/// [`decrypt`] reads the whole message into its own buffer and releases it
/// only once the message was processed to its end, its integrity
/// protection and signatures checked. Larger messages simply stream
/// through this buffer.
const DECRYPT_BUFFER: usize = 256 * 1024;

/// Decrypts an OpenPGP message (armored or binary) and verifies the
/// signatures inside it. The plaintext is returned only if the whole message
/// was read and its integrity protection checked out; on any failure the
/// partial plaintext is wiped.
pub(crate) fn decrypt(
    ciphertext: &[u8],
    secret: &[Cert],
    verifiers: Verifiers<'_>,
    now: SystemTime,
) -> Result<Decrypted, DecryptFailure> {
    guarded(|| decrypt_unguarded(ciphertext, secret, verifiers, now)).unwrap_or_else(|| {
        Err(DecryptFailure::Integrity(
            "the OpenPGP parser gave up on damaged input".into(),
        ))
    })
}

fn decrypt_unguarded(
    ciphertext: &[u8],
    secret: &[Cert],
    verifiers: Verifiers<'_>,
    now: SystemTime,
) -> Result<Decrypted, DecryptFailure> {
    let helper = Helper::new(secret, verifiers);
    let mut decryptor = match DecryptorBuilder::from_bytes(ciphertext).and_then(|b| {
        b.buffer_size(DECRYPT_BUFFER)
            .with_policy(policy(), now, helper)
    }) {
        Ok(d) => d,
        Err(e) => {
            // The builder reads up to the first literal data; failing there
            // without having found our key means the message is not for us.
            return Err(classify_failure(&e));
        }
    };
    let mut plaintext = Zeroizing::new(Vec::new());
    let result = read_bounded(&mut decryptor, &mut plaintext);
    if let Err(e) = result {
        return Err(DecryptFailure::Integrity(e.to_string()));
    }
    if !decryptor.message_processed() {
        return Err(DecryptFailure::Integrity(
            "the message was not read to its end".into(),
        ));
    }
    let helper = decryptor.into_helper();
    if !helper.encrypted {
        return Err(DecryptFailure::Integrity(
            "the message is not encrypted".into(),
        ));
    }
    Ok(Decrypted {
        plaintext,
        signatures: helper.signatures,
        recipients: helper.recipients,
    })
}

fn classify_failure(e: &openpgp::anyhow::Error) -> DecryptFailure {
    let text = format!("{e:#}");
    if text.contains("no matching secret key") {
        DecryptFailure::NoKey
    } else {
        DecryptFailure::Integrity(text)
    }
}

fn read_bounded(reader: &mut impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if out.len() + n > MAX_PLAINTEXT {
            return Err(std::io::Error::other(
                "the plaintext exceeds the size limit",
            ));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Verifies a detached signature over `data`.
pub(crate) fn verify_detached(
    data: &[u8],
    signature: &[u8],
    verifiers: Verifiers<'_>,
    now: SystemTime,
) -> Vec<SigCheck> {
    guarded(|| verify_detached_unguarded(data, signature, verifiers, now)).unwrap_or_else(|| {
        vec![SigCheck::Malformed(
            "the OpenPGP parser gave up on damaged input".into(),
        )]
    })
}

fn verify_detached_unguarded(
    data: &[u8],
    signature: &[u8],
    verifiers: Verifiers<'_>,
    now: SystemTime,
) -> Vec<SigCheck> {
    let helper = Helper::new(&[], verifiers);
    let mut verifier = match DetachedVerifierBuilder::from_bytes(signature)
        .and_then(|b| b.with_policy(policy(), now, helper))
    {
        Ok(v) => v,
        Err(e) => return vec![SigCheck::Malformed(e.to_string())],
    };
    if let Err(e) = verifier.verify_bytes(data) {
        return vec![SigCheck::Malformed(e.to_string())];
    }
    verifier.into_helper().signatures
}

/// Verifies an inline-signed (cleartext signature framework) or signed
/// OpenPGP message and returns the signed text.
pub(crate) fn verify_inline(
    message: &[u8],
    verifiers: Verifiers<'_>,
    now: SystemTime,
) -> Option<(Zeroizing<Vec<u8>>, Vec<SigCheck>)> {
    guarded(|| verify_inline_unguarded(message, verifiers, now)).flatten()
}

fn verify_inline_unguarded(
    message: &[u8],
    verifiers: Verifiers<'_>,
    now: SystemTime,
) -> Option<(Zeroizing<Vec<u8>>, Vec<SigCheck>)> {
    let helper = Helper::new(&[], verifiers);
    // The same reasoning as for decryption: read whole, released only if
    // processed to the end.
    let mut verifier = VerifierBuilder::from_bytes(message)
        .and_then(|b| {
            b.buffer_size(DECRYPT_BUFFER)
                .with_policy(policy(), now, helper)
        })
        .ok()?;
    let mut text = Zeroizing::new(Vec::new());
    read_bounded(&mut verifier, &mut text).ok()?;
    if !verifier.message_processed() {
        return None;
    }
    Some((text, verifier.into_helper().signatures))
}
