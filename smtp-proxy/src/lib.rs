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
//! - [`reply`]: replies with enhanced status codes.
//!
//! Still to come (issue 5): the tokio loop, the relay to the provider
//! (lettre), and the pipeline that joins decision, encryption and Bcc copies.

pub mod decision;
pub mod outgoing;
pub mod relay;
pub mod reply;
pub mod server;
pub mod session;
pub mod submission;
