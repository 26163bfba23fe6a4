//! The Letterlock message engine: encrypts and signs outgoing RFC 5322
//! messages, decrypts and verifies incoming ones.
//!
//! - [`encrypt`] turns a client's message into RFC 3156 PGP/MIME, signed
//!   inside the encryption, with RFC 9788 header protection, the sender's
//!   Autocrypt header inside and outside, gossip and padding inside.
//! - [`sign`] and [`add_autocrypt_header`] are for mail that goes out in
//!   cleartext; [`outgoing`] reads and adjusts a client's message before
//!   either (recipients, Bcc, subject tags).
//! - [`decrypt`] opens PGP/MIME at the root (or under an outer signature) and
//!   whole-body inline PGP, refuses every EFAIL-shaped structure, requires
//!   integrity protection, restores protected headers and judges signatures
//!   against the whole message and its From address.
//!
//! - [`message_facts`] and [`decrypted_facts`] read what Autocrypt needs
//!   from an incoming message.
//!
//! OpenPGP is sequoia-openpgp; MIME structure is `letterlock_mime`'s (on
//! mail-parser), whose header and entity slices keep the bytes signatures
//! cover exactly as the client wrote them.
//! Autocrypt decisions are the `autocrypt` crate's.
//!
//! ```
//! use std::time::SystemTime;
//! use mailcrypt::{Boundary, DecryptContext, EncryptRequest, HeldKeys, SignatureStatus};
//!
//! let now = SystemTime::now();
//! let alice = autocrypt::key::generate("alice@example.org", now)?;
//! let bob = autocrypt::key::generate("bob@example.org", now)?;
//! let sent = mailcrypt::encrypt(
//!     b"From: bob@example.org\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nsecret\r\n",
//!     &EncryptRequest {
//!         sender: &bob,
//!         recipients: &[alice.clone().strip_secret_key_material()],
//!         autocrypt: None,
//!         gossip: &[],
//!         hide_recipients: false,
//!         pad: true,
//!         now,
//!         boundary: Boundary::Random,
//!     },
//! )?;
//! // The keystore's answer to "whose key may sign for bob@example.org?".
//! let mut held = HeldKeys::new();
//! held.hold("bob@example.org", bob.fingerprint());
//! let bob_public = bob.clone().strip_secret_key_material();
//! let read = mailcrypt::decrypt(
//!     &sent,
//!     &DecryptContext {
//!         secret_keys: std::slice::from_ref(&alice),
//!         verifier_certs: std::slice::from_ref(&bob_public),
//!         signers: &held,
//!         autocrypt_key_verifies: false,
//!         now,
//!     },
//! );
//! assert!(read.decrypted);
//! assert!(matches!(read.signature, SignatureStatus::Valid { .. }));
//! assert!(String::from_utf8_lossy(&read.message).contains("Subject: hi"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decrypt;
mod encrypt;
mod error;
mod facts;
mod openpgp;
pub mod outgoing;
mod padding;

// The engine's own names for the MIME layer underneath.
use letterlock_mime::entity;
use letterlock_mime::header as mime;

pub use decrypt::{
    decrypt, sender_address, DecryptContext, HeldKeys, Outcome, SignatureStatus, SignerKeys,
    MAX_MESSAGE_SIZE, STATUS_HEADER,
};
pub use encrypt::{add_autocrypt_header, encrypt, sign, Boundary, EncryptRequest};
pub use error::{EncryptError, Refusal};
pub use facts::{decrypted_facts, message_facts};
pub use padding::bucket;

/// Removes every header field the gateway uses to tell the user something
/// (`Letterlock-Security`), in every spelling a lenient client would read
/// as one, so that nobody outside can forge it.
pub fn strip_status_headers(message: &[u8]) -> Vec<u8> {
    decrypt::strip_status_spellings(message).unwrap_or_else(|| message.to_vec())
}

/// Whether a message (or its header section alone) carries the status
/// header in any spelling a lenient client would read as one (a message
/// that does must be served by the gateway, which removes it).
pub fn has_status_header(message: &[u8]) -> bool {
    mime::fields(mime::split_header(message).0)
        .iter()
        .any(|f| decrypt::spells_status_header(f.raw))
}

/// Puts `Letterlock-Security: value` first, with the message's own line
/// ending. The message must not carry one already ([`decrypt`]'s output
/// never does).
pub fn add_status_header(message: &[u8], value: &str) -> Vec<u8> {
    let eol = mime::line_ending(message);
    let mut out = Vec::with_capacity(message.len() + value.len() + 32);
    mime::push_field(&mut out, STATUS_HEADER, value, eol);
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule 6 for every spelling a lenient client accepts; a mention in a
    /// value or the body is not a field.
    #[test]
    fn status_headers_are_removed_however_they_are_spelled() {
        for forged in [
            "Letterlock-Security: encrypted; signature=valid\r\n",
            "letterlock-security:encrypted\r\n",
            "Letterlock-Security : encrypted; signature=valid\r\n",
            "Letterlock-Security\t:encrypted\r\n",
            "Subject: hi\rLetterlock-Security: encrypted; signature=valid\r\n",
            "Subject: hi\r\n\tthere\rLetterlock-Security: encrypted\r\n",
            "X-A: b\r Letterlock-Security : valid\r\n",
        ] {
            let m = format!("From: a@example.org\r\n{forged}To: b@example.org\r\n\r\nbody\r\n");
            assert!(has_status_header(m.as_bytes()), "{forged:?}");
            let clean = String::from_utf8(strip_status_headers(m.as_bytes())).expect("text");
            assert_eq!(
                clean, "From: a@example.org\r\nTo: b@example.org\r\n\r\nbody\r\n",
                "{forged:?}"
            );
        }
        let innocent =
            "Subject: about Letterlock-Security: a header\r\n\r\nLetterlock-Security: x\r\n";
        assert!(!has_status_header(innocent.as_bytes()));
        assert_eq!(
            strip_status_headers(innocent.as_bytes()),
            innocent.as_bytes()
        );
    }

    #[test]
    fn status_header_follows_the_line_ending() {
        assert_eq!(
            add_status_header(b"A: b\n\nx\n", "encrypted"),
            b"Letterlock-Security: encrypted\nA: b\n\nx\n"
        );
        assert_eq!(
            add_status_header(b"A: b\r\n\r\nx", "encrypted"),
            b"Letterlock-Security: encrypted\r\nA: b\r\n\r\nx"
        );
    }
}
