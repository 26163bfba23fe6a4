//! Letterlock's IMAP side.
//!
//! - [`upstream`]: the connection to the provider (imap-next for the
//!   protocol, tokio-rustls for TLS, `ca_file` honoured).
//! - [`view`]: provider bytes → what the user reads (decrypted, with the
//!   `Letterlock-Security` header). The proxy and the archive sync share it,
//!   so both archive the same bytes for the same message.
//! - [`sync`]: `gateway archive sync` — bring the archive up to date with a
//!   mailbox, incrementally and resumably.
//!
//! The client-facing proxy (decrypt on FETCH, encrypt on APPEND) builds on
//! these and is not here yet.

pub mod learn;
pub mod section;
pub mod structure;
pub mod sync;
pub mod upstream;
pub mod view;
