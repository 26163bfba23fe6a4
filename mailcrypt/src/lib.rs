//! The Letterlock message engine: encrypts and signs outgoing RFC 5322
//! messages, decrypts and verifies incoming ones.
//!
//! - [`encrypt`] turns a client's message into RFC 3156 PGP/MIME, signed
//!   inside the encryption, with RFC 9788 header protection, the sender's
//!   Autocrypt header outside, gossip and padding inside.
//! - [`sign`] and [`add_autocrypt_header`] are for mail that goes out in
//!   cleartext; [`outgoing`] reads and adjusts a client's message before
//!   either (recipients, Bcc, subject tags).
//! - [`decrypt`] opens PGP/MIME at the root (or under an outer signature) and
//!   whole-body inline PGP, refuses every EFAIL-shaped structure, requires
//!   integrity protection, restores protected headers and judges signatures
//!   against the whole message and its From address.
//!
//! OpenPGP is sequoia-openpgp; MIME structure is understood with mail-parser,
//! but the bytes that signatures cover are cut out of the input by hand
//! ([`entity`](crate)) so the client's message survives byte for byte.
//! Autocrypt decisions are the `autocrypt` crate's.

mod decrypt;
mod encrypt;
mod entity;
mod error;
mod mime;
mod openpgp;
pub mod outgoing;
mod padding;

pub use decrypt::{
    decrypt, DecryptContext, Outcome, SignatureStatus, MAX_MESSAGE_SIZE, STATUS_HEADER,
};
pub use encrypt::{add_autocrypt_header, encrypt, sign, Boundary, EncryptRequest};
pub use error::{EncryptError, Refusal};
pub use padding::bucket;

/// Removes every header field the gateway uses to tell the user something
/// (`Letterlock-Security`), so that nobody outside can forge it.
pub fn strip_status_headers(message: &[u8]) -> Vec<u8> {
    decrypt::strip_fields(message, &[STATUS_HEADER])
}
