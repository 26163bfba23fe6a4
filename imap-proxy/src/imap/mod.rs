//! The pure IMAP side of the proxy: what is decided from bytes and protocol
//! values alone, with no socket, task or store.
//!
//! - [`detect`]: which messages the gateway serves itself.
//! - [`section`], [`structure`]: `BODY[…]` sections and partial ranges;
//!   ENVELOPE, BODY, BODYSTRUCTURE — computed from the served bytes. Written
//!   by hand (the IMAP crates parse and encode the protocol but do not
//!   compute these from a message) and checked against Dovecot's answers on
//!   the Thunderbird test corpus.
//! - [`fetch`]: a provider's FETCH answer rewritten from the served bytes.
//! - [`fetch_command`]: one client FETCH as a command object returning
//!   effects.
//! - [`search`]: SEARCH text criteria judged on decrypted text.
//! - [`sequence`]: UID sets for batches.
//! - [`capabilities`]: what the proxy advertises and refuses.

pub mod capabilities;
pub mod detect;
pub mod fetch;
pub mod fetch_command;
pub mod search;
pub mod section;
pub mod sequence;
pub mod structure;
