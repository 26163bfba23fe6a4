//! The client-facing IMAP proxy: a listener and one task per client.
//!
//! A client logs in (LOGIN or AUTHENTICATE PLAIN) with its provider credentials; the login name selects
//! the account and the proxy logs in to the provider with them (the
//! provider's verdict is the client's). From then on the proxy forwards the
//! client's commands one at a time, under its own tags, and the provider's
//! responses back, with three changes:
//! - capabilities are cut down to what the proxy carries correctly;
//! - a FETCH gets two cheap detection items ([`crate::detect`]); messages
//!   the gateway serves itself (encrypted, signed, or carrying a forged
//!   status header) are answered from the served bytes ([`crate::fetch`]),
//!   which come from the archive or, the first time, from downloading the
//!   message once, [`crate::view`] and archiving the result — so the bytes
//!   for a (mailbox, UIDVALIDITY, UID) never change once served. A FETCH
//!   of sizes only in a mailbox told apart before goes without them
//!   ([`crate::plain`]); the messages it does not know are detected after;
//! - SEARCH text criteria are rewritten so that encrypted messages are
//!   judged by their decrypted text ([`crate::search`]);
//! - APPEND (Drafts, Sent, any mailbox) stores the message encrypted to the
//!   account's own key, with header protection; if that fails, nothing is
//!   stored. Commands that are not advertised are refused.
//!
//! One command at a time keeps the routing of untagged responses simple
//! and correct; the price is that a client's pipelining is not passed on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use archive::{content_hash, Archive, Location, Prepared};
use imap_next::client::Event as ClientEvent;
use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{Literal, LiteralMode, NString, Tag, Text, Vec1};
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Data, Greeting, Status, StatusBody, StatusKind,
    Tagged,
};
use imap_next::imap_types::search::SearchKey;
use imap_next::server::{
    Error as ServerError, Event as ServerEvent, Options as ServerOptions, ResponseHandle, Server,
};
use imap_next::stream::{Error as StreamError, Stream};
use keystore::Keystore;
use mailcrypt::{Boundary, EncryptRequest};
use provider_tls::LOGIN_PATIENCE;
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;
use tracing::{debug, info, warn};

use crate::detect::{self, served_by_gateway};
use crate::downloads::{until_released, Claim, Downloads};
use crate::fetch::{needs, rewrite, rewrite_size, same_section, Needs};
use crate::learn::{learn, Lessons};
use crate::plain::{MailboxKey, PlainMessages};
use crate::search::{has_text, matches, rewrite as rewrite_search, uid_set};
use crate::starttls::negotiate;
use crate::upstream::{Endpoint, Session, UpstreamError};
use crate::view::Keys;

/// One account as the IMAP side needs it.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The account address (archive entries and keys are filed under it).
    pub address: String,
    /// The login name; it selects the account.
    pub username: String,
    pub provider: Endpoint,
}

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The local certificate: with it, clients must use STARTTLS before
    /// they log in ([`crate::starttls`]); without it, the proxy speaks
    /// plain IMAP (fine on loopback).
    pub tls: Option<Arc<ServerConfig>>,
    pub accounts: Vec<AccountConfig>,
    /// How long the provider may stay silent while a command waits for its
    /// answer (IDLE excepted) before the session is ended. It bounds a
    /// provider that stalls, e.g. in the middle of a literal; it must allow
    /// the largest message to arrive over the slowest link in use.
    pub provider_timeout: Duration,
}

/// A [`Config::provider_timeout`] that lets 160 MiB arrive at 4 Mbit/s.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(600);

/// Capabilities passed on after login: what the proxy carries end to end,
/// each checked command by command against Dovecot (`tests/capabilities.rs`).
/// Everything else (COMPRESS, BINARY, SORT/THREAD for now, ESEARCH
/// and SEARCHRES, NOTIFY, …) is removed. LIST-EXTENDED
/// and LIST-STATUS are among them: imap-codec does not parse a LIST with
/// selection or return options, and a client that was told it may send one
/// would get BAD (Thunderbird then shows only Inbox and Trash).
const KEPT: [&str; 14] = [
    "IMAP4REV1",
    "IDLE",
    "LITERAL+",
    "UIDPLUS",
    "MOVE",
    "SPECIAL-USE",
    "NAMESPACE",
    "ID",
    "UNSELECT",
    "CHILDREN",
    // Clients show how full the mailbox is (the provider's count: the
    // encrypted copies are what takes the space).
    "QUOTA",
    // Flags and mod-sequences are the provider's, for decrypted messages
    // too (`fetch::rewrite` passes MODSEQ on), so a client resynchronises a
    // large mailbox without fetching every flag.
    "ENABLE",
    "CONDSTORE",
    "QRESYNC",
];

struct Shared {
    config: Config,
    keystore: Keystore,
    archive: Archive,
    in_flight: InFlight,
    downloads: Downloads,
    plain: PlainMessages,
}

/// A message viewed once for every session that asked meanwhile.
struct Viewed {
    view: crate::view::View,
    prepared: Prepared,
    /// Where the viewing session archived it before the others woke up
    /// (they find it there, and write nothing).
    archived_at: Option<Location>,
}

type ViewCell = Arc<tokio::sync::OnceCell<Option<Arc<Viewed>>>>;

/// Views in progress, by account and hash of the provider's bytes. New mail
/// is fetched by every open session (Thunderbird keeps several per account);
/// decrypting it once instead of once per session keeps the work (and the
/// memory) of a busy gateway proportional to the mail, not to the sessions.
#[derive(Default)]
struct InFlight {
    cells: std::sync::Mutex<std::collections::HashMap<(String, [u8; 32]), ViewCell>>,
}

impl InFlight {
    fn cell(&self, key: &(String, [u8; 32])) -> ViewCell {
        let mut cells = self
            .cells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(cells.entry(key.clone()).or_default())
    }

    /// Forgets a view once its result is archived; sessions still holding
    /// the cell keep their copy.
    fn finish(&self, key: &(String, [u8; 32])) {
        self.cells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// What one view of a message needs and where it came from.
struct ViewJob {
    keystore: Keystore,
    archive: Archive,
    account: String,
    keys: Arc<Keys>,
    bytes: Vec<u8>,
    hash: [u8; 32],
    location: Option<Location>,
}

/// Ingests one message ([`crate::ingest::ingest`]) at the viewing
/// session's location. `None` if the viewer panicked.
async fn view_learn_and_archive(job: ViewJob) -> Option<Arc<Viewed>> {
    let ViewJob {
        keystore,
        archive,
        account,
        keys,
        bytes,
        hash,
        location,
    } = job;
    let ingested = crate::ingest::ingest(
        Some(&keystore),
        &archive,
        keys,
        &account,
        bytes,
        &hash,
        location.as_ref(),
    )
    .await
    .ok()?;
    let archived_at = match (location, ingested.archived) {
        (Some(loc), Some(Ok(_))) => Some(loc),
        (Some(loc), Some(Err(e))) => {
            warn!(uid = loc.uid, error = %e, "message not archived");
            None
        }
        _ => None,
    };
    let crate::ingest::Ingested { view, prepared, .. } = ingested;
    Some(Arc::new(Viewed {
        view,
        prepared,
        archived_at,
    }))
}

/// A bound listener, ready to [`Proxy::run`].
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    pub async fn bind(
        config: Config,
        keystore: Keystore,
        archive: Archive,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Proxy {
            listener,
            shared: Arc::new(Shared {
                config,
                keystore,
                archive,
                in_flight: InFlight::default(),
                downloads: Downloads::default(),
                plain: PlainMessages::default(),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the sessions know about plain mail (tests, diagnostics).
    pub fn plain_messages(&self) -> PlainMessages {
        self.shared.plain.clone()
    }

    /// Serves until `shutdown` completes; sessions then end with the tasks.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let shared = Arc::clone(&self.shared);
                        sessions.spawn(async move {
                            if let Err(e) = serve(tcp, shared).await {
                                debug!(%peer, error = %e, "imap session ended");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "imap accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        sessions.shutdown().await;
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("client: {0}")]
    Client(String),
    #[error("provider: {0}")]
    Provider(String),
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

/// The largest message a client may APPEND (encrypted, it grows by about a
/// third on its way to the provider).
const MAX_APPEND: u32 = 64 * 1024 * 1024;

fn server_options() -> ServerOptions {
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
/// Only a command too long to skip safely ends the session.
async fn answer_client_error(
    stream: &mut Stream,
    server: &mut Server,
    error: StreamError<ServerError>,
) -> Result<(), SessionError> {
    let discarded = match error {
        StreamError::State(
            ServerError::MalformedMessage { discarded_bytes }
            | ServerError::ExpectedCrlfGotLf { discarded_bytes },
        ) => discarded_bytes,
        StreamError::State(ServerError::LiteralTooLong { .. }) => {
            debug!("client literal over the limit refused");
            return Ok(());
        }
        StreamError::State(ServerError::CommandTooLong { .. }) => {
            if let Ok(bye) = Status::bye(None, "Command too long; this session ends") {
                let last = server.enqueue_status(bye);
                deliver(stream, server, last).await;
            }
            return Err(SessionError::Client("command too long".into()));
        }
        other => return Err(SessionError::Client(other.to_string())),
    };
    let bytes = discarded.declassify();
    let tag = bytes
        .split(|b| *b == b' ')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| Tag::try_from(t.to_string()).ok());
    let why = "Unknown or malformed command; nothing was done";
    if let Ok(bad) = Status::bad(tag, None, why) {
        server.enqueue_status(bad);
    }
    debug!("malformed client command answered with BAD");
    Ok(())
}

fn text(s: &str) -> Text<'static> {
    Text::try_from(s.to_string()).unwrap_or_else(|_| Text::unvalidated("..."))
}

fn tagged(
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

async fn serve(tcp: TcpStream, shared: Arc<Shared>) -> Result<(), SessionError> {
    let _ = tcp.set_nodelay(true);
    // After STARTTLS, imap-next's greeting is an untagged OK with the new
    // capabilities, which clients take as such (RFC 3501, 7.1).
    let (mut client_stream, ready) = match &shared.config.tls {
        None => (Stream::insecure(tcp), "Letterlock gateway ready"),
        Some(tls) => {
            let tls = negotiate(tcp, Arc::clone(tls))
                .await
                .map_err(|e| SessionError::Client(e.to_string()))?;
            (crate::tls_stream(tls.into()), "TLS active")
        }
    };
    let pre_auth = Vec1::try_from(vec![
        Capability::Imap4Rev1,
        Capability::LiteralPlus,
        Capability::Auth(AuthMechanism::Plain),
    ])
    .map_err(|_| SessionError::Client("capabilities".into()))?;
    let greeting = Greeting::ok(Some(Code::Capability(pre_auth.clone())), ready)
        .map_err(|e| SessionError::Client(e.to_string()))?;
    let mut server = Server::new(server_options(), greeting);

    // Not logged in: answer locally until LOGIN or AUTHENTICATE PLAIN
    // succeeds at the provider.
    let mut authenticating: Option<Tag<'static>> = None;
    // Failed logins on this connection, which slow it down on their own.
    let mut failed_here = 0u32;
    let (session, account) = loop {
        let event = match client_stream.next(&mut server).await {
            Ok(event) => event,
            Err(e) => {
                answer_client_error(&mut client_stream, &mut server, e).await?;
                continue;
            }
        };
        let command = match event {
            ServerEvent::CommandReceived { command } => command,
            ServerEvent::CommandAuthenticateReceived {
                command_authenticate,
            } => {
                let tag = command_authenticate.tag;
                if command_authenticate.mechanism != AuthMechanism::Plain {
                    let refusal = tagged(tag, StatusKind::No, None, "Only PLAIN is offered");
                    let _ = server.authenticate_finish(refusal);
                    continue;
                }
                match command_authenticate.initial_response {
                    Some(response) => {
                        let found =
                            authenticate_plain(&shared, response.declassify(), &mut failed_here)
                                .await;
                        match finish_authenticate(&mut server, tag, found) {
                            Some(found) => break found,
                            None => continue,
                        }
                    }
                    None => {
                        if let Ok(empty) = CommandContinuationRequest::basic(None, " ") {
                            let _ = server.authenticate_continue(empty);
                        }
                        authenticating = Some(tag);
                        continue;
                    }
                }
            }
            ServerEvent::AuthenticateDataReceived { authenticate_data } => {
                let Some(tag) = authenticating.take() else {
                    continue;
                };
                let found = match authenticate_data {
                    AuthenticateData::Continue(response) => {
                        authenticate_plain(&shared, response.declassify(), &mut failed_here).await
                    }
                    _ => Err("Authentication cancelled".to_string()),
                };
                match finish_authenticate(&mut server, tag, found) {
                    Some(found) => break found,
                    None => continue,
                }
            }
            _ => continue,
        };
        match command.body {
            CommandBody::Capability => {
                server.enqueue_data(Data::Capability(pre_auth.clone()));
                server.enqueue_status(tagged(command.tag, StatusKind::Ok, None, "CAPABILITY done"));
            }
            CommandBody::Noop => {
                server.enqueue_status(tagged(command.tag, StatusKind::Ok, None, "NOOP done"));
            }
            CommandBody::Logout => {
                if let Ok(bye) = Status::bye(None, "Logging out") {
                    server.enqueue_status(bye);
                }
                let last =
                    server.enqueue_status(tagged(command.tag, StatusKind::Ok, None, "LOGOUT done"));
                deliver(&mut client_stream, &mut server, last).await;
                return Ok(());
            }
            CommandBody::Login { username, password } => {
                let username = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = SecretString::from(
                    String::from_utf8_lossy(password.declassify().as_ref()).into_owned(),
                );
                match login(&shared, &username, &password, &mut failed_here).await {
                    Ok(found) => {
                        info!(account = %found.1.address, "imap login accepted by the provider");
                        server.enqueue_status(tagged(
                            command.tag,
                            StatusKind::Ok,
                            None,
                            "LOGIN completed",
                        ));
                        break found;
                    }
                    Err((code, why)) => {
                        info!(%username, reason = %why, "imap login refused");
                        server.enqueue_status(tagged(
                            command.tag,
                            StatusKind::No,
                            Some(code),
                            &why,
                        ));
                    }
                }
            }
            _ => {
                server.enqueue_status(tagged(
                    command.tag,
                    StatusKind::Bad,
                    None,
                    "Log in first (LOGIN with your provider's user name and password)",
                ));
            }
        }
    };
    let keys = Keys::load(&shared.keystore, &account.address)
        .await
        .map(Arc::new)
        .map_err(|e| SessionError::Provider(format!("keys for {}: {e}", account.address)))?;
    let own = shared
        .keystore
        .identity(&account.address)
        .await
        .map(|identity| Arc::new(identity.cert))
        .map_err(|e| SessionError::Provider(format!("key of {}: {e}", account.address)))?;
    Forwarder {
        shared,
        account,
        keys,
        own,
        session,
        server,
        client_stream,
        queue: VecDeque::new(),
        current: None,
        selected: None,
        next_tag: 1,
        closing: false,
        unsent: 0,
        learned: Default::default(),
    }
    .run()
    .await
}

/// AUTHENTICATE PLAIN (`provider_tls::parse_plain`, the same reading as
/// SMTP's AUTH PLAIN), passed on as a login to the provider.
async fn authenticate_plain(
    shared: &Shared,
    response: &[u8],
    failed_here: &mut u32,
) -> Result<(Session, AccountConfig), String> {
    let plain = provider_tls::parse_plain(response).map_err(|e| e.to_string())?;
    login(shared, &plain.username, &plain.password, failed_here)
        .await
        .map_err(|(_, why)| why)
}

/// Ends an AUTHENTICATE with the provider's verdict; the session on success.
fn finish_authenticate(
    server: &mut Server,
    tag: Tag<'static>,
    found: Result<(Session, AccountConfig), String>,
) -> Option<(Session, AccountConfig)> {
    match found {
        Ok(found) => {
            info!(account = %found.1.address, "imap login accepted by the provider");
            let _ = server.authenticate_finish(tagged(
                tag,
                StatusKind::Ok,
                None,
                "AUTHENTICATE completed",
            ));
            Some(found)
        }
        Err(why) => {
            info!(reason = %why, "imap login refused");
            let _ = server.authenticate_finish(tagged(tag, StatusKind::No, None, &why));
            None
        }
    }
}

/// Sends what is queued for the client up to and including `last`; imap-next
/// writes queued responses only while it is driven.
async fn deliver(stream: &mut Stream, server: &mut Server, last: ResponseHandle) {
    let sending = async {
        loop {
            match stream.next(&mut *server).await {
                Ok(ServerEvent::ResponseSent { handle, .. }) if handle == last => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), sending).await;
}

/// A login, passed on to the provider after the wait that earlier failures
/// for this name and on this connection (`failed_here`) earned
/// ([`keystore::LoginThrottle`]).
async fn login(
    shared: &Shared,
    username: &str,
    password: &SecretString,
    failed_here: &mut u32,
) -> Result<(Session, AccountConfig), (Code<'static>, String)> {
    use secrecy::ExposeSecret as _;
    let throttle = shared.keystore.login_throttle();
    let secret = password.expose_secret().as_bytes();
    let Ok(attempt) = throttle.begin(username, secret, *failed_here, Instant::now()) else {
        *failed_here += 1;
        info!(%username, "imap login turned away: too many attempts for this name are waiting");
        return Err((Code::Alert, busy_sentence()));
    };
    let wait = attempt.wait();
    if !wait.is_zero() {
        info!(%username, wait_secs = wait.as_secs(), "imap login delayed after failed attempts");
        tokio::time::sleep(wait).await;
    }
    let result = login_at_provider(shared, username, password).await;
    match &result {
        Ok(_) => attempt.succeeded(),
        Err((_, LoginFailure::Refused, _)) => {
            attempt.refused();
            *failed_here += 1;
        }
        // Not an answer about the password: it does not count.
        Err((_, LoginFailure::Unreachable, _)) => drop(attempt),
    }
    result.map_err(|(code, _, why)| (code, why))
}

/// What a login turned away by the throttle is told.
fn busy_sentence() -> String {
    format!(
        "{} login attempts for this user name are already waiting (failed logins slow down); \
         wait a minute and try again, with the password your provider knows",
        keystore::MAX_WAITING_LOGINS
    )
}

/// Whether a failed login counts against the name.
enum LoginFailure {
    /// Unknown name, or the provider said no.
    Refused,
    /// The provider could not be asked.
    Unreachable,
}

async fn login_at_provider(
    shared: &Shared,
    username: &str,
    password: &SecretString,
) -> Result<(Session, AccountConfig), (Code<'static>, LoginFailure, String)> {
    let Some(account) = shared
        .config
        .accounts
        .iter()
        .find(|a| a.username.eq_ignore_ascii_case(username))
    else {
        return Err((
            Code::Alert,
            LoginFailure::Refused,
            "No account with this user name is set up in the gateway".into(),
        ));
    };
    // One bound for the whole login, however the provider stalls (at the
    // greeting, the TLS handshake, STARTTLS or LOGIN).
    let patience = shared.config.provider_timeout.min(LOGIN_PATIENCE);
    let logged_in = tokio::time::timeout(patience, async {
        let mut session = Session::connect(&account.provider).await.map_err(|e| {
            (
                Code::Alert,
                LoginFailure::Unreachable,
                format!("Cannot reach your provider: {e}"),
            )
        })?;
        match session.login(&account.username, password).await {
            Ok(()) => Ok(session),
            Err(UpstreamError::LoginRejected(why)) => Err((
                Code::Alert,
                LoginFailure::Refused,
                format!("Your provider refused the login: {why}"),
            )),
            Err(e) => Err((
                Code::Alert,
                LoginFailure::Unreachable,
                format!("Cannot log in at your provider: {e}"),
            )),
        }
    })
    .await;
    let session = match logged_in {
        Ok(result) => result?,
        Err(_) => {
            warn!(account = %account.address, secs = patience.as_secs(), "the provider did not complete the login in time");
            return Err((
                Code::Alert,
                LoginFailure::Unreachable,
                format!(
                    "Cannot reach your provider: it did not complete the login within {} seconds; try again later",
                    patience.as_secs()
                ),
            ));
        }
    };
    let mut account = account.clone();
    account.address = autocrypt::normalize_addr(&account.address);
    Ok((session, account))
}

/// The mailbox a client has selected, as archive entries are filed.
#[derive(Debug, Clone)]
struct Selected {
    mailbox: String,
    uidvalidity: Option<u32>,
}

/// The client command being carried out at the provider.
struct Current {
    client_tag: Tag<'static>,
    upstream_tag: Tag<'static>,
    kind: Kind,
    /// The provider has the whole command (imap-next said so).
    sent: bool,
    /// The command holds a literal that waits for the provider's go-ahead
    /// (synchronizing: no LITERAL+ at the provider, or a client's choice).
    awaits_go_ahead: bool,
    /// Untagged answers of the provider's that imap-codec could not read
    /// and the proxy left out ([`unreadable`]); the completion says so.
    unreadable: usize,
}

/// A message of a FETCH response held back until the proxy knows what to
/// answer for it.
struct HeldMessage {
    /// Its sequence number in the client's view of the mailbox.
    seq: NonZeroU32,
    uid: u32,
    /// The provider's items for it.
    items: Vec<MessageDataItem<'static>>,
}

enum Kind {
    Fetch {
        requested: Vec<MessageDataItemName<'static>>,
        /// Messages the gateway serves, waiting for one archive query for
        /// up to [`LOOKUP_BATCH`] of them.
        lookup: Vec<HeldMessage>,
        /// Messages the gateway serves but has not archived yet.
        missing: Vec<HeldMessage>,
        /// Sent without the detection items: a FETCH of sizes in a mailbox
        /// whose messages were told apart before ([`PlainMessages`]).
        deferred: bool,
        /// With `deferred`: messages neither known plain nor archived,
        /// told apart once the FETCH is done.
        undetected: Vec<HeldMessage>,
        /// Without `deferred`: the UIDs the detection items showed plain.
        plain_seen: Vec<u32>,
    },
    Select {
        mailbox: String,
        uidvalidity: Option<u32>,
    },
    Idle,
    Logout,
    Other,
}

struct Forwarder {
    shared: Arc<Shared>,
    account: AccountConfig,
    keys: Arc<Keys>,
    /// The account's key pair: what the client stores is encrypted to it.
    own: Arc<sequoia_openpgp::Cert>,
    session: Session,
    server: Server,
    client_stream: Stream,
    queue: VecDeque<Pending>,
    current: Option<Current>,
    selected: Option<Selected>,
    next_tag: u64,
    /// The provider said BYE.
    closing: bool,
    /// Responses queued for the client and not yet written.
    unsent: usize,
    /// UIDs of the selected mailbox whose Autocrypt header was applied.
    learned: std::collections::HashSet<u32>,
}

/// A client request waiting its turn at the provider.
enum Pending {
    Command(Command<'static>),
    /// IDLE (RFC 2177), carried through to the provider.
    Idle(Tag<'static>),
}

enum Step {
    FromClient(ServerEvent),
    FromProvider(ClientEvent),
}

impl Forwarder {
    async fn run(mut self) -> Result<(), SessionError> {
        let patience = self.shared.config.provider_timeout;
        let mut provider_heard = tokio::time::Instant::now();
        let mut was_waiting = false;
        loop {
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
            let step = {
                let (up_stream, up_client) = self.session.parts();
                tokio::select! {
                    _ = tokio::time::sleep_until(provider_heard + patience), if waiting => {
                        warn!(account = %self.account.address, seconds = patience.as_secs(), "provider stopped answering");
                        if let Ok(bye) = Status::bye(None, "Your provider stopped answering; this session ends, please reconnect") {
                            let last = self.server.enqueue_status(bye);
                            deliver(&mut self.client_stream, &mut self.server, last).await;
                        }
                        return Err(SessionError::Provider(format!("silent for {} s", patience.as_secs())));
                    }
                    event = self.client_stream.next(&mut self.server) => {
                        match event {
                            Ok(event) => Step::FromClient(event),
                            Err(e) => {
                                answer_client_error(&mut self.client_stream, &mut self.server, e).await?;
                                continue;
                            }
                        }
                    }
                    // Backpressure: a slow client stops the reading of more
                    // provider data until it has taken what is queued.
                    event = up_stream.next(up_client), if self.unsent <= MAX_UNSENT => match event {
                        Ok(event) => Step::FromProvider(event),
                        Err(e) if unreadable(&e) => {
                            // One answer imap-codec cannot read (a structure
                            // nested deeper than it reads, a server's own
                            // dialect): left out, the session goes on, and
                            // the command's completion says so. Its bytes may
                            // be message text: never logged.
                            warn!(account = %self.account.address, "left out an answer of the provider's that the gateway cannot read");
                            if let Some(current) = self.current.as_mut() {
                                current.unreadable += 1;
                            }
                            continue;
                        }
                        Err(e) => {
                            // A provider that hangs up after LOGOUT may lose
                            // its last words (BYE and OK arrive with the TLS
                            // close): the logout happened all the same.
                            if let Some(Current { client_tag, kind: Kind::Logout, .. }) = self.current.take() {
                                if !self.closing {
                                    if let Ok(bye) = Status::bye(None, "Logging out") {
                                        self.server.enqueue_status(bye);
                                    }
                                }
                                let last = self.server.enqueue_status(tagged(client_tag, StatusKind::Ok, None, "LOGOUT completed"));
                                deliver(&mut self.client_stream, &mut self.server, last).await;
                                return Ok(());
                            }
                            // Otherwise tell the client why before hanging up.
                            let why = match &e {
                                StreamError::State(_) => "Your provider sent a response the gateway cannot read (malformed or too large); this session ends, others go on",
                                _ => "The connection to your provider was lost",
                            };
                            warn!(account = %self.account.address, error = %e, "provider session ended");
                            if let Ok(bye) = Status::bye(None, why) {
                                let last = self.server.enqueue_status(bye);
                                deliver(&mut self.client_stream, &mut self.server, last).await;
                            }
                            return Err(SessionError::Provider(e.to_string()));
                        }
                    }
                }
            };
            let from_provider = matches!(step, Step::FromProvider(_));
            match step {
                Step::FromClient(event) => {
                    if self.take_client_event(event) {
                        self.start_next().await;
                    }
                }
                Step::FromProvider(ClientEvent::IdleAccepted {
                    continuation_request,
                    ..
                }) => {
                    if self.server.idle_accept(continuation_request).is_ok() {
                        self.unsent += 1;
                    }
                }
                Step::FromProvider(ClientEvent::IdleRejected { status, .. }) => {
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
                Step::FromProvider(ClientEvent::DataReceived { data }) => {
                    self.on_data(data).await;
                }
                Step::FromProvider(ClientEvent::CommandSent { command, .. }) => {
                    if let Some(current) = self.current.as_mut() {
                        current.sent |= current.upstream_tag == command.tag;
                    }
                }
                Step::FromProvider(ClientEvent::StatusReceived { status }) => {
                    // A completion before a literal's go-ahead is the literal
                    // refused with NO (over quota, too big). imap-next takes
                    // only BAD as a refusal and would wait for the go-ahead
                    // forever, holding every later command: pass the answer
                    // on, then end cleanly.
                    let refused_literal = matches!(
                        (&status, &self.current),
                        (Status::Tagged(Tagged { tag, .. }), Some(c))
                            if *tag == c.upstream_tag && c.awaits_go_ahead && !c.sent
                    );
                    if let Some(last) = self.on_status(status).await? {
                        deliver(&mut self.client_stream, &mut self.server, last).await;
                        return Ok(());
                    }
                    if refused_literal {
                        warn!(account = %self.account.address, "the provider refused a literal with NO; ending the session so that the next starts clean");
                        if let Ok(bye) = Status::bye(None, "Your provider refused that before taking it; this session ends so that the next one starts clean, please reconnect") {
                            let last = self.server.enqueue_status(bye);
                            deliver(&mut self.client_stream, &mut self.server, last).await;
                        }
                        return Err(SessionError::Provider("a literal refused with NO".into()));
                    }
                }
                Step::FromProvider(ClientEvent::CommandRejected { status, .. }) => {
                    self.on_status(status).await?;
                }
                Step::FromProvider(_) => {}
            }
            // Our own work on what the provider sent (decrypting a batch)
            // is not the provider's silence.
            if from_provider {
                provider_heard = tokio::time::Instant::now();
            }
        }
    }

    /// Sends the next queued client command, if none is running.
    async fn start_next(&mut self) {
        while self.current.is_none() {
            let mut command = match self.queue.pop_front() {
                None => return,
                Some(Pending::Command(command)) => command,
                Some(Pending::Idle(client_tag)) => {
                    let upstream_tag = self.upstream_tag();
                    let (_, up_client) = self.session.parts();
                    up_client.enqueue_command(Command {
                        tag: upstream_tag.clone(),
                        body: CommandBody::Idle,
                    });
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
            if let Some(refusal) = refuse(&command.body) {
                self.server
                    .enqueue_status(tagged(client_tag, StatusKind::No, None, refusal));
                continue;
            }
            if let CommandBody::Search { criteria, .. } = &mut command.body {
                self.search_encrypted(criteria).await;
            }
            let awaits_go_ahead;
            if let CommandBody::Append { message, .. } = &mut command.body {
                match self.protect(message).await {
                    Ok(()) => {}
                    Err(why) => {
                        warn!(reason = %why, "APPEND refused: the message could not be encrypted");
                        let text = format!("Not saved: the message could not be encrypted ({why}); nothing was stored");
                        self.server
                            .enqueue_status(tagged(client_tag, StatusKind::No, None, &text));
                        continue;
                    }
                }
                // Without waiting for a go-ahead where the provider allows
                // it: it then reads the whole message before it answers, and
                // a refusal (out of space) is an ordinary NO. A refused
                // go-ahead is one imap-next does not understand (below).
                let len = match message {
                    LiteralOrLiteral8::Literal(l) => l.data().len(),
                    LiteralOrLiteral8::Literal8(l) => l.data.len(),
                };
                let mode = if self.session.takes_non_sync_literal(len) {
                    LiteralMode::NonSync
                } else {
                    LiteralMode::Sync
                };
                match message {
                    LiteralOrLiteral8::Literal(l) => l.set_mode(mode),
                    LiteralOrLiteral8::Literal8(l) => l.mode = mode,
                }
                awaits_go_ahead = mode == LiteralMode::Sync;
            } else {
                let literals = Literals::of(&command, &self.session);
                if literals.non_sync_refused {
                    let text = "Your provider does not take this literal without a go-ahead (LITERAL+); send it as an ordinary literal";
                    self.server
                        .enqueue_status(tagged(client_tag, StatusKind::Bad, None, text));
                    continue;
                }
                awaits_go_ahead = literals.sync;
            }
            let kind = match &mut command.body {
                CommandBody::Fetch {
                    macro_or_item_names,
                    uid,
                    ..
                } => {
                    let mut requested = match macro_or_item_names {
                        MacroOrMessageDataItemNames::Macro(m) => {
                            m.expand().into_iter().map(to_static).collect()
                        }
                        MacroOrMessageDataItemNames::MessageDataItemNames(names) => {
                            names.iter().cloned().map(to_static).collect::<Vec<_>>()
                        }
                    };
                    if *uid {
                        requested.push(MessageDataItemName::Uid);
                    }
                    let mut names = requested.clone();
                    // UID, FLAGS and INTERNALDATE are the provider's for
                    // every message: nothing to detect or look up (a
                    // client's flag refresh of a whole mailbox stays cheap).
                    // Sizes in a mailbox told apart before come from what
                    // is known; only new messages are detected, afterwards.
                    let need = needs(&requested);
                    let deferred = need == Needs::Size
                        && self
                            .mailbox_key()
                            .is_some_and(|key| self.shared.plain.knows(&key));
                    if need != Needs::Nothing && !deferred {
                        names.extend(detect::items());
                    }
                    // The UID files the message in the archive; the client
                    // sees it only if it asked (or used UID FETCH).
                    if !names.contains(&MessageDataItemName::Uid) {
                        names.push(MessageDataItemName::Uid);
                    }
                    *macro_or_item_names = MacroOrMessageDataItemNames::MessageDataItemNames(names);
                    Kind::Fetch {
                        requested,
                        lookup: Vec::new(),
                        missing: Vec::new(),
                        deferred,
                        undetected: Vec::new(),
                        plain_seen: Vec::new(),
                    }
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
            if matches!(kind, Kind::Select { .. }) {
                // A new SELECT deselects at once, whatever its outcome.
                self.selected = None;
                self.learned.clear();
            }
            let upstream_tag = self.upstream_tag();
            command.tag = upstream_tag.clone();
            let (_, up_client) = self.session.parts();
            up_client.enqueue_command(command);
            self.current = Some(Current {
                client_tag,
                upstream_tag,
                kind,
                sent: false,
                awaits_go_ahead,
                unreadable: 0,
            });
        }
    }

    async fn on_data(&mut self, data: Data<'static>) {
        match data {
            Data::Capability(caps) => {
                let kept: Vec<Capability<'static>> = caps
                    .into_iter()
                    .filter(|c| KEPT.contains(&c.to_string().to_ascii_uppercase().as_str()))
                    .collect();
                if let Ok(kept) = Vec1::try_from(kept) {
                    self.send_data(Data::Capability(kept));
                }
            }
            Data::Fetch { seq, items } => self.on_fetch(seq, items.into_inner()).await,
            other => {
                self.send_data(other);
            }
        }
    }

    async fn on_fetch(&mut self, seq: NonZeroU32, items: Vec<MessageDataItem<'static>>) {
        let (requested, deferred) = match &self.current {
            Some(Current {
                kind:
                    Kind::Fetch {
                        requested,
                        deferred,
                        ..
                    },
                ..
            }) => (requested.clone(), *deferred),
            // Unsolicited (flag changes): nothing to rewrite.
            _ => {
                if let Ok(items) = Vec1::try_from(items) {
                    self.send_data(Data::Fetch { seq, items });
                }
                return;
            }
        };
        let uid = items.iter().find_map(|i| match i {
            MessageDataItem::Uid(u) => Some(u.get()),
            _ => None,
        });
        let (header, prefix) = detect::found_in(&items);
        let gateway = match (&header, &prefix) {
            (Some(h), Some(p)) => served_by_gateway(h, p),
            _ => false,
        } || detect::carries_status_header(&items);
        if !gateway && !deferred {
            if let (Some(header), Some(uid)) = (&header, uid) {
                self.learn_from_header(uid, header).await;
                if prefix.is_some() {
                    if let Some(Current {
                        kind: Kind::Fetch { plain_seen, .. },
                        ..
                    }) = &mut self.current
                    {
                        plain_seen.push(uid);
                    }
                }
            }
            self.send_plain(seq, items, &requested);
            return;
        }
        let Some(uid) = uid else {
            return;
        };
        let full = match &mut self.current {
            Some(Current {
                kind: Kind::Fetch { lookup, .. },
                ..
            }) => {
                lookup.push(HeldMessage { seq, uid, items });
                lookup.len() >= LOOKUP_BATCH
            }
            _ => false,
        };
        if full {
            self.flush_lookups().await;
        }
    }

    /// Cleartext mail passing through teaches keys too (its Autocrypt
    /// header; trust on first use), once per message and session.
    async fn learn_from_header(&mut self, uid: u32, header: &[u8]) {
        let has_autocrypt = letterlock_mime::header::fields(header)
            .iter()
            .any(|f| f.is("Autocrypt"));
        if !has_autocrypt || !self.learned.insert(uid) {
            return;
        }
        let lessons = Lessons::of(header, Vec::new(), SystemTime::now());
        if let Err(e) = learn(
            &self.shared.keystore,
            &self.account.address,
            &lessons,
            SystemTime::now(),
        )
        .await
        {
            warn!(uid, error = %e, "keys from this message not recorded");
        }
    }

    /// Answers the messages waiting for the archive: one query for all;
    /// found ones are rewritten, whole-message answers are viewed now (no
    /// second trip), the rest wait for the end of the command without
    /// their bytes (a mailbox-wide FETCH must not pile up bodies).
    async fn flush_lookups(&mut self) {
        let (requested, waiting, deferred) = match &mut self.current {
            Some(Current {
                kind:
                    Kind::Fetch {
                        requested,
                        lookup,
                        deferred,
                        ..
                    },
                ..
            }) => (requested.clone(), std::mem::take(lookup), *deferred),
            _ => return,
        };
        if waiting.is_empty() {
            return;
        }
        if deferred {
            self.answer_known(&requested, waiting).await;
            return;
        }
        let uids: Vec<u32> = waiting.iter().map(|m| m.uid).collect();
        let waiting = if needs(&requested) == Needs::Size {
            self.answer_sizes(&requested, waiting, &uids).await
        } else {
            waiting
        };
        if waiting.is_empty() {
            return;
        }
        let uids: Vec<u32> = waiting.iter().map(|m| m.uid).collect();
        let found = self.archived_messages(&uids).await;
        let mut to_view = Vec::new();
        let mut viewed_items = Vec::new();
        let mut missing_now = Vec::new();
        for HeldMessage { seq, uid, items } in waiting {
            if let Some(served) = found.get(&uid) {
                self.send_rewritten(seq, items, &requested, served);
            } else if let Some(whole) = whole_message(&items) {
                to_view.push((uid, whole));
                viewed_items.push(HeldMessage {
                    seq,
                    uid,
                    items: lighten(items),
                });
            } else {
                missing_now.push(HeldMessage {
                    seq,
                    uid,
                    items: lighten(items),
                });
            }
        }
        if !to_view.is_empty() {
            let served = self.view_many(to_view).await;
            for HeldMessage { seq, uid, items } in viewed_items {
                if let Some((_, bytes)) = served.iter().find(|(u, _)| *u == uid) {
                    self.send_rewritten(seq, items, &requested, bytes);
                }
            }
        }
        if let Some(Current {
            kind: Kind::Fetch { missing, .. },
            ..
        }) = &mut self.current
        {
            missing.extend(missing_now);
        }
    }

    /// For a deferred FETCH of sizes: answers for the messages known plain
    /// (the provider's items) and those archived (the archive's sizes);
    /// the rest waits for detection after the FETCH.
    async fn answer_known(
        &mut self,
        requested: &[MessageDataItemName<'static>],
        waiting: Vec<HeldMessage>,
    ) {
        let uids: Vec<u32> = waiting.iter().map(|m| m.uid).collect();
        let plain = match self.mailbox_key() {
            Some(key) => self.shared.plain.plain_among(&key, &uids),
            None => Default::default(),
        };
        let mut rest = Vec::new();
        for HeldMessage { seq, uid, items } in waiting {
            if plain.contains(&uid) {
                self.send_plain(seq, items, requested);
            } else {
                rest.push(HeldMessage { seq, uid, items });
            }
        }
        let uids: Vec<u32> = rest.iter().map(|m| m.uid).collect();
        let rest = self.answer_sizes(requested, rest, &uids).await;
        if let Some(Current {
            kind: Kind::Fetch { undetected, .. },
            ..
        }) = &mut self.current
        {
            undetected.extend(rest);
        }
    }

    /// Tells apart the messages a deferred FETCH did not know, answers for
    /// the plain ones and returns those the gateway serves (to be answered
    /// like any missing from the archive).
    async fn detect_and_answer(
        &mut self,
        requested: &[MessageDataItemName<'static>],
        undetected: Vec<HeldMessage>,
    ) -> Result<Vec<HeldMessage>, SessionError> {
        let mut served = Vec::new();
        let mut undetected = undetected.into_iter().peekable();
        while undetected.peek().is_some() {
            let batch: Vec<_> = undetected.by_ref().take(MISSING_BATCH).collect();
            let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
            let found: std::collections::HashMap<u32, crate::upstream::Detection> = self
                .session
                .fetch_detection(&uids)
                .await
                .map_err(|e| SessionError::Provider(e.to_string()))?
                .into_iter()
                .map(|d| (d.uid, d))
                .collect();
            let mut plain = Vec::new();
            for HeldMessage { seq, uid, items } in batch {
                // Expunged meanwhile: nothing to say about it.
                let Some(detection) = found.get(&uid) else {
                    continue;
                };
                if served_by_gateway(&detection.header, &detection.prefix) {
                    served.push(HeldMessage { seq, uid, items });
                } else {
                    self.learn_from_header(uid, &detection.header).await;
                    plain.push(uid);
                    self.send_plain(seq, items, requested);
                }
            }
            if let Some(key) = self.mailbox_key() {
                self.shared.plain.record(&key, plain);
            }
            self.drain_client().await?;
        }
        Ok(served)
    }

    /// Answers with the provider's own items for a message passed through.
    fn send_plain(
        &mut self,
        seq: NonZeroU32,
        items: Vec<MessageDataItem<'static>>,
        requested: &[MessageDataItemName<'static>],
    ) {
        let kept: Vec<_> = items
            .into_iter()
            .filter(|i| keep_plain(i, requested))
            .collect();
        if let Ok(items) = Vec1::try_from(kept) {
            self.send_data(Data::Fetch { seq, items });
        }
    }

    /// The selected mailbox, as [`PlainMessages`] files it.
    fn mailbox_key(&self) -> Option<MailboxKey> {
        let selected = self.selected.as_ref()?;
        Some(MailboxKey {
            account: self.account.address.clone(),
            mailbox: selected.mailbox.clone(),
            uidvalidity: selected.uidvalidity?,
        })
    }

    /// Answers from the archive's sizes alone where the client asked for no
    /// content but RFC822.SIZE (Thunderbird's mailbox sync asks for that
    /// on every message); returns the messages not archived yet.
    async fn answer_sizes(
        &mut self,
        requested: &[MessageDataItemName<'static>],
        waiting: Vec<HeldMessage>,
        uids: &[u32],
    ) -> Vec<HeldMessage> {
        let Some(Selected {
            mailbox,
            uidvalidity: Some(uidvalidity),
        }) = &self.selected
        else {
            return waiting;
        };
        let sizes: std::collections::HashMap<u32, u32> = match self
            .shared
            .archive
            .sizes_at(&self.account.address, mailbox, *uidvalidity, uids)
            .await
        {
            Ok(sizes) => sizes.into_iter().collect(),
            Err(e) => {
                warn!(error = %e, "archive lookup failed");
                return waiting;
            }
        };
        let mut rest = Vec::new();
        for HeldMessage { seq, uid, items } in waiting {
            match sizes.get(&uid) {
                Some(&size) => {
                    if let Ok(items) = Vec1::try_from(rewrite_size(items, requested, size)) {
                        self.send_data(Data::Fetch { seq, items });
                    }
                }
                None => rest.push(HeldMessage { seq, uid, items }),
            }
        }
        rest
    }

    /// Rewrites the text criteria of a SEARCH so that encrypted messages are
    /// judged by their decrypted text ([`crate::search`]). Messages count
    /// once the gateway has archived them (read through the proxy, or
    /// `gateway archive sync`).
    async fn search_encrypted(&mut self, criteria: &mut Vec1<SearchKey<'static>>) {
        if !criteria.as_ref().iter().any(has_text) {
            return;
        }
        let Some(selected) = self.selected.clone() else {
            return;
        };
        let Some(uidvalidity) = selected.uidvalidity else {
            return;
        };
        let archive = &self.shared.archive;
        let uids = match archive
            .encrypted_uids(&self.account.address, &selected.mailbox, uidvalidity)
            .await
        {
            Ok(uids) => uids,
            Err(e) => {
                warn!(error = %e, "archive lookup for SEARCH failed");
                return;
            }
        };
        let Some(encrypted) = uid_set(&uids) else {
            return;
        };
        let mut served = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(LOOKUP_BATCH) {
            match archive
                .messages_at(&self.account.address, &selected.mailbox, uidvalidity, chunk)
                .await
            {
                Ok(found) => served.extend(found),
                Err(e) => warn!(error = %e, "archive lookup for SEARCH failed"),
            }
        }
        let keys = std::mem::replace(criteria, Vec1::from(SearchKey::All));
        let rewritten: Vec<SearchKey<'static>> = keys
            .into_iter()
            .map(|key| {
                rewrite_search(key, &encrypted, &mut |text| {
                    served
                        .iter()
                        .filter(|(_, bytes)| matches(text, bytes))
                        .map(|(uid, _)| *uid)
                        .collect()
                })
            })
            .collect();
        if let Ok(rewritten) = Vec1::try_from(rewritten) {
            *criteria = rewritten;
        }
    }

    /// A fresh tag for the provider; client tags are never reused there.
    fn upstream_tag(&mut self) -> Tag<'static> {
        let tag = Tag::unvalidated(format!("G{}", self.next_tag));
        self.next_tag += 1;
        tag
    }

    /// Encrypts a message the client stores (Drafts, Sent, any mailbox) to
    /// the account's own key, with header protection, unless it is
    /// encrypted already. Fail closed: on any error nothing is stored.
    async fn protect(&self, message: &mut LiteralOrLiteral8<'static>) -> Result<(), String> {
        let bytes = match message {
            LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
            LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
        };
        if already_encrypted(&bytes) {
            return Ok(());
        }
        let own = Arc::clone(&self.own);
        let encrypted = tokio::task::spawn_blocking(move || {
            let request = EncryptRequest {
                sender: &own,
                recipients: &[],
                autocrypt: None,
                gossip: &[],
                hide_recipients: false,
                pad: true,
                now: SystemTime::now(),
                boundary: Boundary::Random,
            };
            mailcrypt::encrypt(&bytes, &request)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        *message =
            LiteralOrLiteral8::Literal(Literal::try_from(encrypted).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn send_rewritten(
        &mut self,
        seq: NonZeroU32,
        items: Vec<MessageDataItem<'static>>,
        requested: &[MessageDataItemName<'static>],
        served: &[u8],
    ) {
        let rewritten = rewrite(items, requested, served);
        if let Ok(items) = Vec1::try_from(rewritten) {
            self.send_data(Data::Fetch { seq, items });
        }
    }

    fn location(&self, uid: u32) -> Option<Location> {
        let selected = self.selected.as_ref()?;
        Some(Location {
            account: self.account.address.clone(),
            mailbox: selected.mailbox.clone(),
            uidvalidity: selected.uidvalidity?,
            uid,
        })
    }

    /// Downloads, views and archives the messages a FETCH found missing,
    /// then answers for them. A message another session is downloading
    /// right now (new mail, several sessions open) is not downloaded again:
    /// this session waits for it and reads the archive ([`Downloads`]).
    async fn fill_missing(
        &mut self,
        requested: &[MessageDataItemName<'static>],
        missing: Vec<HeldMessage>,
    ) -> Result<(), SessionError> {
        // In batches, so that memory stays bounded whatever the mailbox.
        let mut missing = missing.into_iter().peekable();
        while missing.peek().is_some() {
            let mut mine = Vec::new();
            let mut claims = Vec::new();
            let mut theirs = Vec::new();
            for entry in missing.by_ref().take(MISSING_BATCH) {
                match self
                    .location(entry.uid)
                    .map(|l| self.shared.downloads.claim(&l))
                {
                    Some(Claim::Theirs(receiver)) => theirs.push((entry, receiver)),
                    Some(Claim::Mine(claim)) => {
                        claims.push(claim);
                        mine.push(entry);
                    }
                    None => mine.push(entry),
                }
            }
            self.download_and_answer(requested, mine).await?;
            // Released before waiting for anyone, so sessions never wait
            // on each other in a circle.
            drop(claims);
            if !theirs.is_empty() {
                debug!(
                    messages = theirs.len(),
                    "waiting for messages another session is downloading"
                );
                let (entries, receivers): (Vec<_>, Vec<_>) = theirs.into_iter().unzip();
                let all_released = async {
                    for receiver in receivers {
                        until_released(receiver).await;
                    }
                };
                // A stalled download elsewhere must not stall this client
                // for longer than a download of its own would take.
                let _ = tokio::time::timeout(CLAIM_WAIT, all_released).await;
                let uids: Vec<u32> = entries.iter().map(|m| m.uid).collect();
                let found = self.archived_messages(&uids).await;
                let mut not_archived = Vec::new();
                for HeldMessage { seq, uid, items } in entries {
                    match found.get(&uid) {
                        Some(served) => self.send_rewritten(seq, items, requested, served),
                        None => not_archived.push(HeldMessage { seq, uid, items }),
                    }
                }
                self.download_and_answer(requested, not_archived).await?;
            }
            self.drain_client().await?;
        }
        Ok(())
    }

    /// Downloads, views and archives messages, and answers for them.
    async fn download_and_answer(
        &mut self,
        requested: &[MessageDataItemName<'static>],
        batch: Vec<HeldMessage>,
    ) -> Result<(), SessionError> {
        if batch.is_empty() {
            return Ok(());
        }
        let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
        let fetched = self
            .session
            .fetch_messages(&uids)
            .await
            .map_err(|e| SessionError::Provider(e.to_string()))?;
        let served = self.view_many(fetched).await;
        for HeldMessage { seq, uid, items } in batch {
            let Some((_, bytes)) = served.iter().find(|(u, _)| *u == uid) else {
                continue;
            };
            self.send_rewritten(seq, items, requested, bytes);
        }
        Ok(())
    }

    /// The archived messages of the selected mailbox with these UIDs.
    async fn archived_messages(&self, uids: &[u32]) -> std::collections::HashMap<u32, Vec<u8>> {
        let Some(Selected {
            mailbox,
            uidvalidity: Some(uidvalidity),
        }) = &self.selected
        else {
            return Default::default();
        };
        self.shared
            .archive
            .messages_at(&self.account.address, mailbox, *uidvalidity, uids)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "archive lookup failed");
                Vec::new()
            })
            .into_iter()
            .collect()
    }

    /// Takes one event from the client, the same wherever the session reads
    /// the client (its loop, or while draining a long answer): commands and
    /// IDLE are queued, never dropped; a second login is refused; a sent
    /// response is counted off. Whether a command was queued.
    fn take_client_event(&mut self, event: ServerEvent) -> bool {
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
                let (_, up_client) = self.session.parts();
                let _ = up_client.set_idle_done();
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

    /// Queues data for the client, counted until imap-next reports it sent:
    /// the backpressure that stops reading the provider while a slow client
    /// has [`MAX_UNSENT`] responses waiting. Every response of a running
    /// session is queued through here or [`Forwarder::send_status`].
    fn send_data(&mut self, data: Data<'static>) {
        self.server.enqueue_data(data);
        self.unsent += 1;
    }

    /// Queues a status for the client, counted like [`Forwarder::send_data`].
    fn send_status(&mut self, status: Status<'static>) -> ResponseHandle {
        self.unsent += 1;
        self.server.enqueue_status(status)
    }

    /// Writes queued responses until few are left; commands the client
    /// pipelines meanwhile wait their turn.
    async fn drain_client(&mut self) -> Result<(), SessionError> {
        while self.unsent > MAX_UNSENT / 2 {
            match self.client_stream.next(&mut self.server).await {
                // Commands (IDLE too) wait in the queue for their turn.
                Ok(event) => {
                    self.take_client_event(event);
                }
                Err(e) => return Err(SessionError::Client(e.to_string())),
            }
        }
        Ok(())
    }

    /// Views and archives provider messages, decrypting on the blocking
    /// pool two per core while earlier results are stored; returns the
    /// served bytes per UID (in completion order). A message another
    /// session is viewing right now (new mail, with many sessions open) is
    /// not viewed twice: both wait for the one view ([`InFlight`]).
    async fn view_many(&self, messages: Vec<(u32, Vec<u8>)>) -> Vec<(u32, Vec<u8>)> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let mut served = Vec::with_capacity(messages.len());
        let mut running = JoinSet::new();
        let mut pending = messages.into_iter();
        loop {
            while running.len() < workers {
                let Some((uid, bytes)) = pending.next() else {
                    break;
                };
                let hash = content_hash(&bytes);
                // The same provider bytes elsewhere (a copied or moved
                // message, a UIDVALIDITY change): link, decrypt nothing.
                if let Some(loc) = self.location(uid) {
                    if let Ok(true) = self.shared.archive.link(&loc, &hash).await {
                        if let Ok(Some(frozen)) = self.shared.archive.message_at(&loc).await {
                            served.push((uid, frozen));
                            continue;
                        }
                    }
                }
                let key = (self.account.address.clone(), hash);
                let cell = self.shared.in_flight.cell(&key);
                let job = ViewJob {
                    keystore: self.shared.keystore.clone(),
                    archive: self.shared.archive.clone(),
                    account: self.account.address.clone(),
                    keys: Arc::clone(&self.keys),
                    bytes,
                    hash,
                    location: self.location(uid),
                };
                running.spawn(async move {
                    let viewed = cell
                        .get_or_init(|| view_learn_and_archive(job))
                        .await
                        .clone();
                    (uid, key, viewed)
                });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let Ok((uid, key, viewed)) = done else {
                warn!("a message could not be viewed");
                continue;
            };
            let Some(viewed) = viewed else {
                // The viewer panicked: that message is not served.
                self.shared.in_flight.finish(&key);
                warn!(uid, "a message could not be viewed");
                continue;
            };
            let Some(loc) = self.location(uid) else {
                self.shared.in_flight.finish(&key);
                served.push((uid, viewed.view.message.clone()));
                continue;
            };
            // Viewed for another mailbox (a copy): linked here too.
            if viewed.archived_at.as_ref() != Some(&loc) {
                if let Err(e) = self
                    .shared
                    .archive
                    .store_prepared(&loc, &key.1, &viewed.prepared, viewed.view.encrypted)
                    .await
                {
                    warn!(uid, error = %e, "message not archived");
                }
            }
            // Archived (or not archivable): later sessions look there.
            self.shared.in_flight.finish(&key);
            // Another session may have archived it first: serve what is frozen.
            match self.shared.archive.message_at(&loc).await {
                Ok(Some(frozen)) => served.push((uid, frozen)),
                _ => served.push((uid, viewed.view.message.clone())),
            }
        }
        served
    }

    /// A status from the provider. Returns the last response for the client
    /// when the session is over.
    async fn on_status(
        &mut self,
        status: Status<'static>,
    ) -> Result<Option<ResponseHandle>, SessionError> {
        match status {
            Status::Tagged(Tagged { tag, body }) => {
                if matches!(&self.current, Some(c) if c.upstream_tag == tag) {
                    self.flush_lookups().await;
                }
                let Some(current) = self.current.take() else {
                    return Ok(None);
                };
                if tag != current.upstream_tag {
                    self.current = Some(current);
                    return Ok(None);
                }
                // A failed SELECT leaves no mailbox selected (RFC 3501
                // 6.3.1), so an unreadable answer to one is a warning, not
                // a NO that would put the client out of step.
                let selecting = matches!(current.kind, Kind::Select { .. });
                match current.kind {
                    Kind::Fetch {
                        requested,
                        mut missing,
                        deferred,
                        undetected,
                        plain_seen,
                        ..
                    } => {
                        if !deferred && needs(&requested) != Needs::Nothing {
                            if let Some(key) = self.mailbox_key() {
                                self.shared.plain.record(&key, plain_seen);
                            }
                        }
                        if !undetected.is_empty() {
                            let served = self.detect_and_answer(&requested, undetected).await?;
                            missing.extend(served);
                        }
                        if !missing.is_empty() {
                            self.fill_missing(&requested, missing).await?;
                        }
                    }
                    Kind::Select {
                        mailbox,
                        uidvalidity,
                    } => {
                        if body.kind == StatusKind::Ok {
                            self.selected = Some(Selected {
                                mailbox,
                                uidvalidity,
                            });
                        }
                    }
                    Kind::Idle | Kind::Logout | Kind::Other => {}
                }
                let code = body.code.and_then(filter_code);
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
                let code = body.code.clone().and_then(filter_code);
                self.server
                    .enqueue_status(Status::Untagged(StatusBody { code, ..body }));
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

/// Responses queued for a client before the proxy stops reading from the
/// provider (bounded memory with a slow client).
const MAX_UNSENT: usize = 64;

/// Messages looked up in the archive with one query.
const LOOKUP_BATCH: usize = 100;

/// Messages downloaded per command when a FETCH found them missing from
/// the archive.
const MISSING_BATCH: usize = 100;

/// How long a session waits for messages another session is downloading
/// before it downloads them itself.
const CLAIM_WAIT: Duration = Duration::from_secs(30);

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

/// The whole message, if the provider's answer carries it (`BODY[]`,
/// `RFC822`).
fn whole_message(items: &[MessageDataItem<'_>]) -> Option<Vec<u8>> {
    items.iter().find_map(|item| match item {
        MessageDataItem::BodyExt {
            section: None,
            origin: None,
            data,
        }
        | MessageDataItem::Rfc822(data) => {
            data.0.as_ref().map(|d| d.clone().into_inner().into_owned())
        }
        _ => None,
    })
}

/// The provider's items without the bytes [`crate::fetch::rewrite`]
/// replaces anyway.
fn lighten(items: Vec<MessageDataItem<'static>>) -> Vec<MessageDataItem<'static>> {
    items
        .into_iter()
        .map(|item| match item {
            MessageDataItem::BodyExt {
                section, origin, ..
            } => MessageDataItem::BodyExt {
                section,
                origin,
                data: NString::NIL,
            },
            MessageDataItem::Rfc822(_) => MessageDataItem::Rfc822(NString::NIL),
            MessageDataItem::Rfc822Header(_) => MessageDataItem::Rfc822Header(NString::NIL),
            MessageDataItem::Rfc822Text(_) => MessageDataItem::Rfc822Text(NString::NIL),
            other => other,
        })
        .collect()
}

/// Commands the proxy does not carry, with the reason the client is told.
fn refuse(body: &CommandBody<'_>) -> Option<&'static str> {
    match body {
        CommandBody::Compress { .. } => Some("COMPRESS is not offered"),
        _ => None,
    }
}

/// The capability list inside a status is filtered like CAPABILITY.
fn filter_code(code: Code<'static>) -> Option<Code<'static>> {
    match code {
        Code::Capability(caps) => {
            let kept: Vec<Capability<'static>> = caps
                .into_iter()
                .filter(|c| KEPT.contains(&c.to_string().to_ascii_uppercase().as_str()))
                .collect();
            Vec1::try_from(kept).ok().map(Code::Capability)
        }
        other => Some(other),
    }
}

/// For a message passed through: the provider's items, minus the proxy's
/// detection items unless the client asked for the same ones.
fn keep_plain(item: &MessageDataItem<'_>, requested: &[MessageDataItemName<'_>]) -> bool {
    match item {
        MessageDataItem::BodyExt {
            section, origin, ..
        } => requested.iter().any(|n| {
            matches!(n, MessageDataItemName::BodyExt { section: s, partial: p, .. }
                if same_section(s, section) && p.map(|(o, _)| o) == *origin)
        }),
        MessageDataItem::Uid(_) => requested.contains(&MessageDataItemName::Uid),
        _ => true,
    }
}

/// PGP/MIME at the root, or a whole-body inline PGP message.
fn already_encrypted(message: &[u8]) -> bool {
    let entity = letterlock_mime::entity::Entity::parse(message);
    let content_type = entity.content_type();
    if content_type.is("multipart/encrypted") {
        return true;
    }
    let body = entity.body;
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    content_type.is("text/plain") && body[start..].starts_with(b"-----BEGIN PGP MESSAGE-----")
}

fn to_static(name: MessageDataItemName<'_>) -> MessageDataItemName<'static> {
    use imap_next::imap_types::ToStatic;
    name.to_static()
}

fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}
