//! Autocrypt Level 1 as pure logic.
//!
//! This crate implements the rules of the Autocrypt Level 1 specification
//! (<https://autocrypt.org/level1.html>) without doing any I/O: it parses and
//! renders `Autocrypt:` and `Autocrypt-Gossip:` headers, keeps the per-peer
//! state and updates it from incoming messages, computes the encryption
//! recommendation, decides which gossip to emit and to accept, generates keys
//! in the shape Autocrypt asks for, and creates and imports Autocrypt Setup
//! Messages.
//!
//! Callers (the message engine and the keystore) hand in facts they already
//! parsed — addresses, dates, raw header values — and get decisions back.
//! Storage and MIME handling live elsewhere, so everything here is testable
//! with plain values and property tests.
//!
//! Written by hand because no maintained Rust crate implements Level 1 on top
//! of sequoia-openpgp.
//!
//! ```
//! use autocrypt::{AutocryptHeader, PreferEncrypt};
//!
//! let key = autocrypt::key::generate("alice@example.org", std::time::SystemTime::now())?;
//! let value = AutocryptHeader::new("alice@example.org", PreferEncrypt::Mutual, key).render("\r\n");
//! // As a reader takes it from a message whose From is Alice; for anyone else it is no header.
//! let header = AutocryptHeader::parse(&value, Some("Alice@Example.org"))?;
//! assert_eq!(header.prefer_encrypt, PreferEncrypt::Mutual);
//! assert!(AutocryptHeader::parse(&value, Some("mallory@example.net")).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod addr;
pub mod certs;
mod error;
pub mod gossip;
mod header;
pub mod key;
pub mod peer;
pub mod recommendation;
pub mod setup;

pub use addr::{addr_eq, normalize_addr};
pub use error::{HeaderError, SetupError};
pub use header::{select_sender_header, AutocryptHeader, PreferEncrypt, MAX_HEADER_LEN};
pub use peer::{effective_date, examine, Ignored, Incoming, MessageFacts, PeerChange, PeerState};
pub use recommendation::{combine, recommend, RecipientRecommendation, Recommendation};

/// The OpenPGP policy every decision in this crate is made under.
pub fn policy() -> &'static sequoia_openpgp::policy::StandardPolicy<'static> {
    static POLICY: sequoia_openpgp::policy::StandardPolicy<'static> =
        sequoia_openpgp::policy::StandardPolicy::new();
    &POLICY
}
