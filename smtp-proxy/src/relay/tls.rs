//! TLS to the provider's submission server, with the one trust decision
//! both proxies share (`net_edge::client_config`: roots, `ca_file`, the
//! pinned certificate), for implicit TLS and STARTTLS alike. STARTTLS is
//! said here, not by lettre, whose own roots could not take a pin; lettre
//! then gets the TLS stream with the provider's greeting replayed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::client::AsyncTokioStream;
use net_edge::describe;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::{Endpoint, Security};

/// The provider connection in TLS as lettre reads it: after a STARTTLS done
/// here, first the provider's original greeting again.
#[derive(Debug)]
pub(super) struct TlsTcp {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    replay: Vec<u8>,
    replayed: usize,
}

impl TlsTcp {
    /// `tls`, with `greeting` replayed first (empty after implicit TLS).
    pub(super) fn new(tls: tokio_rustls::client::TlsStream<TcpStream>, greeting: Vec<u8>) -> Self {
        TlsTcp {
            tls,
            replay: greeting,
            replayed: 0,
        }
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tls.get_ref().0.peer_addr()
    }
}

/// Why no TLS connection to the provider's SMTP server could be made.
#[derive(Debug, thiserror::Error)]
pub enum ProviderTlsError {
    #[error("{0}")]
    Failed(String),
    /// Its certificate is not trusted; what it is, and what to do.
    #[error(transparent)]
    Rejected(net_edge::CertificateRejected),
}

/// Connects to the provider's SMTP server and makes the TLS connection a
/// relay makes (implicit TLS, or STARTTLS), then closes it: `gateway init`
/// asks this whether the certificate is trusted before it saves an account.
pub async fn check_tls(endpoint: &Endpoint, patience: Duration) -> Result<(), ProviderTlsError> {
    let failed = |what: String| ProviderTlsError::Failed(what);
    let tcp = timeout(
        patience,
        TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
    )
    .await
    .map_err(|_| failed("no answer".into()))?
    .map_err(|e| failed(e.to_string()))?;
    let tcp = match endpoint.security {
        Security::Tls => tcp,
        Security::StartTls => {
            timeout(patience, starttls(tcp))
                .await
                .map_err(|_| failed("no answer before STARTTLS".into()))?
                .map_err(failed)?
                .0
        }
        Security::Plain => return Ok(()),
    };
    let mut tls = handshake(endpoint, patience, tcp).await?;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    Ok(())
}

/// The TLS handshake with the account's trust (`net_edge::client_config`:
/// roots, `ca_file`, the pinned certificate), the same for both ways in.
pub(super) async fn handshake(
    endpoint: &Endpoint,
    patience: Duration,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProviderTlsError> {
    let failed = |what: String| ProviderTlsError::Failed(what);
    let config = net_edge::client_config(endpoint.ca_file.as_deref(), endpoint.pinned)
        .map_err(|e| failed(describe(&e)))?;
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| failed(format!("bad host name: {e}")))?;
    timeout(patience, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| failed("no answer to the TLS handshake".into()))?
        .map_err(|e| match net_edge::certificate_rejection(&e) {
            Some(rejected) => ProviderTlsError::Rejected(rejected.clone()),
            None => failed(describe(&e)),
        })
}

/// The longest line a provider's reply may have before TLS (RFC 5321: 512).
const MAX_REPLY_LINE: u64 = 1000;

/// STARTTLS said here rather than by lettre, so that the handshake goes
/// through the one trust decision (`net_edge::client_config`; lettre has
/// its own roots and no pin). Returns the connection, at the point where
/// TLS starts, and the provider's greeting for lettre to read as if the
/// connection had just opened: lettre's EHLO is then the first thing said
/// inside TLS, as RFC 3207 asks.
pub(super) async fn starttls(mut tcp: TcpStream) -> Result<(TcpStream, Vec<u8>), String> {
    let mut reader = tokio::io::BufReader::new(&mut tcp);
    let (code, greeting) = read_reply(&mut reader).await?;
    if code != 220 {
        return Err(format!("it greeted with {}", first_line(&greeting)));
    }
    let (code, ehlo) = say(&mut reader, b"EHLO localhost\r\n").await?;
    let offers_starttls = ehlo.split(|&b| b == b'\n').any(|line| {
        line.get(4..)
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|word| word.eq_ignore_ascii_case("STARTTLS"))
    });
    if code != 250 || !offers_starttls {
        return Err("it does not offer STARTTLS, and the account requires it".into());
    }
    let (code, reply) = say(&mut reader, b"STARTTLS\r\n").await?;
    if code != 220 {
        return Err(format!("it refused STARTTLS: {}", first_line(&reply)));
    }
    // Anything already sent after the 220 would be taken as said inside
    // TLS (the STARTTLS injection flaw): refused.
    if !reader.buffer().is_empty() {
        return Err(
            "it sent data before the TLS handshake; refused, as that would be read as encrypted"
                .into(),
        );
    }
    drop(reader);
    Ok((tcp, greeting))
}

/// Sends one command before TLS and reads its reply.
async fn say(
    reader: &mut tokio::io::BufReader<&mut TcpStream>,
    command: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    use tokio::io::AsyncWriteExt as _;
    reader
        .get_mut()
        .write_all(command)
        .await
        .map_err(|e| e.to_string())?;
    read_reply(reader).await
}

/// One SMTP reply before TLS: its code and its raw lines, bounded.
async fn read_reply<R>(reader: &mut R) -> Result<(u16, Vec<u8>), String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut raw = Vec::new();
    for _ in 0..100 {
        let mut line = Vec::new();
        let n = (&mut *reader)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed".into());
        }
        if !line.ends_with(b"\n") {
            return Err("a reply line is too long".into());
        }
        raw.extend_from_slice(&line);
        let code = line
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(format!("not an SMTP reply: {}", first_line(&line)));
        };
        match line.get(3) {
            Some(b'-') => continue,
            Some(b' ' | b'\r' | b'\n') => return Ok((code, raw)),
            _ => return Err(format!("not an SMTP reply: {}", first_line(&line))),
        }
    }
    Err("a reply of more than 100 lines".into())
}

/// The first line of a reply, for a sentence.
fn first_line(raw: &[u8]) -> String {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .trim_end()
        .chars()
        .take(200)
        .collect()
}
