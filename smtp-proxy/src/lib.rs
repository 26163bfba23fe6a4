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
//!
//! The session is driven with bytes in and actions out, no socket:
//!
//! ```
//! use smtp_proxy::session::{Action, Limits, Options, Session};
//!
//! let mut session = Session::new(Options {
//!     hostname: "gateway.local".into(),
//!     starttls: false,
//!     tls_active: false,
//!     auth_requires_tls: false,
//!     limits: Limits::default(),
//! });
//! let greeting = session.poll();
//! assert!(matches!(&greeting, Some(Action::Send(b)) if b.starts_with(b"220 ")));
//! session.receive(b"EHLO client.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
//! let mut asked = None;
//! while let Some(action) = session.poll() {
//!     if let Action::Authenticate { username, .. } = action {
//!         asked = Some(username); // the I/O asks the provider, then calls auth_result
//!     }
//! }
//! assert_eq!(asked.as_deref(), Some("alice"));
//! ```

pub mod decision;
pub mod outgoing;
pub mod relay;
pub mod reply;
pub mod server;
pub mod session;
pub mod submission;

pub use relay::Provider;
pub use reply::Reply;
pub use server::{AccountConfig, Config, Server, ServerError};
pub use session::{Action, Session};
