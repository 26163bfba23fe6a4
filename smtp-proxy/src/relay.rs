//! The connection to the provider's submission server.
//!
//! One [`Relay`] per client session: it logs in with the client's own
//! credentials (the provider decides whether they are good) and then
//! carries that session's messages. Built on lettre's SMTP client
//! connection, but the transaction is driven command by command here, so
//! that every provider reply can be passed on to the client, recipients can
//! be checked before anything is sent, and a message goes out in chunks
//! rather than as one more whole copy in memory.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Address;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::reply::Reply;

use net_edge::describe;
use net_edge::LOGIN_PATIENCE;
pub use net_edge::{Endpoint, Security};
pub use tls::{check_tls, ProviderTlsError};

mod tls;
use tls::{handshake, starttls, TlsTcp};

/// Where the account's mail is submitted.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Where it listens and how to reach it (shared with the IMAP side).
    pub endpoint: Endpoint,
    /// How long the provider may take to connect and to answer each command
    /// ([`DEFAULT_TIMEOUT`]); the message itself gets two and a half times
    /// this plus a second per MiB. A stalled provider must not hold the
    /// client forever.
    pub timeout: Duration,
}

/// One message as it goes to the provider.
#[derive(Debug, Clone)]
pub struct Copy {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
    pub smtputf8: bool,
}

/// [`Provider::timeout`] unless configured: RFC 5321 allows the provider
/// minutes for some replies.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Write the message in pieces of this size.
const CHUNK: usize = 256 * 1024;
/// A connection unused for this long is checked with NOOP before use.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// A logged-in connection to the provider.
pub struct Relay {
    provider: Provider,
    username: String,
    password: SecretString,
    connection: Option<AsyncSmtpConnection>,
    last_used: Instant,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("provider", &self.provider)
            .field("username", &self.username)
            .field("connected", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Connects to the provider and logs in. `Err` is the reply for the
    /// client: the provider's own refusal (535 …), or 454 when the provider
    /// could not be asked.
    pub async fn login(
        provider: &Provider,
        username: &str,
        password: SecretString,
    ) -> Result<Relay, Reply> {
        let mut relay = Relay {
            provider: provider.clone(),
            username: username.to_string(),
            password,
            connection: None,
            last_used: Instant::now(),
        };
        relay.connect().await?;
        Ok(relay)
    }

    /// [`Relay::open`] within one bound for the whole login (greeting, TLS,
    /// EHLO, STARTTLS, AUTH): the provider timeout or [`LOGIN_PATIENCE`],
    /// whichever is shorter.
    async fn connect(&mut self) -> Result<(), Reply> {
        let patience = self.provider.timeout.min(LOGIN_PATIENCE);
        match timeout(patience, self.open()).await {
            Ok(result) => result,
            Err(_) => Err(Reply::new(
                454,
                "4.7.0",
                format!(
                    "Cannot reach your provider at {}:{}: it did not complete the login within {} seconds. Try again later, or check the account's smtp settings.",
                    self.provider.endpoint.host,
                    self.provider.endpoint.port,
                    patience.as_secs()
                ),
            )),
        }
    }

    /// Connects and logs in, each step bounded by the provider timeout.
    async fn open(&mut self) -> Result<(), Reply> {
        let unreachable = |what: String| {
            Reply::new(
                454,
                "4.7.0",
                format!(
                    "Cannot reach your provider at {}:{}: {what}. Try again later, or check the account's smtp settings.",
                    self.provider.endpoint.host, self.provider.endpoint.port
                ),
            )
        };
        let hello = ClientId::Domain("localhost".into());
        let address = (
            self.provider.endpoint.host.as_str(),
            self.provider.endpoint.port,
        );
        let tcp = timeout(self.provider.timeout, TcpStream::connect(address))
            .await
            .map_err(|_| unreachable("no answer".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        // The end of DATA is a small write after a large one; with Nagle's
        // algorithm it waits for the provider's delayed ACK (40 ms a message).
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = match self.provider.endpoint.security {
            Security::Tls => Box::new(self.tls(tcp, Vec::new()).await.map_err(unreachable)?),
            Security::StartTls => {
                let (tcp, greeting) = timeout(self.provider.timeout, starttls(tcp))
                    .await
                    .map_err(|_| unreachable("no answer before STARTTLS".into()))?
                    .map_err(unreachable)?;
                Box::new(self.tls(tcp, greeting).await.map_err(unreachable)?)
            }
            Security::Plain => Box::new(tcp),
        };
        let mut connection = timeout(
            self.provider.timeout,
            AsyncSmtpConnection::connect_with_transport(stream, &hello),
        )
        .await
        .map_err(|_| unreachable("no greeting".into()))?
        .map_err(|e| unreachable(describe(&e)))?;
        let credentials = Credentials::new(
            self.username.clone(),
            self.password.expose_secret().to_string(),
        );
        let response = timeout(
            self.provider.timeout,
            connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
        )
        .await
        .map_err(|_| unreachable("no answer to AUTH".into()))?;
        match response {
            Ok(_) => {}
            Err(e) if e.status().is_some() => return Err(provider_reply(&e, "the login")),
            Err(e) => return Err(unreachable(describe(&e))),
        }
        self.connection = Some(connection);
        self.last_used = Instant::now();
        Ok(())
    }

    /// The TLS handshake with the account's trust; `greeting` is replayed
    /// to lettre as the first thing the connection says.
    async fn tls(&self, tcp: TcpStream, greeting: Vec<u8>) -> Result<TlsTcp, String> {
        let tls = handshake(&self.provider.endpoint, self.provider.timeout, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TlsTcp::new(tls, greeting))
    }

    /// Sends every copy; `Ok` carries the 250 for the client, given only
    /// when the provider accepted all of them.
    ///
    /// With more than one copy (Bcc recipients get their own), every
    /// recipient is first tried in one transaction that is then reset, so
    /// that a refused recipient stops the message before any copy left.
    pub async fn send(&mut self, copies: &[Copy]) -> Result<Reply, Reply> {
        self.ensure_connected().await?;
        if copies.len() > 1 {
            let all = Copy {
                mail_from: copies[0].mail_from.clone(),
                recipients: copies.iter().flat_map(|c| c.recipients.clone()).collect(),
                data: Vec::new(),
                smtputf8: copies.iter().any(|c| c.smtputf8),
            };
            let checked = self.envelope(&all).await;
            self.reset().await;
            checked.map_err(|e| e.into_reply(&[]))?;
        }
        let mut delivered: Vec<&str> = Vec::new();
        for copy in copies {
            let result = match self.envelope(copy).await {
                Ok(()) => self.data(&copy.data).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => delivered.extend(copy.recipients.iter().map(String::as_str)),
                Err(failure) => {
                    self.reset().await;
                    return Err(failure.into_reply(&delivered));
                }
            }
        }
        self.last_used = Instant::now();
        Ok(Reply::new(
            250,
            "2.0.0",
            "Message accepted by your provider".to_string(),
        ))
    }

    /// Ends the provider session politely.
    pub async fn quit(mut self) {
        if let Some(mut connection) = self.connection.take() {
            let _ = timeout(Duration::from_secs(5), connection.quit()).await;
        }
    }

    async fn ensure_connected(&mut self) -> Result<(), Reply> {
        let fresh = self.last_used.elapsed() < IDLE_CHECK;
        let healthy = match self.connection.as_mut() {
            Some(c) if c.has_broken() => false,
            Some(_) if fresh => true,
            Some(c) => matches!(
                timeout(Duration::from_secs(10), c.test_connected()).await,
                Ok(true)
            ),
            None => false,
        };
        if !healthy {
            self.connection = None;
            // Credentials the provider accepted a moment ago; a refusal now
            // (password changed meanwhile) is the provider's to explain.
            self.connect().await.map_err(|mut reply| {
                if reply.code == 454 {
                    reply.code = 451;
                    reply.enhanced = "4.4.1".into();
                }
                reply
            })?;
        }
        Ok(())
    }

    async fn envelope(&mut self, copy: &Copy) -> Result<(), Failure> {
        let limit = self.provider.timeout;
        let connection = self.connection.as_mut().ok_or(Failure::Lost)?;
        let from = if copy.mail_from.is_empty() {
            None
        } else {
            Some(parse_address(&copy.mail_from)?)
        };
        let mut parameters = Vec::new();
        if connection
            .server_info()
            .supports_feature(Extension::EightBitMime)
        {
            if !copy.data.is_ascii() {
                parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
        } else if !copy.data.is_ascii() {
            return Err(Failure::Refused(Reply::new(
                554,
                "5.6.3",
                "Your provider does not accept 8-bit messages, and this one has 8-bit content."
                    .to_string(),
            )));
        }
        if copy.smtputf8 {
            if !connection
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(Failure::Refused(Reply::new(
                    553,
                    "5.6.7",
                    "Your provider does not accept non-ASCII addresses (no SMTPUTF8).".to_string(),
                )));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !copy.data.is_empty() {
            parameters.push(MailParameter::Size(copy.data.len()));
        }
        command(connection, limit, Mail::new(from, parameters), "MAIL FROM").await?;
        for recipient in &copy.recipients {
            let to = parse_address(recipient)?;
            command(
                connection,
                limit,
                Rcpt::new(to, Vec::new()),
                &format!("the recipient {recipient}"),
            )
            .await?;
        }
        Ok(())
    }

    async fn data(&mut self, data: &[u8]) -> Result<Response, Failure> {
        let limit = self.provider.timeout;
        let connection = self.connection.as_mut().ok_or(Failure::Lost)?;
        // lettre dot-stuffs only after CRLF: a bare line end before a dot
        // would reach the provider as a possible end of data (smuggling).
        let data = crlf_only(data);
        command(connection, limit, Data, "DATA").await?;
        let limit = limit * 5 / 2 + Duration::from_secs((data.len() / (1024 * 1024)) as u64);
        match timeout(limit, connection.message_iter(data.chunks(CHUNK))).await {
            Err(_) => {
                self.connection = None;
                Err(Failure::Unconfirmed)
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.status().is_some() => {
                Err(Failure::Refused(provider_reply(&e, "the message")))
            }
            // Written, but no verdict: it may or may not have been taken.
            Ok(Err(_)) => {
                self.connection = None;
                Err(Failure::Unconfirmed)
            }
        }
    }

    async fn reset(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            if connection.has_broken()
                || !matches!(
                    timeout(self.provider.timeout, connection.command(Rset)).await,
                    Ok(Ok(_))
                )
            {
                self.connection = None;
            }
        }
    }
}

/// The message with every bare LF and bare CR made CRLF. The session core
/// hands over CRLF only (and refuses bare CRs); this holds for anything
/// built from it on the way, so that no line end reaches the provider that
/// it could read differently from lettre's dot-stuffing.
fn crlf_only(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let clean = data.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => data.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && data[i - 1] == b'\r',
        _ => true,
    });
    if clean {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Why a copy did not go out.
#[derive(Debug)]
enum Failure {
    /// The provider said no; its reply, ready for the client.
    Refused(Reply),
    /// The connection broke before the message was complete.
    Lost,
    /// The message was written but the provider's verdict never came.
    Unconfirmed,
}

impl Failure {
    /// The reply for the client, given which recipients already have the
    /// message (earlier copies).
    fn into_reply(self, delivered: &[&str]) -> Reply {
        let mut reply = match self {
            Failure::Refused(reply) => reply,
            Failure::Lost => Reply::new(
                451,
                "4.4.2",
                "The connection to your provider was lost; the message was not sent. Try again."
                    .to_string(),
            ),
            Failure::Unconfirmed => Reply::new(
                451,
                "4.4.2",
                "Your provider did not confirm the message; it may not have been sent. Try again."
                    .to_string(),
            ),
        };
        if !delivered.is_empty() {
            // The client cannot be told "some": make the refusal permanent
            // so that it shows the sentence instead of resending to all.
            reply.code = 554;
            reply.enhanced = "5.0.0".into();
            let text = reply.lines.join(" ");
            reply.lines = vec![format!(
                "Sent only to {}; not to the others: {text}",
                delivered.join(", ")
            )];
        }
        reply
    }
}

impl From<Reply> for Failure {
    fn from(reply: Reply) -> Self {
        Failure::Refused(reply)
    }
}

async fn command<C: std::fmt::Display>(
    connection: &mut AsyncSmtpConnection,
    limit: Duration,
    cmd: C,
    what: &str,
) -> Result<Response, Failure> {
    match timeout(limit, connection.command(cmd)).await {
        Err(_) => Err(Failure::Lost),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) if e.status().is_some() => Err(Failure::Refused(provider_reply(&e, what))),
        Ok(Err(_)) => Err(Failure::Lost),
    }
}

fn parse_address(address: &str) -> Result<Address, Failure> {
    address.parse().map_err(|_| {
        Failure::Refused(Reply::new(
            553,
            "5.1.3",
            format!("\"{address}\" is not an address your provider can be given."),
        ))
    })
}

/// The provider's refusal, passed on with its code and words.
fn provider_reply(error: &lettre::transport::smtp::Error, what: &str) -> Reply {
    let code = error.status().map(u16::from).unwrap_or(451);
    let text = std::error::Error::source(error)
        .map(|s| s.to_string())
        .unwrap_or_default();
    // The provider's text may carry its own enhanced code first.
    let (enhanced, text) = split_enhanced(&text);
    let enhanced = match enhanced {
        Some(e) => Cow::Owned(e.to_string()),
        None if (400..500).contains(&code) => Cow::Borrowed("4.0.0"),
        None => Cow::Borrowed("5.0.0"),
    };
    Reply::relayed(
        code,
        enhanced,
        &format!("Your provider refused {what}: {}", text.trim()),
    )
}

fn split_enhanced(text: &str) -> (Option<&str>, &str) {
    let text = text.trim_start();
    let first = text.split_whitespace().next().unwrap_or("");
    let is_enhanced = first.split('.').count() == 3
        && first
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if is_enhanced {
        (Some(first), &text[first.len()..])
    } else {
        (None, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crlf_line_ends_reach_the_provider() {
        assert!(matches!(
            crlf_only(b"a\r\n.\r\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        for (data, want) in [
            (&b"a\n.\nMAIL"[..], &b"a\r\n.\r\nMAIL"[..]),
            (b"a\r.\r\n", b"a\r\n.\r\n"),
            (b"\n\r\r\n", b"\r\n\r\n\r\n"),
        ] {
            assert_eq!(&*crlf_only(data), want);
        }
    }

    #[test]
    fn enhanced_codes_are_taken_from_the_provider_text() {
        assert_eq!(
            split_enhanced("5.1.1 <x@y>: unknown user"),
            (Some("5.1.1"), " <x@y>: unknown user")
        );
        assert_eq!(split_enhanced("no such user"), (None, "no such user"));
        assert_eq!(split_enhanced("1.2 x"), (None, "1.2 x"));
    }

    #[test]
    fn partial_delivery_is_permanent_and_says_who_has_it() {
        let reply = Failure::Lost.into_reply(&["bob@example.org"]);
        assert_eq!(reply.code, 554);
        assert!(reply.lines[0].starts_with("Sent only to bob@example.org;"));
        let reply = Failure::Lost.into_reply(&[]);
        assert_eq!(reply.code, 451);
    }
}
