//! The client-facing IMAP proxy: a listener and one task per client.
//!
//! A client logs in (LOGIN or AUTHENTICATE PLAIN) with its provider
//! credentials; the login name selects the account and the proxy logs in to
//! the provider with them (the provider's verdict is the client's,
//! [`login`]). From then on the session ([`session`]) forwards the client's
//! commands one at a time, under the provider connection's own tags, and
//! the provider's responses back, with these changes:
//! - capabilities are cut down to what the proxy carries correctly
//!   ([`crate::imap::capabilities`]);
//! - a FETCH is a [`FetchCommand`]: messages the gateway serves itself
//!   (encrypted, signed, or carrying a forged status header) are answered
//!   from the served bytes, which come from the archive or, the first time,
//!   from downloading the message once and ingesting it — so the bytes for a
//!   (mailbox, UIDVALIDITY, UID) never change once served ([`fetch`]);
//! - SEARCH text criteria are rewritten so that encrypted messages are
//!   judged by their decrypted text ([`search`]);
//! - APPEND (Drafts, Sent, any mailbox) stores the message encrypted to the
//!   account's own key, with header protection; if that fails, nothing is
//!   stored ([`append`]). Commands that are not advertised are refused.
//!
//! Every response to the client goes through [`respond`], which counts it
//! until it is written: the backpressure that bounds memory with a slow
//! client. One command at a time keeps the routing of untagged responses
//! simple and correct; the price is that a client's pipelining is not
//! passed on (pipelined commands wait their turn, never dropped).

mod append;
mod fetch;
mod login;
mod respond;
mod search;
mod session;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use archive::Archive;
use imap_next::imap_types::command::Command;
use imap_next::imap_types::core::Tag;
use imap_next::server::Server;
use imap_next::stream::Stream;
use keystore::Keystore;
use net_edge::{BindError, CancellationToken, Listener};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tracing::{debug, Instrument as _};

use crate::downloads::Downloads;
use crate::imap::fetch_command::FetchCommand;
use crate::ingest::SingleFlight;
use crate::plain::PlainMessages;
use crate::upstream::{Endpoint, Session};
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

/// What every session of the listener shares.
struct Shared {
    config: Config,
    keystore: Keystore,
    archive: Archive,
    flights: SingleFlight,
    downloads: Downloads,
    plain: PlainMessages,
}

/// A bound listener, ready to [`Proxy::run`].
pub struct Proxy {
    listener: Listener,
    shared: Arc<Shared>,
}

impl Proxy {
    pub async fn bind(
        config: Config,
        keystore: Keystore,
        archive: Archive,
    ) -> Result<Proxy, BindError> {
        let listener = Listener::bind(config.listen, "imap").await?;
        Ok(Proxy {
            listener,
            shared: Arc::new(Shared {
                config,
                keystore,
                archive,
                flights: SingleFlight::default(),
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

    /// Serves until `shutdown` completes, then ends every session between
    /// commands with a BYE (a command running gets at most `grace` to
    /// finish) and returns.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) {
        let shared = self.shared;
        self.listener
            .serve(shutdown, grace, move |tcp, peer, stop| {
                let shared = Arc::clone(&shared);
                // Every line a session logs names its client's port, so one
                // session can be followed among many.
                let span = tracing::info_span!("imap", client = peer.port());
                async move {
                    if let Err(e) = serve(tcp, shared, stop).await {
                        debug!(%peer, error = %net_edge::describe(&e), "imap session ended");
                    }
                }
                .instrument(span)
            })
            .await;
    }
}

/// What a client is told when the gateway stops.
const SHUTTING_DOWN: &str = "The gateway is shutting down; reconnect in a moment";

/// Why a session ended (the log's word; the client was told in a sentence
/// where it could be).
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("the local TLS handshake failed")]
    LocalTls(#[source] crate::starttls::NegotiationError),
    #[error("the greeting could not be made")]
    Greeting(#[source] imap_next::imap_types::error::ValidationError),
    #[error("the client's connection failed")]
    Client(#[source] imap_next::stream::Error<imap_next::server::Error>),
    #[error("the client sent a command too long to skip")]
    CommandTooLong,
    #[error("the keys of {account} cannot be loaded")]
    Keys {
        account: String,
        #[source]
        source: keystore::KeystoreError,
    },
    #[error("the connection to the provider failed")]
    ProviderStream(#[source] imap_next::stream::Error<imap_next::client::Error>),
    #[error("a command of the gateway's own at the provider failed")]
    Provider(#[from] crate::upstream::UpstreamError),
    #[error("the provider was silent for {0} s while an answer was due")]
    ProviderSilent(u64),
    #[error("the provider refused a literal with NO before its go-ahead")]
    LiteralRefused,
}

/// One client connection: the login, then the session.
async fn serve(
    tcp: TcpStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), SessionError> {
    let Some(logged_in) = login::log_in(tcp, &shared, &stop).await? else {
        return Ok(());
    };
    let login::LoggedIn {
        client_stream,
        server,
        session,
        account,
    } = logged_in;
    let keys = Keys::load(&shared.keystore, &account.address)
        .await
        .map(Arc::new)
        .map_err(|source| SessionError::Keys {
            account: account.address.clone(),
            source,
        })?;
    let own = shared
        .keystore
        .identity(&account.address)
        .await
        .map(|identity| Arc::new(identity.cert))
        .map_err(|source| SessionError::Keys {
            account: account.address.clone(),
            source,
        })?;
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
        closing: false,
        stop,
        unsent: 0,
        learned: HashSet::new(),
    }
    .run()
    .await
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
    /// and the proxy left out; the completion says so.
    unreadable: usize,
}

/// What the session does with a command's answers besides passing them on.
enum Kind {
    Fetch(FetchCommand),
    Select {
        mailbox: String,
        uidvalidity: Option<u32>,
    },
    Idle,
    Logout,
    Other,
}

/// A logged-in session: the client's connection, the provider's, and what
/// the session knows between commands.
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
    /// The provider said BYE.
    closing: bool,
    /// Cancelled when the gateway stops ([`net_edge::Listener`]): the
    /// session then ends once no command runs.
    stop: CancellationToken,
    /// Responses queued for the client and not yet written ([`respond`]).
    unsent: usize,
    /// UIDs of the selected mailbox whose Autocrypt header was applied.
    learned: HashSet<u32>,
}

/// A client request waiting its turn at the provider.
enum Pending {
    Command(Command<'static>),
    /// IDLE (RFC 2177), carried through to the provider.
    Idle(Tag<'static>),
}
