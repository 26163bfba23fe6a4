//! Logging in: the client's credentials go to the provider, whose verdict
//! is the client's. Until then the proxy answers the few commands allowed
//! before login itself. Failed logins slow down per name and per
//! connection ([`keystore::LoginThrottle`]).

use std::sync::Arc;

use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::{
    Code, CommandContinuationRequest, Data, Greeting, Status, StatusKind,
};
use imap_next::server::{Event as ServerEvent, Server};
use imap_next::stream::Stream;
use keystore::LoginVerdict;
use net_edge::{CancellationToken, LOGIN_PATIENCE};
use secrecy::SecretString;
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::respond::{answer_client_error, deliver, say_bye, server_options, tagged};
use super::{AccountConfig, SessionError, Shared, SHUTTING_DOWN};
use crate::imap::capabilities;
use crate::starttls::negotiate;
use crate::upstream::{Session, UpstreamError};

/// A connection that logged in: both streams and the account.
pub(super) struct LoggedIn {
    pub client_stream: Stream,
    pub server: Server,
    pub session: Session,
    pub account: AccountConfig,
}

/// Greets the client and answers it locally until LOGIN or AUTHENTICATE
/// PLAIN succeeds at the provider. `None` if the client logged out first.
pub(super) async fn log_in(
    tcp: TcpStream,
    shared: &Shared,
    stop: &CancellationToken,
) -> Result<Option<LoggedIn>, SessionError> {
    let _ = tcp.set_nodelay(true);
    // After STARTTLS, imap-next's greeting is an untagged OK with the new
    // capabilities, which clients take as such (RFC 3501, 7.1).
    let (mut client_stream, ready) = match &shared.config.tls {
        None => (Stream::insecure(tcp), "Letterlock gateway ready"),
        Some(tls) => {
            let tls = negotiate(tcp, Arc::clone(tls))
                .await
                .map_err(SessionError::LocalTls)?;
            (crate::tls_stream(tls.into()), "TLS active")
        }
    };
    let pre_auth = capabilities::before_login();
    let greeting = Greeting::ok(Some(Code::Capability(pre_auth.clone())), ready)
        .map_err(SessionError::Greeting)?;
    let mut server = Server::new(server_options(), greeting);

    let mut authenticating: Option<Tag<'static>> = None;
    // Failed logins on this connection, which slow it down on their own.
    let mut failed_here = 0u32;
    let (session, account) = loop {
        let event = tokio::select! {
            event = client_stream.next(&mut server) => event,
            _ = stop.cancelled() => {
                say_bye(&mut client_stream, &mut server, SHUTTING_DOWN).await;
                return Ok(None);
            }
        };
        let event = match event {
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
                            authenticate_plain(shared, response.declassify(), &mut failed_here)
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
                        authenticate_plain(shared, response.declassify(), &mut failed_here).await
                    }
                    _ => Err(LoginError::Cancelled),
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
                return Ok(None);
            }
            CommandBody::Login { username, password } => {
                let username = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = SecretString::from(
                    String::from_utf8_lossy(password.declassify().as_ref()).into_owned(),
                );
                match login(shared, &username, &password, &mut failed_here).await {
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
                    Err(why) => {
                        info!(%username, reason = %why, "imap login refused");
                        server.enqueue_status(tagged(
                            command.tag,
                            StatusKind::No,
                            Some(Code::Alert),
                            &why.to_string(),
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
    Ok(Some(LoggedIn {
        client_stream,
        server,
        session,
        account,
    }))
}

/// AUTHENTICATE PLAIN (`net_edge::parse_plain`, the same reading as
/// SMTP's AUTH PLAIN), passed on as a login to the provider.
async fn authenticate_plain(
    shared: &Shared,
    response: &[u8],
    failed_here: &mut u32,
) -> Result<(Session, AccountConfig), LoginError> {
    let plain = net_edge::parse_plain(response)?;
    login(shared, &plain.username, &plain.password, failed_here).await
}

/// Ends an AUTHENTICATE with the provider's verdict; the session on success.
fn finish_authenticate(
    server: &mut Server,
    tag: Tag<'static>,
    found: Result<(Session, AccountConfig), LoginError>,
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
            let _ = server.authenticate_finish(tagged(tag, StatusKind::No, None, &why.to_string()));
            None
        }
    }
}

/// A login, passed on to the provider after the wait that earlier failures
/// for this name and on this connection (`failed_here`) earned
/// ([`keystore::LoginThrottle`]).
async fn login(
    shared: &Shared,
    username: &str,
    password: &SecretString,
    failed_here: &mut u32,
) -> Result<(Session, AccountConfig), LoginError> {
    use secrecy::ExposeSecret as _;
    let guarded = shared.keystore.login_throttle().guard(
        username,
        password.expose_secret().as_bytes(),
        failed_here,
        login_at_provider(shared, username, password),
        |result| match result {
            Ok(_) => LoginVerdict::Accepted,
            Err(e) => e.verdict(),
        },
    );
    match guarded.await {
        Ok(result) => result,
        Err(_) => {
            info!(%username, "imap login turned away: too many attempts for this name are waiting");
            Err(LoginError::Busy)
        }
    }
}

/// Why a login was refused. The sentence is what the client is told (under
/// ALERT for LOGIN, which Thunderbird shows in a dialog).
#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error("No account with this user name is set up in the gateway")]
    UnknownName,
    #[error("Your provider refused the login: {0}")]
    Rejected(String),
    #[error("Cannot reach your provider: {0}")]
    Unreachable(#[source] UpstreamError),
    #[error("Cannot log in at your provider: {0}")]
    Failed(#[source] UpstreamError),
    #[error(
        "Cannot reach your provider: it did not complete the login within {0} seconds; try again later"
    )]
    TimedOut(u64),
    #[error(
        "{} login attempts for this user name are already waiting (failed logins slow down); \
         wait a minute and try again, with the password your provider knows",
        keystore::MAX_WAITING_LOGINS
    )]
    Busy,
    #[error(transparent)]
    Plain(#[from] net_edge::PlainError),
    #[error("Authentication cancelled")]
    Cancelled,
}

impl LoginError {
    /// Whether it counts against the name: an answer about the password,
    /// or none (the provider could not be asked).
    fn verdict(&self) -> LoginVerdict {
        match self {
            LoginError::UnknownName | LoginError::Rejected(_) => LoginVerdict::Refused,
            _ => LoginVerdict::NotAsked,
        }
    }
}

async fn login_at_provider(
    shared: &Shared,
    username: &str,
    password: &SecretString,
) -> Result<(Session, AccountConfig), LoginError> {
    let Some(account) = shared
        .config
        .accounts
        .iter()
        .find(|a| a.username.eq_ignore_ascii_case(username))
    else {
        return Err(LoginError::UnknownName);
    };
    // One bound for the whole login, however the provider stalls (at the
    // greeting, the TLS handshake, STARTTLS or LOGIN).
    let patience = shared.config.provider_timeout.min(LOGIN_PATIENCE);
    let logged_in = tokio::time::timeout(patience, async {
        let mut session = Session::connect(&account.provider)
            .await
            .map_err(LoginError::Unreachable)?;
        match session.login(&account.username, password).await {
            Ok(()) => Ok(session),
            Err(UpstreamError::LoginRejected(why)) => Err(LoginError::Rejected(why)),
            Err(e) => Err(LoginError::Failed(e)),
        }
    })
    .await;
    let session = match logged_in {
        Ok(result) => result?,
        Err(_) => {
            warn!(account = %account.address, secs = patience.as_secs(), "the provider did not complete the login in time");
            return Err(LoginError::TimedOut(patience.as_secs()));
        }
    };
    let mut account = account.clone();
    account.address = autocrypt::normalize_addr(&account.address);
    Ok((session, account))
}
