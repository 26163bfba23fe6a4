//! The connection to the provider's IMAP server.
//!
//! imap-next does the protocol (parsing, literals, tags); this module adds
//! what the gateway needs around it: TLS (implicit or STARTTLS) with the
//! system's roots plus the account's `ca_file`, a time limit on every wait,
//! and typed results for the few commands the gateway issues itself
//! (`own.rs`).

use std::time::Duration;

use imap_next::client::{Client, Event, Options};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::response::{Code, Data, Status, StatusBody, StatusKind};
use imap_next::stream::{Error as StreamError, Stream};

mod own;
mod tls;

use thiserror::Error;
use tls::{handshake, starttls};
use tokio::net::TcpStream;

/// How long any one wait on the provider may take before the connection is
/// given up. Large literals arrive in many reads, each of which restarts it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest response accepted (a message of up to this size fits).
pub const MAX_RESPONSE: u32 = 160 * 1024 * 1024;
/// The most untagged responses one command may bring (a UID listing of a
/// very large mailbox stays far below).
const MAX_UNTAGGED: usize = 2_000_000;
/// The most message bytes one command may bring: a batch, or one message
/// of up to [`MAX_RESPONSE`].
const MAX_COMMAND_BYTES: usize = 2 * MAX_RESPONSE as usize;
/// The longest line accepted before TLS is up (greeting, STARTTLS reply).
const MAX_PLAIN_LINE: usize = 8 * 1024;

pub use net_edge::{Endpoint, Security};

/// What went wrong talking to the provider.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("the TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("the TLS handshake with {host} failed: {rejected}")]
    Certificate {
        host: String,
        #[source]
        rejected: Box<net_edge::CertificateRejected>,
    },
    #[error(transparent)]
    TlsSetup(#[from] net_edge::TlsSetupError),
    #[error("the provider does not offer STARTTLS: {0}")]
    NoStartTls(String),
    #[error("the provider rejected the login: {0}")]
    LoginRejected(String),
    #[error("the provider answered {command} with: {text}")]
    Rejected { command: &'static str, text: String },
    #[error("the provider closed the connection{0}")]
    Closed(String),
    #[error("the provider did not answer within {} seconds", IO_TIMEOUT.as_secs())]
    Timeout,
    #[error("the provider sent something that is not IMAP: {0}")]
    Protocol(String),
    #[error("invalid argument for an IMAP command: {0}")]
    Argument(String),
}

/// A mailbox from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The name as the provider spells it on the wire.
    pub name: String,
    /// `false` for `\Noselect` (a folder that only holds other folders).
    pub selectable: bool,
}

/// What EXAMINE/SELECT reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub uidvalidity: u32,
    pub exists: u32,
}

/// One logged-in (or not yet logged-in) connection to the provider.
pub struct Session {
    stream: Stream,
    client: Client,
    next_tag: u64,
    host: String,
    /// The provider's capabilities after login, upper-cased.
    capabilities: Vec<String>,
    /// What the provider said unasked during the gateway's own commands,
    /// until the client's session takes it.
    unsolicited: Vec<Unsolicited>,
}

/// What the provider says unasked while the gateway runs a command of its
/// own in a client's session (a detection or download for the client's
/// FETCH): new mail, expunges, flag changes, status codes. IMAP lets a
/// server say these during any command that may carry them, and Dovecot
/// holds expunges back during a FETCH by sequence number until the next
/// such command, so they arrive here. They belong to the client, who would
/// otherwise miss new mail or count messages that are gone
/// ([`Session::take_unsolicited`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Unsolicited {
    Data(Data<'static>),
    Status(StatusBody<'static>),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("host", &self.host).finish()
    }
}

/// Untagged data and the final status of one command.
struct Completed {
    data: Vec<Data<'static>>,
    untagged: Vec<Status<'static>>,
    /// The response code of the tagged OK.
    code: Option<Code<'static>>,
}

impl Session {
    /// Connects and waits for the greeting (after STARTTLS, if asked for).
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, UpstreamError> {
        let tcp = timeout(TcpStream::connect((endpoint.host.as_str(), endpoint.port)))
            .await?
            .map_err(|source| UpstreamError::Connect {
                host: endpoint.host.clone(),
                port: endpoint.port,
                source,
            })?;
        let mut options = Options::default();
        options.max_response_size = MAX_RESPONSE;
        let stream = match endpoint.security {
            Security::Plain => Stream::insecure(tcp),
            Security::Tls => crate::tls_stream(handshake(endpoint, tcp).await?.into()),
            Security::StartTls => {
                let tcp = starttls(tcp).await?;
                // The greeting was read before the upgrade.
                options.discard_greeting = true;
                crate::tls_stream(handshake(endpoint, tcp).await?.into())
            }
        };
        let mut session = Session {
            stream,
            client: Client::new(options),
            next_tag: 1,
            host: endpoint.host.clone(),
            capabilities: Vec::new(),
            unsolicited: Vec::new(),
        };
        if endpoint.security != Security::StartTls {
            session.greeting().await?;
        }
        Ok(session)
    }

    async fn greeting(&mut self) -> Result<(), UpstreamError> {
        use imap_next::imap_types::response::GreetingKind;
        match self.next_event().await? {
            Event::GreetingReceived { greeting } => match greeting.kind {
                GreetingKind::Ok | GreetingKind::PreAuth => Ok(()),
                GreetingKind::Bye => Err(UpstreamError::Closed(format!(
                    ": {}",
                    greeting.text.inner()
                ))),
            },
            other => Err(UpstreamError::Protocol(format!(
                "expected a greeting, got {}",
                event_name(&other)
            ))),
        }
    }

    /// A fresh tag: one scheme for this session's own commands and those it
    /// forwards, so no two commands on the connection share a tag (the
    /// client's own tags are never sent to the provider).
    fn next_tag(&mut self) -> Tag<'static> {
        let tag = Tag::unvalidated(format!("L{}", self.next_tag));
        self.next_tag += 1;
        tag
    }

    /// Queues a client's command under a tag of this session's; returns the
    /// tag, by which its completion is told apart. It is sent while
    /// [`Session::receive`] is driven.
    pub fn forward(&mut self, mut command: Command<'static>) -> Tag<'static> {
        command.tag = self.next_tag();
        let tag = command.tag.clone();
        self.client.enqueue_command(command);
        tag
    }

    /// Queues IDLE; [`Session::end_idle`] ends it.
    pub fn idle(&mut self) -> Tag<'static> {
        self.forward(Command {
            tag: Tag::unvalidated("L"),
            body: CommandBody::Idle,
        })
    }

    /// Queues the DONE that ends an IDLE (nothing if none is running).
    pub fn end_idle(&mut self) {
        let _ = self.client.set_idle_done();
    }

    /// The next event on the connection, for a forwarding session: it sends
    /// what is queued and reads what comes. No time limit (the caller knows
    /// when an answer is due); cancel-safe, so it can race the client.
    pub async fn receive(&mut self) -> Result<Event, StreamError<imap_next::client::Error>> {
        self.stream.next(&mut self.client).await
    }

    /// Says goodbye; errors are irrelevant at this point.
    pub async fn logout(mut self) {
        let _ = self.run(CommandBody::Logout, "LOGOUT").await;
    }

    /// Sends one command and collects what comes back until its tagged
    /// completion. A NO or BAD completion is [`UpstreamError::Rejected`].
    async fn run(
        &mut self,
        body: CommandBody<'static>,
        name: &'static str,
    ) -> Result<Completed, UpstreamError> {
        let mut data = Vec::new();
        let mut weight = 0usize;
        let mut done = self
            .run_each(body, name, |d| {
                // A provider must not make us hold more than one batch's
                // worth: count the message bytes in what is kept.
                weight += data_weight(&d);
                if weight > MAX_COMMAND_BYTES {
                    return Err(UpstreamError::Protocol(format!(
                        "the provider sent more data for {name} than was asked for"
                    )));
                }
                data.push(d);
                Ok(())
            })
            .await?;
        done.data = data;
        Ok(done)
    }

    /// [`Session::run`], handing each data response to `each` as it
    /// arrives instead of holding it: for answers that grow with the
    /// mailbox (one parsed FETCH response is about 1.5 KB; held for every
    /// message of a 100,000-message mailbox, that was most of an archive
    /// sync's memory). An error from `each` ends the command with it.
    async fn run_each(
        &mut self,
        body: CommandBody<'static>,
        name: &'static str,
        mut each: impl FnMut(Data<'static>) -> Result<(), UpstreamError> + Send,
    ) -> Result<Completed, UpstreamError> {
        let tag = self.next_tag();
        self.client.enqueue_command(Command {
            tag: tag.clone(),
            body,
        });
        let mut done = Completed {
            data: Vec::new(),
            untagged: Vec::new(),
            code: None,
        };
        let mut count = 0usize;
        loop {
            match self.next_event().await? {
                Event::DataReceived { data } => {
                    count += 1;
                    if count > MAX_UNTAGGED {
                        return Err(UpstreamError::Protocol(format!(
                            "the provider sent more data for {name} than was asked for"
                        )));
                    }
                    each(data)?;
                }
                Event::StatusReceived { status } => match status {
                    Status::Tagged(tagged) if tagged.tag == tag => {
                        return match tagged.body.kind {
                            StatusKind::Ok => {
                                done.code = tagged.body.code;
                                Ok(done)
                            }
                            StatusKind::No | StatusKind::Bad => Err(UpstreamError::Rejected {
                                command: name,
                                text: tagged.body.text.inner().to_string(),
                            }),
                        };
                    }
                    Status::Bye(bye) if name != "LOGOUT" => {
                        return Err(UpstreamError::Closed(format!(": {}", bye.text.inner())))
                    }
                    Status::Bye(_) => {}
                    Status::Tagged(_) => {
                        return Err(UpstreamError::Protocol(
                            "a completion for a command that was not sent".into(),
                        ))
                    }
                    untagged => done.untagged.push(untagged),
                },
                Event::CommandRejected { status, .. } => {
                    let text = match &status {
                        Status::Tagged(t) => t.body.text.inner().to_string(),
                        Status::Untagged(b) => b.text.inner().to_string(),
                        Status::Bye(b) => b.text.inner().to_string(),
                    };
                    return Err(UpstreamError::Rejected {
                        command: name,
                        text,
                    });
                }
                Event::CommandSent { .. } => {}
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "unexpected {} during {name}",
                        event_name(&other)
                    )))
                }
            }
        }
    }

    async fn next_event(&mut self) -> Result<Event, UpstreamError> {
        match tokio::time::timeout(IO_TIMEOUT, self.stream.next(&mut self.client)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(event)) => Ok(event),
            Ok(Err(StreamError::Closed)) => Err(UpstreamError::Closed(String::new())),
            Ok(Err(StreamError::Io(e))) => Err(UpstreamError::Closed(format!(": {e}"))),
            Ok(Err(StreamError::Tls(e))) => Err(UpstreamError::Tls {
                host: self.host.clone(),
                reason: e.to_string(),
            }),
            Ok(Err(StreamError::State(e))) => Err(UpstreamError::Protocol(e.to_string())),
        }
    }
}

/// Roughly how many bytes a response holds: its message contents plus a
/// little for the rest.
fn data_weight(data: &Data<'_>) -> usize {
    let Data::Fetch { items, .. } = data else {
        return 64;
    };
    64 + items
        .as_ref()
        .iter()
        .map(|item| match item {
            MessageDataItem::BodyExt { data, .. }
            | MessageDataItem::Rfc822(data)
            | MessageDataItem::Rfc822Header(data)
            | MessageDataItem::Rfc822Text(data) => data.0.as_ref().map_or(0, |d| d.as_ref().len()),
            _ => 16,
        })
        .sum::<usize>()
}

pub(crate) fn event_name(event: &Event) -> &'static str {
    match event {
        Event::GreetingReceived { .. } => "greeting",
        Event::CommandSent { .. } => "command sent",
        Event::CommandRejected { .. } => "command rejected",
        Event::AuthenticateStarted { .. } => "authenticate started",
        Event::AuthenticateContinuationRequestReceived { .. } => "authenticate continuation",
        Event::AuthenticateStatusReceived { .. } => "authenticate status",
        Event::IdleCommandSent { .. } => "IDLE",
        Event::IdleAccepted { .. } => "IDLE accepted",
        Event::IdleRejected { .. } => "IDLE rejected",
        Event::IdleDoneSent { .. } => "DONE",
        Event::DataReceived { .. } => "data",
        Event::StatusReceived { .. } => "status",
        Event::ContinuationRequestReceived { .. } => "continuation request",
    }
}

async fn timeout<F: std::future::Future>(future: F) -> Result<F::Output, UpstreamError> {
    tokio::time::timeout(IO_TIMEOUT, future)
        .await
        .map_err(|_| UpstreamError::Timeout)
}

#[cfg(test)]
mod tests {
    /// A FETCH answer whose BODYSTRUCTURE nests `levels` multiparts.
    fn deep_fetch(levels: usize) -> Vec<u8> {
        let leaf = br#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 1)"#;
        let mut out = b"* 1 FETCH (UID 1 BODYSTRUCTURE ".to_vec();
        out.extend(std::iter::repeat_n(b'(', levels));
        out.extend_from_slice(leaf);
        for _ in 0..levels {
            out.extend_from_slice(br#" "mixed")"#);
        }
        out.extend_from_slice(b")\r\n");
        out
    }

    /// The provider's side of the proxy reads structures as deep as Dovecot
    /// serves them (about 101 levels; the vendored imap-codec reads 128),
    /// within a tokio worker's 2 MiB stack; a deeper answer
    /// is one unreadable response that the client skips, and the stream
    /// stays in step: the completion after it is read.
    #[test]
    fn structures_as_deep_as_dovecot_serves_are_read_and_deeper_ones_skipped() {
        use imap_next::client::{Client, Error, Event, Options};
        use imap_next::{Interrupt, State as _};
        let reader = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let mut client = Client::new(Options::default());
                client.enqueue_input(b"* OK ready\r\n");
                assert!(matches!(client.next(), Ok(Event::GreetingReceived { .. })));
                for levels in [8, 60, 101, 126] {
                    client.enqueue_input(&deep_fetch(levels));
                    let event = client.next();
                    assert!(
                        matches!(event, Ok(Event::DataReceived { .. })),
                        "{levels} levels"
                    );
                }
                for levels in [130, 1_000, 100_000] {
                    client.enqueue_input(&deep_fetch(levels));
                    client.enqueue_input(b"G1 OK done\r\n");
                    let skipped = client.next();
                    assert!(
                        matches!(
                            skipped,
                            Err(Interrupt::Error(Error::MalformedMessage { .. }))
                        ),
                        "{levels} levels"
                    );
                    let next = client.next();
                    assert!(
                        matches!(next, Ok(Event::StatusReceived { .. })),
                        "{levels} levels: the stream is in step after it"
                    );
                }
            })
            .expect("thread");
        assert!(reader.join().is_ok(), "no stack overflow, no panic");
    }

    /// The gateway's own UID FETCH keeps only its answers; whatever the
    /// provider added goes to the client, in order: other responses, flag
    /// FETCHes, flags beside an answer (with the UID), answers for UIDs
    /// not asked about.
    #[test]
    fn only_the_answers_to_the_gateways_own_fetch_are_kept() {
        use super::own::split_own_fetch;
        use super::Unsolicited;
        use imap_next::imap_types::fetch::MessageDataItem;
        use imap_next::imap_types::response::Data;
        use imap_next::{client::Event, State as _};
        let mut client = imap_next::client::Client::new(Default::default());
        client.enqueue_input(
            b"* OK ready\r\n\
              * 9 EXISTS\r\n\
              * 1 FETCH (UID 4 FLAGS (\\Seen) BODY[] {2}\r\nhi)\r\n\
              * 3 EXPUNGE\r\n\
              * 2 FETCH (UID 5 FLAGS (\\Flagged))\r\n\
              * 6 FETCH (UID 8 BODY[] {2}\r\nno)\r\n\
              * 4 FETCH (BODY[] {2}\r\nok UID 6)\r\n",
        );
        let mut data = Vec::new();
        while let Ok(event) = client.next() {
            if let Event::DataReceived { data: d } = event {
                data.push(d);
            }
        }
        assert_eq!(data.len(), 6);
        let (answers, unsolicited) = split_own_fetch(data, &[4, 5, 6]);
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert!(answers.iter().all(|items| items
            .iter()
            .all(|i| matches!(i, MessageDataItem::Uid(_) | MessageDataItem::BodyExt { .. }))));
        let told: Vec<String> = unsolicited
            .iter()
            .map(|u| match u {
                Unsolicited::Data(Data::Exists(n)) => format!("EXISTS {n}"),
                Unsolicited::Data(Data::Expunge(n)) => format!("EXPUNGE {n}"),
                Unsolicited::Data(Data::Fetch { seq, items }) => {
                    format!("FETCH {seq} {}", items.as_ref().len())
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            told,
            [
                "EXISTS 9",
                "FETCH 1 2",
                "EXPUNGE 3",
                "FETCH 2 2",
                "FETCH 6 2"
            ]
        );
    }
}
