//! Letterlock's IMAP side.
//!
//! - [`upstream`]: the connection to the provider (imap-next for the
//!   protocol, tokio-rustls for TLS, `ca_file` honoured).
//! - [`view`]: provider bytes → what the user reads (decrypted, with the
//!   `Letterlock-Security` header). The proxy and the archive sync share it,
//!   so both archive the same bytes for the same message.
//! - [`ingest`]: the one read pipeline (learn → view → learn → index →
//!   archive) the proxy and the archive sync share.
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
