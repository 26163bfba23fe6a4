//! The session loop: the client's events and the provider's, one at a
//! time, until either side ends. Client commands queue ([`Pending`]) and go
//! to the provider one at a time ([`Forwarder::start_next`]); the
//! provider's answers are passed on, rewritten where the gateway serves
//! the content ([`Forwarder::on_data`], [`Forwarder::on_status`]).

use imap_next::client::Event as ClientEvent;
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::LiteralMode;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status, StatusBody, StatusKind, Tagged};
use imap_next::server::{Event as ServerEvent, ResponseHandle};
use imap_next::stream::Error as StreamError;
use tracing::{trace, warn};

use super::respond::{answer_client_error, tagged, text, MAX_UNSENT};
use super::{Current, Forwarder, Kind, Pending, Selected, SessionError, SHUTTING_DOWN};
use crate::imap::capabilities;
use crate::imap::fetch_command::{FetchCommand, Known};
use crate::imap::sequence::explicit_values;
use crate::upstream::{Session, Unsolicited};

/// The most UIDs of a FETCH looked up to tell whether all are plain mail
/// (a client reading some messages; a larger set is a mailbox read).
const ALL_PLAIN_CHECKED: usize = 1_000;

/// What the session loop reads next.
enum Step {
    FromClient(ServerEvent),
    FromProvider(ClientEvent),
    /// An answer of the provider's imap-codec cannot read, skipped.
    Unreadable,
    ProviderFailed(StreamError<imap_next::client::Error>),
    /// The provider was silent for the whole patience while an answer was due.
    ProviderSilent,
    /// The gateway is stopping.
    Stop,
}

impl Forwarder {
    /// Serves the logged-in client until it logs out or either side ends.
    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        let patience = self.shared.config.provider_timeout;
        let mut provider_heard = tokio::time::Instant::now();
        let mut was_waiting = false;
        loop {
            // Stopping: once no command runs (IDLE can be left at any time).
            if self.stop.is_cancelled()
                && self
                    .current
                    .as_ref()
                    .is_none_or(|c| matches!(c.kind, Kind::Idle))
            {
                self.say_bye(SHUTTING_DOWN).await;
                return Ok(());
            }
            // The clock runs only while an answer is due and being read
            // (not during IDLE, nor while a slow client holds reading up).
            let waiting = self.unsent <= MAX_UNSENT
                && self
                    .current
                    .as_ref()
                    .is_some_and(|c| !matches!(c.kind, Kind::Idle));
            if waiting && !was_waiting {
                provider_heard = tokio::time::Instant::now();
            }
            was_waiting = waiting;
            let step = tokio::select! {
                _ = self.stop.cancelled(), if !self.stop.is_cancelled() => Step::Stop,
                _ = tokio::time::sleep_until(provider_heard + patience), if waiting => Step::ProviderSilent,
                event = self.client_stream.next(&mut self.server) => match event {
                    Ok(event) => Step::FromClient(event),
                    Err(e) => {
                        self.unsent +=
                            answer_client_error(&mut self.client_stream, &mut self.server, e).await?;
                        continue;
                    }
                },
                // Backpressure: a slow client stops the reading of more
                // provider data until it has taken what is queued.
                event = self.session.receive(), if self.unsent <= MAX_UNSENT => match event {
                    Ok(event) => Step::FromProvider(event),
                    Err(e) if unreadable(&e) => Step::Unreadable,
                    Err(e) => Step::ProviderFailed(e),
                },
            };
            trace_step(&step);
            let from_provider = matches!(step, Step::FromProvider(_) | Step::Unreadable);
            match step {
                // Seen at the top of the loop, once no command runs.
                Step::Stop => {}
                Step::ProviderSilent => {
                    warn!(account = %self.account.address, seconds = patience.as_secs(), "provider stopped answering");
                    self.say_bye(
                        "Your provider stopped answering; this session ends, please reconnect",
                    )
                    .await;
                    return Err(SessionError::ProviderSilent(patience.as_secs()));
                }
                Step::Unreadable => {
                    // One answer imap-codec cannot read (a structure nested
                    // deeper than it reads, a server's own dialect): left
                    // out, the session goes on, and the command's completion
                    // says so. Its bytes may be message text: never logged.
                    warn!(account = %self.account.address, "left out an answer of the provider's that the gateway cannot read");
                    if let Some(current) = self.current.as_mut() {
                        current.unreadable += 1;
                    }
                }
                Step::ProviderFailed(e) => return self.provider_failed(e).await,
                Step::FromClient(event) => {
                    if self.take_client_event(event) {
                        self.start_next().await;
                    }
                }
                Step::FromProvider(event) => {
                    if self.on_provider_event(event).await? {
                        return Ok(());
                    }
                }
            }
            // Our own work on what the provider sent (decrypting a batch)
            // is not the provider's silence.
            if from_provider {
                provider_heard = tokio::time::Instant::now();
            }
        }
    }

    /// The provider connection failed: ends the session, telling the
    /// client why (or completing its LOGOUT).
    async fn provider_failed(
        &mut self,
        e: StreamError<imap_next::client::Error>,
    ) -> Result<(), SessionError> {
        // A provider that hangs up after LOGOUT may lose its last words (BYE
        // and OK arrive with the TLS close): the logout happened all the same.
        if let Some(Current {
            client_tag,
            kind: Kind::Logout,
            ..
        }) = self.current.take()
        {
            if !self.closing {
                if let Ok(bye) = Status::bye(None, "Logging out") {
                    self.send_status(bye);
                }
            }
            let last =
                self.send_status(tagged(client_tag, StatusKind::Ok, None, "LOGOUT completed"));
            self.deliver(last).await;
            return Ok(());
        }
        let why = match &e {
            StreamError::State(_) => "Your provider sent a response the gateway cannot read (malformed or too large); this session ends, others go on",
            _ => "The connection to your provider was lost",
        };
        warn!(account = %self.account.address, error = %e, "provider session ended");
        self.say_bye(why).await;
        Err(SessionError::ProviderStream(e))
    }

    /// One event from the provider. Whether the session is over.
    async fn on_provider_event(&mut self, event: ClientEvent) -> Result<bool, SessionError> {
        match event {
            ClientEvent::IdleAccepted {
                continuation_request,
                ..
            } => {
                let queued = self.server.idle_accept(continuation_request).is_ok();
                self.unsent += usize::from(queued);
            }
            ClientEvent::IdleRejected { status, .. } => {
                if let Some(current) = self.current.take() {
                    let status = match status {
                        Status::Tagged(Tagged { body, .. }) => Status::Tagged(Tagged {
                            tag: current.client_tag,
                            body,
                        }),
                        other => other,
                    };
                    if self.server.idle_reject(status).is_ok() {
                        self.unsent += 1;
                    }
                }
                self.start_next().await;
            }
            ClientEvent::DataReceived { data } => self.on_data(data).await?,
            ClientEvent::CommandSent { command, .. } => {
                if let Some(current) = self.current.as_mut() {
                    current.sent |= current.upstream_tag == command.tag;
                }
            }
            ClientEvent::StatusReceived { status } => {
                // A completion before a literal's go-ahead is the literal
                // refused with NO (over quota, too big). imap-next takes only
                // BAD as a refusal and would wait for the go-ahead forever,
                // holding every later command: pass the answer on, then end
                // cleanly.
                let refused_literal = matches!(
                    (&status, &self.current),
                    (Status::Tagged(Tagged { tag, .. }), Some(c))
                        if *tag == c.upstream_tag && c.awaits_go_ahead && !c.sent
                );
                if let Some(last) = self.on_status(status).await? {
                    self.deliver(last).await;
                    return Ok(true);
                }
                if refused_literal {
                    warn!(account = %self.account.address, "the provider refused a literal with NO; ending the session so that the next starts clean");
                    self.say_bye("Your provider refused that before taking it; this session ends so that the next one starts clean, please reconnect").await;
                    return Err(SessionError::LiteralRefused);
                }
            }
            ClientEvent::CommandRejected { status, .. } => {
                self.on_status(status).await?;
            }
            _ => {}
        }
        Ok(false)
    }

    /// Sends the next queued client command, if none is running.
    async fn start_next(&mut self) {
        while self.current.is_none() {
            let command = match self.queue.pop_front() {
                None => return,
                Some(Pending::Command(command)) => command,
                Some(Pending::Idle(client_tag)) => {
                    let upstream_tag = self.session.idle();
                    self.current = Some(Current {
                        client_tag,
                        upstream_tag,
                        kind: Kind::Idle,
                        sent: false,
                        awaits_go_ahead: false,
                        unreadable: 0,
                    });
                    return;
                }
            };
            let client_tag = command.tag.clone();
            if let CommandBody::Search {
                charset,
                criteria,
                uid,
            } = &command.body
            {
                if super::search::answered_here(criteria) {
                    if let Some(answer) = self.answer_search(charset.clone(), criteria, *uid).await
                    {
                        self.send_search_answer(client_tag, answer);
                        continue;
                    }
                }
            }
            match self.prepare(command).await {
                Ok((command, kind, awaits_go_ahead)) => {
                    if matches!(kind, Kind::Select { .. }) {
                        // A new SELECT deselects at once, whatever its outcome.
                        self.selected = None;
                        self.learned.clear();
                    }
                    let upstream_tag = self.session.forward(command);
                    self.current = Some(Current {
                        client_tag,
                        upstream_tag,
                        kind,
                        sent: false,
                        awaits_go_ahead,
                        unreadable: 0,
                    });
                }
                Err((kind, why)) => {
                    self.send_status(tagged(client_tag, kind, None, &why));
                }
            }
        }
    }

    /// Readies a client command for the provider: what the session does
    /// with its answers, and whether its literal waits for a go-ahead; or
    /// the refusal the client gets instead.
    async fn prepare(
        &mut self,
        mut command: Command<'static>,
    ) -> Result<(Command<'static>, Kind, bool), (StatusKind, String)> {
        if let Some(refusal) = capabilities::refusal(&command.body) {
            return Err((StatusKind::No, refusal.to_string()));
        }
        if let CommandBody::Search { criteria, .. } = &mut command.body {
            self.search_encrypted(criteria).await;
        }
        let awaits_go_ahead = match &mut command.body {
            CommandBody::Append { message, .. } => {
                self.prepare_append(message).await.map_err(|e| {
                    warn!(reason = %e, "APPEND refused: the message could not be encrypted");
                    let why = format!(
                        "Not saved: the message could not be encrypted ({e}); nothing was stored"
                    );
                    (StatusKind::No, why)
                })?
            }
            _ => {
                let literals = Literals::of(&command, &self.session);
                if literals.non_sync_refused {
                    let why = "Your provider does not take this literal without a go-ahead \
                               (LITERAL+); send it as an ordinary literal";
                    return Err((StatusKind::Bad, why.to_string()));
                }
                literals.sync
            }
        };
        let kind = match &mut command.body {
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                let known = || {
                    let Some(key) = self.mailbox_key() else {
                        return Known::Nothing;
                    };
                    if !self.shared.plain.knows(&key) {
                        return Known::Nothing;
                    }
                    if !*uid {
                        return Known::ToldApart;
                    }
                    // A client reading one message (or a few) by UID.
                    match explicit_values(sequence_set, ALL_PLAIN_CHECKED) {
                        Some(uids)
                            if self.shared.plain.plain_among(&key, &uids).len() == uids.len() =>
                        {
                            Known::AllPlain
                        }
                        _ => Known::ToldApart,
                    }
                };
                Kind::Fetch(FetchCommand::start(macro_or_item_names, *uid, known))
            }
            CommandBody::Logout => Kind::Logout,
            CommandBody::Select { mailbox, .. } | CommandBody::Examine { mailbox, .. } => {
                Kind::Select {
                    mailbox: mailbox_name(mailbox),
                    uidvalidity: None,
                }
            }
            _ => Kind::Other,
        };
        Ok((command, kind, awaits_go_ahead))
    }

    /// What the provider said unasked during the gateway's own commands
    /// ([`crate::upstream::Unsolicited`]), passed on as if it had come with
    /// the client's command.
    pub(super) fn pass_on_unsolicited(&mut self) {
        for said in self.session.take_unsolicited() {
            match said {
                // Capabilities are the gateway's to announce.
                Unsolicited::Data(Data::Capability(_)) => {}
                Unsolicited::Data(data) => self.send_data(data),
                Unsolicited::Status(body) => {
                    let code = body.code.clone().and_then(capabilities::filter_code);
                    self.send_status(Status::Untagged(StatusBody { code, ..body }));
                }
            }
        }
    }

    /// Untagged data from the provider.
    async fn on_data(&mut self, data: Data<'static>) -> Result<(), SessionError> {
        match data {
            Data::Capability(caps) => {
                if let Some(kept) = capabilities::kept(caps) {
                    self.send_data(Data::Capability(kept));
                }
            }
            Data::Fetch { seq, items } => self.on_fetch(seq, items.into_inner()).await?,
            other => self.send_data(other),
        }
        Ok(())
    }

    /// Takes one event from the client, the same wherever the session reads
    /// the client (its loop, or while draining a long answer): commands and
    /// IDLE are queued, never dropped; a second login is refused; a sent
    /// response is counted off. Whether a command was queued.
    pub(super) fn take_client_event(&mut self, event: ServerEvent) -> bool {
        match event {
            ServerEvent::CommandReceived { command } => {
                self.queue.push_back(Pending::Command(command));
                true
            }
            ServerEvent::IdleCommandReceived { tag } => {
                self.queue.push_back(Pending::Idle(tag));
                true
            }
            ServerEvent::IdleDoneReceived => {
                self.session.end_idle();
                false
            }
            ServerEvent::CommandAuthenticateReceived {
                command_authenticate,
            } => {
                let refusal = tagged(
                    command_authenticate.tag,
                    StatusKind::Bad,
                    None,
                    "Already logged in",
                );
                if self.server.authenticate_finish(refusal).is_ok() {
                    self.unsent += 1;
                }
                false
            }
            ServerEvent::ResponseSent { .. } => {
                self.unsent = self.unsent.saturating_sub(1);
                false
            }
            _ => false,
        }
    }

    /// A status from the provider. Returns the last response for the client
    /// when the session is over.
    async fn on_status(
        &mut self,
        status: Status<'static>,
    ) -> Result<Option<ResponseHandle>, SessionError> {
        match status {
            Status::Tagged(Tagged { tag, body }) => {
                if !matches!(&self.current, Some(c) if c.upstream_tag == tag) {
                    return Ok(None);
                }
                // The rest of a FETCH's answers go before its completion,
                // and then what the provider said during the gateway's own
                // commands for it (after the answers, whose sequence
                // numbers predate any expunge among it).
                self.finish_fetch().await?;
                self.pass_on_unsolicited();
                let Some(current) = self.current.take() else {
                    return Ok(None);
                };
                // A failed SELECT leaves no mailbox selected (RFC 3501
                // 6.3.1), so an unreadable answer to one is a warning, not
                // a NO that would put the client out of step.
                let selecting = matches!(current.kind, Kind::Select { .. });
                if let Kind::Select {
                    mailbox,
                    uidvalidity,
                } = current.kind
                {
                    if body.kind == StatusKind::Ok {
                        self.selected = Some(Selected {
                            mailbox,
                            uidvalidity,
                        });
                    }
                }
                let code = body.code.and_then(capabilities::filter_code);
                let left_out = |n: usize| {
                    text(&format!(
                        "{n} of your provider's answers to this command could not be read \
                         (nested deeper than the gateway reads, or malformed) and were left \
                         out; the rest came through"
                    ))
                };
                let body = match current.unreadable {
                    0 => StatusBody { code, ..body },
                    n if selecting => {
                        self.send_status(Status::Untagged(StatusBody {
                            kind: StatusKind::No,
                            code: None,
                            text: left_out(n),
                        }));
                        StatusBody { code, ..body }
                    }
                    n if body.kind == StatusKind::Ok => StatusBody {
                        kind: StatusKind::No,
                        code: None,
                        text: left_out(n),
                    },
                    _ => StatusBody { code, ..body },
                };
                let last = self.send_status(Status::Tagged(Tagged {
                    tag: current.client_tag,
                    body,
                }));
                if self.closing {
                    return Ok(Some(last));
                }
                self.start_next().await;
                Ok(None)
            }
            Status::Untagged(body) => {
                if let (
                    Some(Code::UidValidity(v)),
                    Some(Current {
                        kind: Kind::Select { uidvalidity, .. },
                        ..
                    }),
                ) = (&body.code, &mut self.current)
                {
                    *uidvalidity = Some(v.get());
                }
                let code = body.code.clone().and_then(capabilities::filter_code);
                self.send_status(Status::Untagged(StatusBody { code, ..body }));
                Ok(None)
            }
            Status::Bye(bye) => {
                // After LOGOUT the tagged OK follows; otherwise the provider
                // is hanging up and the session ends with its next read.
                self.send_status(Status::Bye(bye));
                self.closing = true;
                Ok(None)
            }
        }
    }
}

/// What moved, at trace level: names of commands, events and responses
/// only, never their content (no message text, no mailbox names), so that
/// a session that stalls can be followed from the gateway's side.
fn trace_step(step: &Step) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    match step {
        Step::FromClient(ServerEvent::CommandReceived { command }) => {
            trace!(command = command.body.name(), "client")
        }
        Step::FromClient(ServerEvent::IdleCommandReceived { .. }) => {
            trace!(command = "IDLE", "client")
        }
        Step::FromClient(ServerEvent::IdleDoneReceived) => trace!(command = "DONE", "client"),
        // (Responses written are not traced: one line per response.)
        Step::FromClient(ServerEvent::ResponseSent { .. }) => {}
        Step::FromClient(_) => trace!("client event"),
        Step::FromProvider(ClientEvent::DataReceived { data }) => {
            trace!(data = data_name(data), "provider")
        }
        Step::FromProvider(ClientEvent::StatusReceived { status }) => {
            let kind = match status {
                Status::Tagged(_) => "tagged",
                Status::Untagged(_) => "untagged",
                Status::Bye(_) => "BYE",
            };
            trace!(status = kind, "provider")
        }
        Step::FromProvider(event) => trace!(event = crate::upstream::event_name(event), "provider"),
        Step::Unreadable => trace!("provider: unreadable answer"),
        Step::ProviderFailed(_) => trace!("provider: failed"),
        Step::ProviderSilent => trace!("provider: silent"),
        Step::Stop => trace!("stop"),
    }
}

fn data_name(data: &Data<'_>) -> &'static str {
    match data {
        Data::Exists(_) => "EXISTS",
        Data::Recent(_) => "RECENT",
        Data::Expunge(_) => "EXPUNGE",
        Data::Fetch { .. } => "FETCH",
        Data::Flags(_) => "FLAGS",
        Data::Search(..) => "SEARCH",
        Data::List { .. } => "LIST",
        Data::Lsub { .. } => "LSUB",
        Data::Status { .. } => "STATUS",
        Data::Capability(_) => "CAPABILITY",
        _ => "other",
    }
}

/// How a command's literals would go to the provider, as imap-codec
/// encodes them for imap-next.
struct Literals {
    /// One waits for the provider's go-ahead.
    sync: bool,
    /// One is non-synchronizing where the provider does not allow it (the
    /// client took LITERAL+ from the proxy's capabilities before login);
    /// sent as it is, the provider would read the literal as a command.
    non_sync_refused: bool,
}

impl Literals {
    fn of(command: &Command<'_>, session: &Session) -> Self {
        use imap_codec::encode::{Encoder as _, Fragment};
        let mut found = Literals {
            sync: false,
            non_sync_refused: false,
        };
        for fragment in imap_codec::CommandCodec::default().encode(command) {
            match fragment {
                Fragment::Literal {
                    mode: LiteralMode::Sync,
                    ..
                } => found.sync = true,
                Fragment::Literal {
                    data,
                    mode: LiteralMode::NonSync,
                } => found.non_sync_refused |= !session.takes_non_sync_literal(data.len()),
                Fragment::Line { .. } => {}
            }
        }
        found
    }
}

/// Whether a provider stream error is one answer imap-next could not
/// decode and skipped (the stream stays in step), rather than a broken
/// connection.
fn unreadable(error: &StreamError<imap_next::client::Error>) -> bool {
    matches!(
        error,
        StreamError::State(
            imap_next::client::Error::MalformedMessage { .. }
                | imap_next::client::Error::ExpectedCrlfGotLf { .. }
        )
    )
}

fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}
