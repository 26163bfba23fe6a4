//! Answering the client: every response a session queues is counted until
//! imap-next reports it written, and the session stops reading the
//! provider while [`MAX_UNSENT`] are waiting (bounded memory with a slow
//! client); plus the few ways a response is made or delivered.

use std::time::Duration;

use imap_next::imap_types::core::{Tag, Text};
use imap_next::imap_types::response::{Code, Data, Status, StatusBody, StatusKind, Tagged};
use imap_next::server::{
    Error as ServerError, Event as ServerEvent, Options as ServerOptions, ResponseHandle, Server,
};
use imap_next::stream::{Error as StreamError, Stream};
use tracing::debug;

use super::append::MAX_APPEND;
use super::{Forwarder, SessionError};

/// Responses queued for a client before the proxy stops reading from the
/// provider (bounded memory with a slow client).
pub(super) const MAX_UNSENT: usize = 64;

/// The options of the client side: room for the largest APPEND.
pub(super) fn server_options() -> ServerOptions {
    let mut options = ServerOptions::default();
    options.max_literal_size = MAX_APPEND;
    // Room for the command around the literal (Dovecot allows 64 KiB).
    options.max_command_size = MAX_APPEND + 64 * 1024;
    let _ = options.set_literal_reject_text(format!(
        "The message is larger than the gateway takes ({} MiB); nothing was stored",
        MAX_APPEND / (1024 * 1024)
    ));
    options
}

/// Answers what a client sent that imap-next could not take as a command,
/// as an IMAP server does, so that the session goes on: BAD for a command
/// it cannot parse (an extension the proxy does not carry, a bare LF), and
/// for a literal over [`MAX_APPEND`] (imap-next has answered that one).
/// Only a command too long to skip safely ends the session. How many
/// responses it queued (a running session counts them, [`MAX_UNSENT`]).
pub(super) async fn answer_client_error(
    stream: &mut Stream,
    server: &mut Server,
    error: StreamError<ServerError>,
) -> Result<usize, SessionError> {
    let discarded = match error {
        StreamError::State(
            ServerError::MalformedMessage { discarded_bytes }
            | ServerError::ExpectedCrlfGotLf { discarded_bytes },
        ) => discarded_bytes,
        StreamError::State(ServerError::LiteralTooLong { .. }) => {
            debug!("client literal over the limit refused");
            return Ok(0);
        }
        StreamError::State(ServerError::CommandTooLong { .. }) => {
            say_bye(stream, server, "Command too long; this session ends").await;
            return Err(SessionError::CommandTooLong);
        }
        other => return Err(SessionError::Client(other)),
    };
    let bytes = discarded.declassify();
    let tag = bytes
        .split(|b| *b == b' ')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| Tag::try_from(t.to_string()).ok());
    let why = "Unknown or malformed command; nothing was done";
    let Ok(bad) = Status::bad(tag, None, why) else {
        return Ok(0);
    };
    server.enqueue_status(bad);
    debug!("malformed client command answered with BAD");
    Ok(1)
}

/// Queues a BYE saying why the session ends and writes what is queued up to
/// it; the connection closes after. (Not counted: nothing follows it.)
pub(super) async fn say_bye(stream: &mut Stream, server: &mut Server, why: &str) {
    if let Ok(bye) = Status::bye(None, why.to_string()) {
        let last = server.enqueue_status(bye);
        deliver(stream, server, last).await;
    }
    close_gently(stream).await;
}

/// Ends the connection so that what was sent arrives: the write side is shut
/// (FIN), and what the client still sends is read and dropped for a moment.
/// A socket closed with unread input is reset by the kernel, and the reset
/// can destroy the BYE on its way: a client that pipelined a NOOP after an
/// APPEND the provider refused saw EOF instead of the reason.
async fn close_gently(stream: &mut Stream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tcp = stream.stream_mut();
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = 256 * 1024usize;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Sends what is queued for the client up to and including `last`, before
/// the session ends; imap-next writes queued responses only while it is
/// driven. It reports a response sent once it is in the stream's write
/// buffer: when the client's next command arrived meanwhile, the end of it
/// could still be there, and the connection closed without it (a client
/// saw EOF instead of the BYE that said why), so the buffer is flushed too.
pub(super) async fn deliver(stream: &mut Stream, server: &mut Server, last: ResponseHandle) {
    let sending = async {
        loop {
            match stream.next(&mut *server).await {
                Ok(ServerEvent::ResponseSent { handle, .. }) if handle == last => {
                    let _ = stream.flush().await;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), sending).await;
}

/// Text for a response; what cannot be sent as IMAP text is left out.
pub(super) fn text(s: &str) -> Text<'static> {
    Text::try_from(s.to_string()).unwrap_or_else(|_| Text::unvalidated("..."))
}

/// A tagged completion.
pub(super) fn tagged(
    tag: Tag<'static>,
    kind: StatusKind,
    code: Option<Code<'static>>,
    msg: &str,
) -> Status<'static> {
    Status::Tagged(Tagged {
        tag,
        body: StatusBody {
            kind,
            code,
            text: text(msg),
        },
    })
}

impl Forwarder {
    /// Queues data for the client, counted until imap-next reports it sent:
    /// the backpressure that stops reading the provider while a slow client
    /// has [`MAX_UNSENT`] responses waiting. Every response of a running
    /// session is queued through here or [`Forwarder::send_status`].
    pub(super) fn send_data(&mut self, data: Data<'static>) {
        self.server.enqueue_data(data);
        self.unsent += 1;
    }

    /// Queues a status for the client, counted like [`Forwarder::send_data`].
    pub(super) fn send_status(&mut self, status: Status<'static>) -> ResponseHandle {
        self.unsent += 1;
        self.server.enqueue_status(status)
    }

    /// Writes queued responses until few are left; commands the client
    /// pipelines meanwhile wait their turn.
    pub(super) async fn drain_client(&mut self) -> Result<(), SessionError> {
        while self.unsent > MAX_UNSENT / 2 {
            match self.client_stream.next(&mut self.server).await {
                // Commands (IDLE too) wait in the queue for their turn.
                Ok(event) => {
                    self.take_client_event(event);
                }
                Err(e) => return Err(SessionError::Client(e)),
            }
        }
        Ok(())
    }

    /// Ends the session with a BYE saying why ([`say_bye`]).
    pub(super) async fn say_bye(&mut self, why: &str) {
        say_bye(&mut self.client_stream, &mut self.server, why).await;
    }

    /// Writes what is queued up to and including `last`.
    pub(super) async fn deliver(&mut self, last: ResponseHandle) {
        deliver(&mut self.client_stream, &mut self.server, last).await;
    }
}
