//! Letterlock's IMAP side.
//!
//! - [`upstream`]: the connection to the provider (imap-next for the
//!   protocol, tokio-rustls for TLS, `ca_file` honoured).
//! - [`view`]: provider bytes → what the user reads (decrypted, with the
//!   `Letterlock-Security` header). The proxy and the archive sync share it,
//!   so both archive the same bytes for the same message.
//! - [`learn`]: keys learned from what is read (Autocrypt header, gossip).
//! - [`sync`]: `gateway archive sync` — bring the archive up to date with a
//!   mailbox, incrementally and resumably.
//! - For the client-facing proxy, the pure parts so far: [`detect`] (which
//!   messages the gateway serves itself), [`section`] (`BODY[…]` sections
//!   and partial ranges), [`structure`] (ENVELOPE, BODY, BODYSTRUCTURE) and
//!   [`fetch`] (a provider's FETCH answer rewritten from the served bytes).
//!   Section and structure are written by hand — the IMAP crates parse and
//!   encode the protocol but do not compute these from a message — and are
//!   checked against Dovecot's answers on the Thunderbird test corpus.
//!
//! - [`proxy`]: the client-facing session loop (LOGIN pass-through,
//!   command forwarding, FETCH rewriting, APPEND encryption, SEARCH over
//!   decrypted text) built on these; [`downloads`] lets the sessions of one
//!   account download and view each new message once between them, and
//!   [`plain`] remembers which messages are plain mail, so that a
//!   mailbox-wide FETCH of sizes does not make the provider read them all.

pub mod detect;
pub mod downloads;
pub mod fetch;
pub mod learn;
pub mod plain;
pub mod proxy;
pub mod search;
pub mod section;
pub mod starttls;
pub mod structure;
pub mod sync;
pub mod upstream;
pub mod view;
