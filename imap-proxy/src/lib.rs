//! Letterlock's IMAP side.
//!
//! - [`imap`]: the pure core — which messages the gateway serves
//!   ([`imap::detect`]), sections and structures computed from the served
//!   bytes, a provider's FETCH answer rewritten, one client FETCH as a
//!   command object returning effects ([`imap::fetch_command`]), SEARCH over
//!   decrypted text, the capabilities carried. No tokio, no store: unit-tested
//!   with plain values.
//! - [`upstream`]: the connection to the provider (imap-next for the
//!   protocol, tokio-rustls for TLS, `ca_file` honoured), its only owner.
//! - [`view`]: provider bytes → what the user reads (decrypted, with the
//!   `Letterlock-Security` header).
//! - [`ingest`]: the one read pipeline (learn → view → learn → index →
//!   archive) the proxy and the archive sync share, so both learn the same
//!   keys and archive the same bytes; once per account and message however
//!   many sessions ask ([`ingest::SingleFlight`]).
//! - [`learn`]: keys learned from what is read (Autocrypt header, gossip).
//! - [`sync`]: `gateway archive sync` — bring the archive up to date with a
//!   mailbox, incrementally and resumably.
//! - [`proxy`]: the client-facing session (login pass-through, the session
//!   loop, FETCH, APPEND encryption, SEARCH), the thin I/O around [`imap`];
//!   [`downloads`] lets the sessions of one account download each new
//!   message once between them, and [`plain`] remembers which messages are
//!   plain mail, so that a mailbox-wide FETCH of sizes does not make the
//!   provider read them all.
//!
//! A FETCH, decided without a socket:
//!
//! ```
//! use imap_next::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
//! use imap_proxy::imap::fetch_command::{Effect, FetchCommand, Known};
//!
//! // A client's `UID FETCH 1:* (FLAGS)`: a flag refresh needs nothing the
//! // gateway serves, so only the UID is added for the provider.
//! let mut names = MacroOrMessageDataItemNames::MessageDataItemNames(vec![MessageDataItemName::Flags]);
//! let mut fetch = FetchCommand::start(&mut names, true, || Known::Nothing);
//! assert_eq!(
//!     names,
//!     MacroOrMessageDataItemNames::MessageDataItemNames(vec![
//!         MessageDataItemName::Flags,
//!         MessageDataItemName::Uid,
//!     ])
//! );
//! fetch.finish();
//! assert_eq!(fetch.poll(), None::<Effect>);
//! assert!(fetch.is_done());
//! ```

pub mod downloads;
pub mod imap;
pub mod ingest;
pub mod learn;
pub mod plain;
pub mod proxy;
pub mod starttls;
pub mod sync;
pub mod upstream;
pub mod view;

pub use proxy::{AccountConfig, Config, Proxy, DEFAULT_PROVIDER_TIMEOUT};
pub use upstream::{Endpoint, Security, Session, UpstreamError};
pub use view::Keys;

/// An imap-next stream over TLS, to the provider or to a client.
///
/// imap-next hands rustls each output whole (an APPEND's literal, a FETCH
/// response) with `write_all`, which fails ("failed to write whole buffer")
/// once rustls's 64 KiB send buffer is full: every message over 64 KiB
/// would end the session. The sizes are bounded by the proxy's message
/// limits (160 MiB responses, 64 MiB APPENDs), so the buffer need not be.
pub(crate) fn tls_stream(
    mut tls: tokio_rustls::TlsStream<tokio::net::TcpStream>,
) -> imap_next::stream::Stream {
    match &mut tls {
        tokio_rustls::TlsStream::Client(stream) => stream.get_mut().1.set_buffer_limit(None),
        tokio_rustls::TlsStream::Server(stream) => stream.get_mut().1.set_buffer_limit(None),
    }
    imap_next::stream::Stream::tls(tls)
}
