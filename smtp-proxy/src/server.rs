//! The listener and the per-connection loop: the thin I/O around
//! [`Session`].
//!
//! Each accepted connection runs in its own task: bytes from the socket go
//! into the session, its actions are carried out (write, TLS upgrade, login
//! at the provider, prepare and relay a message), and the result goes back
//! into the session. The listener is `net_edge::Listener` (the IMAP side's
//! too): on shutdown it stops accepting, sessions between messages are told
//! 421 and closed, and a message being sent or delivered is finished first
//! (within the grace period).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keystore::{Discovery, Keystore, LoginVerdict};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use net_edge::{BindError, CancellationToken, Listener, LocalCertificate, LocalCertificateError};

use crate::outgoing::{self, Account, OwnKey};
use crate::relay::{Provider, Relay};
use crate::reply::Reply;
use crate::session::{Action, Limits, Options, Session};

/// One account as the SMTP side needs it.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub account: Account,
    /// The login name; it selects the account.
    pub username: String,
    pub provider: Provider,
}

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The name in the greeting.
    pub hostname: String,
    /// The certificate for STARTTLS; `None` offers no STARTTLS.
    pub tls: Option<LocalCertificate>,
    pub limits: Limits,
    /// A client silent for this long is disconnected (RFC 5321 suggests
    /// five minutes).
    pub idle_timeout: Duration,
    pub accounts: Vec<AccountConfig>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the local TLS certificate cannot be used")]
    Certificate(#[source] LocalCertificateError),
}

struct Shared {
    config: Config,
    tls: Option<TlsAcceptor>,
    keystore: Keystore,
    discovery: Option<Discovery>,
}

/// A bound listener, ready to [`Server::run`].
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listener.
    pub async fn bind(
        config: Config,
        keystore: Keystore,
        discovery: Option<Discovery>,
    ) -> Result<Server, ServerError> {
        let tls = match &config.tls {
            Some(cert) => Some(TlsAcceptor::from(
                cert.server_config().map_err(ServerError::Certificate)?,
            )),
            None => None,
        };
        let listener = Listener::bind(config.listen, "smtp").await?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                config,
                tls,
                keystore,
                discovery,
            }),
        })
    }

    /// Where it listens (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets sessions finish what
    /// they are delivering (at most `grace`) and returns.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) {
        let shared = self.shared;
        self.listener
            .serve(shutdown, grace, move |stream, peer, stop| {
                let shared = Arc::clone(&shared);
                async move {
                    if let Err(e) = serve(stream, shared, stop).await {
                        tracing::debug!(%peer, error = %e, "smtp connection ended");
                    }
                }
            })
            .await;
    }
}

/// One client connection, from greeting to close.
async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let mut session = Session::new(Options {
        hostname: config.hostname.clone(),
        starttls: shared.tls.is_some(),
        tls_active: false,
        // With a local certificate, passwords only cross TLS, on loopback
        // too (other users of the machine can read loopback traffic), as
        // the IMAP side requires; without one the gateway listens only on
        // loopback (the daemon refuses anything else).
        auth_requires_tls: shared.tls.is_some() || !config.listen.ip().is_loopback(),
        limits: config.limits.clone(),
    });
    let mut state = Connection {
        relay: None,
        account: None,
        own_key: None,
        failed_logins: 0,
    };
    let mut plain = stream;
    match drive(&mut session, &mut plain, &shared, &mut state, &stop).await? {
        Ended::Closed => return Ok(()),
        Ended::UpgradeTls => {}
    }
    let Some(acceptor) = &shared.tls else {
        return Ok(());
    };
    let mut tls = match tokio::time::timeout(config.idle_timeout, acceptor.accept(plain)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    session.tls_started();
    drive(&mut session, &mut tls, &shared, &mut state, &stop).await?;
    if let Some(relay) = state.relay.take() {
        relay.quit().await;
    }
    Ok(())
}

/// What a session holds besides the protocol state.
struct Connection {
    relay: Option<Relay>,
    account: Option<AccountConfig>,
    /// The account's own key, loaded at login (or why it cannot be used).
    own_key: Option<Result<Arc<OwnKey>, Reply>>,
    /// Failed AUTHs on this connection, which slow it down on their own.
    failed_logins: u32,
}

enum Ended {
    Closed,
    UpgradeTls,
}

/// The client's connection, plain or TLS, with its socket at hand.
trait ClientStream: AsyncRead + AsyncWrite + Unpin {
    fn socket(&self) -> &TcpStream;
}

impl ClientStream for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

async fn drive<S: ClientStream>(
    session: &mut Session,
    stream: &mut S,
    shared: &Shared,
    state: &mut Connection,
    stop: &CancellationToken,
) -> std::io::Result<Ended> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(action) = session.poll() {
            match action {
                Action::Send(bytes) => stream.write_all(&bytes).await?,
                Action::UpgradeTls => {
                    stream.flush().await?;
                    return Ok(Ended::UpgradeTls);
                }
                Action::Close => {
                    stream.flush().await?;
                    let _ = stream.shutdown().await;
                    return Ok(Ended::Closed);
                }
                Action::Authenticate { username, password } => {
                    let result = authenticate(shared, state, &username, password).await;
                    session.auth_result(result);
                }
                Action::Deliver(transaction) => {
                    let reply = deliver(shared, state, transaction).await;
                    session.delivered(reply);
                }
            }
        }
        stream.flush().await?;
        let read = tokio::select! {
            read = tokio::time::timeout(shared.config.idle_timeout, stream.read(&mut buf)) => Some(read),
            _ = stop.cancelled(), if !session.in_transaction() => None,
        };
        let Some(read) = read else {
            let bye = Reply::new(
                421,
                "4.3.2",
                "The gateway is shutting down; try again shortly",
            );
            stream.write_all(&bye.to_bytes()).await?;
            let _ = stream.shutdown().await;
            return Ok(Ended::Closed);
        };
        match read {
            Err(_) => {
                let bye = Reply::new(421, "4.4.2", "Idle for too long; closing the connection");
                stream.write_all(&bye.to_bytes()).await?;
                let _ = stream.shutdown().await;
                return Ok(Ended::Closed);
            }
            // The client went away: whatever it was sending is dropped, and
            // it never saw a 250 for it.
            Ok(Ok(0)) => return Ok(Ended::Closed),
            Ok(Ok(n)) => {
                // Clients that keep Nagle's algorithm on hold back the last
                // small write (".\r\n") until this side ACKs, and Linux
                // delays that ACK by up to 40 ms: acknowledge at once.
                #[cfg(target_os = "linux")]
                let _ = stream.socket().set_quickack(true);
                session.receive(&buf[..n]);
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// AUTH, passed on to the provider after the wait that earlier failures for
/// this name earned ([`keystore::LoginThrottle`]). Permanent refusals count
/// as failures; a provider that cannot be reached does not.
async fn authenticate(
    shared: &Shared,
    state: &mut Connection,
    username: &str,
    password: secrecy::SecretString,
) -> Result<(), Reply> {
    use secrecy::ExposeSecret as _;
    let mut failed_here = state.failed_logins;
    let guarded = shared.keystore.login_throttle().guard(
        username,
        password.expose_secret().as_bytes(),
        &mut failed_here,
        authenticate_at_provider(shared, state, username, password.clone()),
        |result| match result {
            Ok(()) => LoginVerdict::Accepted,
            Err(reply) if reply.code >= 500 => LoginVerdict::Refused,
            // A provider that could not be asked said nothing about the password.
            Err(_) => LoginVerdict::NotAsked,
        },
    );
    let result = guarded.await;
    state.failed_logins = failed_here;
    result.unwrap_or_else(|_| {
        tracing::info!(%username, "smtp login turned away: too many attempts for this name are waiting");
        Err(Reply::new(
            454,
            "4.7.0",
            format!(
                "{} login attempts for this user name are already waiting (failed logins slow down); wait a minute and try again",
                keystore::MAX_WAITING_LOGINS
            ),
        ))
    })
}

async fn authenticate_at_provider(
    shared: &Shared,
    state: &mut Connection,
    username: &str,
    password: secrecy::SecretString,
) -> Result<(), Reply> {
    let Some(account) = shared
        .config
        .accounts
        .iter()
        .find(|a| a.username.eq_ignore_ascii_case(username))
    else {
        tracing::info!(%username, "smtp login for an unknown account");
        return Err(Reply::new(
            535,
            "5.7.8",
            "No account with this user name is set up in the gateway (see gateway status)",
        ));
    };
    if let Some(old) = state.relay.take() {
        old.quit().await;
    }
    match Relay::login(&account.provider, username, password).await {
        Ok(relay) => {
            tracing::info!(account = %account.account.address, "smtp login accepted by the provider");
            state.relay = Some(relay);
            state.account = Some(account.clone());
            state.own_key = Some(
                OwnKey::load(
                    &shared.keystore,
                    &account.account.address,
                    SystemTime::now(),
                )
                .await
                .map(Arc::new),
            );
            Ok(())
        }
        Err(reply) => {
            tracing::info!(account = %account.account.address, reply = %reply, "smtp login refused");
            Err(reply)
        }
    }
}

async fn deliver(
    shared: &Shared,
    state: &mut Connection,
    transaction: crate::session::Transaction,
) -> Reply {
    let (Some(relay), Some(account), Some(own_key)) = (
        state.relay.as_mut(),
        state.account.as_ref(),
        state.own_key.as_ref(),
    ) else {
        return Reply::new(530, "5.7.0", "Authentication required");
    };
    let own_key = match own_key {
        Ok(key) => Arc::clone(key),
        Err(refusal) => return refusal.clone(),
    };
    let recipients = transaction.recipients.clone();
    let outgoing = match outgoing::prepare(
        transaction,
        &account.account,
        own_key,
        &shared.keystore,
        shared.discovery.as_ref(),
        SystemTime::now(),
    )
    .await
    {
        Ok(outgoing) => outgoing,
        Err(reply) => {
            tracing::info!(account = %account.account.address, reply = %reply, "message refused");
            // For the web page's alerts: the person may not have read the
            // mail client's error dialog. The reply stands either way.
            if let Err(e) = shared
                .keystore
                .record_refusal(
                    &account.account.address,
                    &recipients,
                    &reply.to_string(),
                    SystemTime::now(),
                )
                .await
            {
                tracing::warn!(error = %e, "the refusal could not be recorded in the vault");
            }
            return reply;
        }
    };
    match relay.send(&outgoing.copies).await {
        Ok(reply) => {
            tracing::info!(
                account = %account.account.address,
                recipients = recipients.len(),
                copies = outgoing.copies.len(),
                encrypted = outgoing.encrypted,
                "message sent"
            );
            reply
        }
        Err(reply) => {
            tracing::info!(account = %account.account.address, reply = %reply, "provider did not take the message");
            reply
        }
    }
}
