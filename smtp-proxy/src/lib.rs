//! Letterlock's SMTP side.
//!
//! - [`session`]: the client-facing ESMTP submission session (RFC 5321,
//!   6409; AUTH PLAIN/LOGIN, STARTTLS, SIZE, 8BITMIME, SMTPUTF8, PIPELINING,
//!   ENHANCEDSTATUSCODES) as a sans-I/O state machine. Written by hand: the
//!   Rust SMTP server crates either own the socket or lack the hooks the
//!   gateway needs (authentication checked against the provider, a reply
//!   withheld until the provider accepted every copy).
//! - [`decision`]: encrypt, send in the clear, or refuse — from the
//!   recipients' keys, the account policy and the writer's override.
//! - [`submission`]: a submitted message read for sending: the writer's
//!   request (subject tag or header, removed) and its Bcc recipients.
//! - [`outgoing`]: from a submitted message to the copies that go to the
//!   provider — keys, decision, encryption (a copy per Bcc recipient), or
//!   the cleartext copy with the Autocrypt header.
//! - [`relay`]: the provider connection, logged in with the client's own
//!   credentials; lettre speaks SMTP, the transaction is driven here.
//! - [`server`]: the listener and the per-connection tokio loop around
//!   [`session::Session`] (STARTTLS with an rcgen certificate, idle
//!   timeout, graceful shutdown).
//! - [`reply`]: replies with enhanced status codes.

pub mod decision;
pub mod outgoing;
pub mod relay;
pub mod reply;
pub mod server;
pub mod session;
pub mod submission;
