//! The client-facing ESMTP session as a sans-I/O state machine.
//!
//! The driver feeds bytes from the client with [`Session::receive`] and
//! takes [`Action`]s from [`Session::poll`]: bytes to send, a TLS upgrade,
//! a login to check with the provider, a message to deliver. While a login
//! or a delivery is out, the session waits (pipelined commands stay
//! buffered) until the driver reports back with [`Session::auth_result`] or
//! [`Session::delivered`]. Nothing here touches a socket, so every rule is
//! tested with plain byte strings.

use std::collections::VecDeque;

use base64::Engine as _;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::reply::Reply;

mod auth;
mod transaction;

/// Bounds on what a client may send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A command line, CRLF included (RFC 5321 says 512; extensions and
    /// AUTH initial responses need more).
    pub max_command_line: usize,
    /// The message size announced with SIZE and enforced on DATA.
    pub max_message: usize,
    pub max_recipients: usize,
    /// Bad commands before the session is closed.
    pub max_errors: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_command_line: 4096,
            max_message: 64 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 20,
        }
    }
}

/// How this listener is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// STARTTLS can be offered (a local certificate exists).
    pub starttls: bool,
    /// The connection is already TLS (implicit TLS listener).
    pub tls_active: bool,
    /// AUTH only after TLS (for listeners that are not on loopback).
    pub auth_requires_tls: bool,
    pub limits: Limits,
}

/// The envelope and content of one message, as the client submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The reverse-path (empty for `MAIL FROM:<>`).
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// The client said `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// The client said `SMTPUTF8`.
    pub smtputf8: bool,
    /// The message, dot-unstuffed, lines ending in CRLF.
    pub data: Vec<u8>,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// The 220 for STARTTLS was sent: run the TLS handshake, then call
    /// [`Session::tls_started`].
    UpgradeTls,
    /// Check these credentials with the provider, then call
    /// [`Session::auth_result`].
    Authenticate {
        username: String,
        password: SecretString,
    },
    /// Deliver this message, then call [`Session::delivered`] with the reply
    /// for the client (250 only after the provider accepted every copy).
    Deliver(Transaction),
    /// Close the connection (after the last `Send`).
    Close,
}

#[derive(Debug)]
enum State {
    Command,
    /// `AUTH PLAIN` without initial response: the next line is it.
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword {
        username: String,
    },
    /// Waiting for [`Session::auth_result`].
    Authenticating {
        username: String,
    },
    Data,
    /// Waiting for [`Session::delivered`].
    Delivering,
    /// Waiting for [`Session::tls_started`].
    Upgrading,
    Closed,
}

#[derive(Debug, Default)]
struct Envelope {
    mail_from: String,
    recipients: Vec<String>,
    eight_bit: bool,
    smtputf8: bool,
}

/// One client connection.
#[derive(Debug)]
pub struct Session {
    options: Options,
    state: State,
    input: Vec<u8>,
    /// Where the unconsumed input starts: lines are taken by moving this,
    /// not by shifting the buffer (that would be quadratic in the size).
    start: usize,
    /// Input before this offset holds no line end (so a long line is
    /// scanned once, not again with every read).
    scanned: usize,
    /// Inside an over-long line: drop bytes up to its end.
    discarding_line: bool,
    actions: VecDeque<Action>,
    greeted: bool,
    tls_active: bool,
    user: Option<String>,
    envelope: Option<Envelope>,
    data: Vec<u8>,
    data_too_large: bool,
    /// The previous DATA line ended in CRLF (or DATA just began): only
    /// then can a `.` line end the message (CRLF . CRLF, RFC 5321 §4.1.1.4).
    data_after_crlf: bool,
    /// A carriage return inside a DATA line (not before its line feed).
    data_bare_cr: bool,
    errors: usize,
}

impl Session {
    /// A new session; the greeting is the first action.
    pub fn new(options: Options) -> Self {
        let mut session = Session {
            tls_active: options.tls_active,
            options,
            state: State::Command,
            input: Vec::new(),
            start: 0,
            scanned: 0,
            discarding_line: false,
            actions: VecDeque::new(),
            greeted: false,
            user: None,
            envelope: None,
            data: Vec::new(),
            data_too_large: false,
            data_after_crlf: true,
            data_bare_cr: false,
            errors: 0,
        };
        let greeting = Reply::new(
            220,
            "",
            format!("{} ESMTP Letterlock ready", session.options.hostname),
        );
        session.send(greeting);
        session
    }

    /// The user that logged in, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A transaction is open (MAIL FROM given, not yet finished or reset):
    /// a shutdown waits for it rather than dropping the client's message.
    pub fn in_transaction(&self) -> bool {
        self.envelope.is_some() || matches!(self.state, State::Data | State::Delivering)
    }

    /// Bytes from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::Closed) {
            if self.start > 0 {
                self.input.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            self.input.extend_from_slice(bytes);
        }
    }

    /// The next thing to do, or `None` when more input (or a result from the
    /// driver) is needed.
    pub fn poll(&mut self) -> Option<Action> {
        while self.actions.is_empty() && self.step() {}
        self.actions.pop_front()
    }

    /// The TLS handshake after STARTTLS succeeded; the client starts over
    /// with EHLO (RFC 3207).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.greeted = false;
        self.user = None;
        self.envelope = None;
        self.state = State::Command;
    }

    /// The provider's verdict on the credentials of [`Action::Authenticate`]:
    /// `Err` carries the reply for the client (535 for a refused login,
    /// 454 when the provider could not be asked).
    pub fn auth_result(&mut self, result: Result<(), Reply>) {
        let State::Authenticating { username } = std::mem::replace(&mut self.state, State::Command)
        else {
            return;
        };
        match result {
            Ok(()) => {
                self.user = Some(username);
                self.send(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Err(reply) => self.send(reply),
        }
    }

    /// The outcome of [`Action::Deliver`]; the transaction is over either way.
    pub fn delivered(&mut self, reply: Reply) {
        if matches!(self.state, State::Delivering) {
            self.state = State::Command;
            self.envelope = None;
            self.send(reply);
        }
    }

    fn send(&mut self, reply: Reply) {
        self.actions.push_back(Action::Send(reply.to_bytes()));
    }

    fn close_with(&mut self, reply: Reply) {
        self.send(reply);
        self.actions.push_back(Action::Close);
        self.state = State::Closed;
        self.clear_input();
    }

    fn clear_input(&mut self) {
        self.input.clear();
        self.start = 0;
        self.scanned = 0;
    }

    /// Takes one line (without its line ending) from the input, if complete.
    fn take_line(&mut self, max: usize) -> Option<Result<Vec<u8>, ()>> {
        Some(self.next_line(max)?.map(|range| self.input[range].to_vec()))
    }

    /// The next complete line, as the range of the input it occupies
    /// without its line ending; `Err` for a line longer than `max`.
    fn next_line(&mut self, max: usize) -> Option<Result<std::ops::Range<usize>, ()>> {
        loop {
            let from = self.scanned.max(self.start);
            match self.input[from..].iter().position(|&b| b == b'\n') {
                Some(offset) => {
                    let begin = self.start;
                    let mut end = from + offset;
                    self.start = end + 1;
                    self.scanned = self.start;
                    if end > begin && self.input[end - 1] == b'\r' {
                        end -= 1;
                    }
                    if self.discarding_line {
                        self.discarding_line = false;
                        return Some(Err(()));
                    }
                    if end - begin + 2 > max {
                        return Some(Err(()));
                    }
                    return Some(Ok(begin..end));
                }
                None if self.input.len() - self.start > max => {
                    // Drop what we have and the rest of the line when it comes.
                    self.clear_input();
                    self.discarding_line = true;
                }
                None => {
                    self.scanned = self.input.len();
                    return None;
                }
            }
        }
    }

    /// Does one unit of work; `false` when it cannot go on.
    fn step(&mut self) -> bool {
        match self.state {
            State::Closed | State::Authenticating { .. } | State::Delivering | State::Upgrading => {
                false
            }
            State::Data => self.step_data(),
            _ => {
                let max = self.options.limits.max_command_line;
                match self.take_line(max) {
                    None => false,
                    Some(Err(())) => {
                        self.state = State::Command;
                        self.error(Reply::new(500, "5.5.6", "Line too long"));
                        true
                    }
                    Some(Ok(line)) => {
                        let line = Zeroizing::new(line);
                        match std::mem::replace(&mut self.state, State::Command) {
                            State::AuthPlain => self.auth_plain_response(&line),
                            State::AuthLoginUser => self.auth_login_user(&line),
                            State::AuthLoginPassword { username } => {
                                self.auth_login_password(username, &line)
                            }
                            _ => self.command(&line),
                        }
                        true
                    }
                }
            }
        }
    }

    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        if self.errors >= self.options.limits.max_errors {
            self.close_with(Reply::new(
                421,
                "4.7.0",
                "Too many errors; closing the connection",
            ));
        } else {
            self.send(reply);
        }
    }

    fn command(&mut self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return self.error(Reply::new(500, "5.5.2", "Command is not valid UTF-8"));
        };
        let (verb, rest) = match text.split_once(' ') {
            Some((v, r)) => (v, r),
            None => (text, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.ehlo(rest, true),
            "HELO" => self.ehlo(rest, false),
            "STARTTLS" => self.starttls(rest),
            "AUTH" => self.auth(rest),
            "MAIL" => self.mail(rest),
            "RCPT" => self.rcpt(rest),
            "DATA" => self.data_command(rest),
            "RSET" => {
                self.envelope = None;
                self.send(Reply::new(250, "2.0.0", "OK"));
            }
            "NOOP" => self.send(Reply::new(250, "2.0.0", "OK")),
            "QUIT" => self.close_with(Reply::new(221, "2.0.0", "Bye")),
            "VRFY" => self.send(Reply::new(
                252,
                "2.5.0",
                "Cannot verify the user, but will accept the message",
            )),
            "HELP" => self.send(Reply::new(
                214,
                "2.0.0",
                "Letterlock: EHLO, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT",
            )),
            "" => self.error(Reply::new(500, "5.5.2", "Empty command")),
            _ => self.error(Reply::new(500, "5.5.1", "Command not recognized")),
        }
    }

    fn ehlo(&mut self, argument: &str, extended: bool) {
        if argument.trim().is_empty() {
            return self.error(Reply::new(501, "5.5.4", "EHLO needs a domain or address"));
        }
        self.greeted = true;
        self.envelope = None;
        let host = self.options.hostname.clone();
        if !extended {
            return self.send(Reply::new(250, "", host));
        }
        let mut lines = vec![
            host,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.options.limits.max_message),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.options.starttls && !self.tls_active {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_allowed() && self.user.is_none() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        self.send(Reply {
            code: 250,
            enhanced: "".into(),
            lines,
        });
    }

    fn auth_allowed(&self) -> bool {
        self.tls_active || !self.options.auth_requires_tls
    }

    fn starttls(&mut self, rest: &str) {
        if !rest.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "STARTTLS takes no argument"));
        }
        if !self.options.starttls || self.tls_active {
            return self.error(Reply::new(502, "5.5.1", "STARTTLS is not available"));
        }
        self.send(Reply::new(220, "2.0.0", "Ready to start TLS"));
        // Anything pipelined after STARTTLS arrived in the clear and could
        // have been injected by someone in the middle (RFC 3207 §5): drop it.
        self.clear_input();
        self.state = State::Upgrading;
        self.actions.push_back(Action::UpgradeTls);
    }
}

#[cfg(test)]
mod tests;
