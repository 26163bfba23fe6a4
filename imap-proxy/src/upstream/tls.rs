//! TLS to the provider: the handshake (trust from `net_edge::client_config`)
//! and STARTTLS, said by hand in plain text before imap-next takes over.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::{timeout, Endpoint, UpstreamError, MAX_PLAIN_LINE};

/// Reads the greeting and upgrades with STARTTLS, by hand: imap-next would
/// have to be torn down to get at the socket again.
pub(super) async fn starttls(tcp: TcpStream) -> Result<TcpStream, UpstreamError> {
    let mut reader = BufReader::new(tcp);
    let greeting = read_plain_line(&mut reader).await?;
    if !greeting.starts_with("* OK") {
        return Err(UpstreamError::Protocol(format!(
            "unexpected greeting {greeting:?}"
        )));
    }
    reader
        .get_mut()
        .write_all(b"S0 STARTTLS\r\n")
        .await
        .map_err(|e| UpstreamError::Closed(format!(": {e}")))?;
    loop {
        let line = read_plain_line(&mut reader).await?;
        if line.starts_with("* ") {
            continue;
        }
        if line.starts_with("S0 OK") {
            break;
        }
        return Err(UpstreamError::NoStartTls(line));
    }
    // Anything buffered beyond the OK would be an injection before TLS
    // (CVE-2011-0411 and friends): refuse it.
    if !reader.buffer().is_empty() {
        return Err(UpstreamError::Protocol(
            "the provider sent data after accepting STARTTLS".into(),
        ));
    }
    Ok(reader.into_inner())
}

async fn read_plain_line(reader: &mut BufReader<TcpStream>) -> Result<String, UpstreamError> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_PLAIN_LINE as u64);
    let n = timeout(limited.read_until(b'\n', &mut line))
        .await?
        .map_err(|e| UpstreamError::Closed(format!(": {e}")))?;
    if n == 0 {
        return Err(UpstreamError::Closed(String::new()));
    }
    if !line.ends_with(b"\n") {
        return Err(UpstreamError::Protocol(
            "a line before TLS is too long".into(),
        ));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// TLS over `tcp` with the account's trust (`net_edge::client_config`: roots,
/// `ca_file`, the pinned certificate).
pub(super) async fn handshake(
    endpoint: &Endpoint,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
    let config = net_edge::client_config(endpoint.ca_file.as_deref(), endpoint.pinned)?;
    let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| UpstreamError::Tls {
        host: endpoint.host.clone(),
        reason: format!("not a valid server name: {e}"),
    })?;
    timeout(TlsConnector::from(config).connect(name, tcp))
        .await?
        .map_err(|e| match net_edge::certificate_rejection(&e) {
            Some(rejected) => UpstreamError::Certificate {
                host: endpoint.host.clone(),
                rejected: Box::new(rejected.clone()),
            },
            None => UpstreamError::Tls {
                host: endpoint.host.clone(),
                reason: net_edge::describe(&e),
            },
        })
}
