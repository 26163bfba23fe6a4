//! The local side before STARTTLS: what a client may do on the plain
//! connection when the gateway offers TLS.
//!
//! With a local certificate configured, passwords are accepted only over
//! TLS (RFC 3501 `LOGINDISABLED`, RFC 9051 `PRIVACYREQUIRED`), so the
//! plaintext phase needs only CAPABILITY, NOOP, LOGOUT and STARTTLS. That
//! is small enough to answer by hand, line by line, before imap-next takes
//! over the encrypted stream; [`answer`] is the protocol, [`negotiate`] the
//! loop around it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The capabilities of the plaintext phase.
pub const CAPABILITIES: &str = "IMAP4rev1 STARTTLS LOGINDISABLED";

/// A command line is at most this long before TLS (no literals are needed).
const MAX_LINE: usize = 1024;
/// A client silent for this long before TLS is disconnected.
const IDLE: Duration = Duration::from_secs(120);

/// What to do with one command line of the plaintext phase.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Write this and read the next command.
    Reply(String),
    /// Write this and start the TLS handshake.
    StartTls(String),
    /// Write this and close the connection.
    Close(String),
}

/// The answer to one command line (without its CRLF).
pub fn answer(line: &[u8]) -> Answer {
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    let (Some(tag), command) = (words.next(), words.next()) else {
        return Answer::Reply("* BAD Empty command line\r\n".into());
    };
    if !tag.bytes().all(|b| b.is_ascii_graphic() && b != b'+') {
        return Answer::Reply("* BAD Invalid tag\r\n".into());
    }
    match command.map(str::to_ascii_uppercase).as_deref() {
        Some("CAPABILITY") => Answer::Reply(format!(
            "* CAPABILITY {CAPABILITIES}\r\n{tag} OK CAPABILITY completed\r\n"
        )),
        Some("NOOP") => Answer::Reply(format!("{tag} OK NOOP completed\r\n")),
        Some("LOGOUT") => Answer::Close(format!(
            "* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"
        )),
        Some("STARTTLS") => Answer::StartTls(format!("{tag} OK Begin TLS negotiation now\r\n")),
        Some("LOGIN") | Some("AUTHENTICATE") => Answer::Reply(format!(
            "{tag} NO [PRIVACYREQUIRED] Passwords are accepted only over TLS: \
             turn on STARTTLS in the mail client's server settings\r\n"
        )),
        _ => Answer::Reply(format!(
            "{tag} BAD Only CAPABILITY, NOOP, LOGOUT and STARTTLS before TLS\r\n"
        )),
    }
}

/// Why the plaintext phase ended without TLS.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    #[error("client logged out before STARTTLS")]
    LoggedOut,
    #[error("client sent data after STARTTLS before the handshake (command injection attempt)")]
    Injection,
    #[error("command line longer than {MAX_LINE} bytes before TLS")]
    LineTooLong,
    #[error("client silent for {} s before TLS", IDLE.as_secs())]
    Idle,
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Greets, answers the plaintext phase and returns the TLS stream once the
/// handshake is done.
pub async fn negotiate(
    mut tcp: TcpStream,
    config: Arc<ServerConfig>,
) -> Result<TlsStream<TcpStream>, NegotiationError> {
    tcp.write_all(
        format!("* OK [CAPABILITY {CAPABILITIES}] Letterlock gateway ready\r\n").as_bytes(),
    )
    .await?;
    let mut buffer = Vec::with_capacity(256);
    loop {
        let line = loop {
            if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                break line;
            }
            if buffer.len() > MAX_LINE {
                let _ = tcp.write_all(b"* BYE Command line too long\r\n").await;
                return Err(NegotiationError::LineTooLong);
            }
            let mut chunk = [0u8; 512];
            let n = tokio::time::timeout(IDLE, tcp.read(&mut chunk))
                .await
                .map_err(|_| NegotiationError::Idle)??;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match answer(line) {
            Answer::Reply(reply) => tcp.write_all(reply.as_bytes()).await?,
            Answer::Close(reply) => {
                tcp.write_all(reply.as_bytes()).await?;
                return Err(NegotiationError::LoggedOut);
            }
            Answer::StartTls(reply) => {
                // Anything already sent after STARTTLS would be read as if it
                // had come over TLS (CVE-2011-0411 and kin): refuse it.
                if !buffer.is_empty() {
                    return Err(NegotiationError::Injection);
                }
                tcp.write_all(reply.as_bytes()).await?;
                let accepting = TlsAcceptor::from(config).accept(tcp);
                return tokio::time::timeout(IDLE, accepting)
                    .await
                    .map_err(|_| NegotiationError::Idle)?
                    .map_err(NegotiationError::Io);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_wait_for_tls() {
        for line in ["a LOGIN alice secret", "b authenticate PLAIN"] {
            let Answer::Reply(reply) = answer(line.as_bytes()) else {
                panic!("{line}");
            };
            assert!(reply.contains("NO [PRIVACYREQUIRED]"), "{reply}");
            assert!(reply.contains("STARTTLS"), "{reply}");
        }
    }

    #[test]
    fn the_plaintext_phase_answers_its_commands() {
        assert_eq!(
            answer(b"t1 capability"),
            Answer::Reply(format!(
                "* CAPABILITY {CAPABILITIES}\r\nt1 OK CAPABILITY completed\r\n"
            ))
        );
        assert!(matches!(answer(b"t2 STARTTLS"), Answer::StartTls(r) if r.starts_with("t2 OK")));
        assert!(matches!(answer(b"t3 LOGOUT"), Answer::Close(r) if r.contains("t3 OK")));
        assert!(matches!(answer(b"t4 SELECT INBOX"), Answer::Reply(r) if r.starts_with("t4 BAD")));
        assert!(matches!(answer(b""), Answer::Reply(r) if r.starts_with("* BAD")));
        assert!(matches!(answer(b"+ NOOP"), Answer::Reply(r) if r.starts_with("* BAD")));
        assert!(matches!(answer(&[0xff, b' ', b'x']), Answer::Reply(r) if r.contains("BAD")));
    }
}
