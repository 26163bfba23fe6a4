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

    fn auth(&mut self, rest: &str) {
        if !self.greeted {
            return self.error(Reply::new(503, "5.5.1", "Say EHLO first"));
        }
        if self.user.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.envelope.is_some() {
            return self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a transaction",
            ));
        }
        if !self.auth_allowed() {
            return self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required: use STARTTLS before AUTH",
            ));
        }
        let (mechanism, initial) = match rest.split_once(' ') {
            Some((m, i)) => (m, Some(i.trim())),
            None => (rest.trim(), None),
        };
        match (mechanism.to_ascii_uppercase().as_str(), initial) {
            ("PLAIN", Some(initial)) => self.auth_plain_response(initial.as_bytes()),
            ("PLAIN", None) => {
                self.state = State::AuthPlain;
                self.send(Reply::new(334, "", ""));
            }
            ("LOGIN", Some(initial)) => self.auth_login_user(initial.as_bytes()),
            ("LOGIN", None) => {
                self.state = State::AuthLoginUser;
                self.send(Reply::new(334, "", "VXNlcm5hbWU6"));
            }
            _ => self.error(Reply::new(
                504,
                "5.5.4",
                "Unrecognized authentication mechanism; use PLAIN or LOGIN",
            )),
        }
    }

    /// Decodes one AUTH response line, or answers the client why not.
    fn auth_decode(&mut self, line: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if line == b"*" {
            self.send(Reply::new(501, "5.7.0", "Authentication cancelled"));
            return None;
        }
        if line == b"=" {
            return Some(Zeroizing::new(Vec::new()));
        }
        match base64::engine::general_purpose::STANDARD.decode(line) {
            Ok(bytes) => Some(Zeroizing::new(bytes)),
            Err(_) => {
                self.error(Reply::new(
                    501,
                    "5.5.2",
                    "Cannot decode the AUTH response (base64)",
                ));
                None
            }
        }
    }

    fn auth_plain_response(&mut self, line: &[u8]) {
        let Some(decoded) = self.auth_decode(line) else {
            return;
        };
        match net_edge::parse_plain(&decoded) {
            Ok(login) => self.start_auth(login.username, login.password),
            Err(e @ net_edge::PlainError::OnBehalf) => {
                self.error(Reply::new(535, "5.7.8", e.to_string()))
            }
            Err(e) => self.error(Reply::new(501, "5.5.2", e.to_string())),
        }
    }

    fn auth_login_user(&mut self, line: &[u8]) {
        let Some(decoded) = self.auth_decode(line) else {
            return;
        };
        let Ok(username) = String::from_utf8(decoded.to_vec()) else {
            return self.error(Reply::new(501, "5.5.2", "The user name must be UTF-8"));
        };
        self.state = State::AuthLoginPassword { username };
        self.send(Reply::new(334, "", "UGFzc3dvcmQ6"));
    }

    fn auth_login_password(&mut self, username: String, line: &[u8]) {
        let Some(decoded) = self.auth_decode(line) else {
            return;
        };
        let Ok(password) = std::str::from_utf8(&decoded) else {
            return self.error(Reply::new(501, "5.5.2", "The password must be UTF-8"));
        };
        self.start_auth(username, SecretString::from(password.to_string()));
    }

    fn start_auth(&mut self, username: String, password: SecretString) {
        if username.is_empty() {
            return self.error(Reply::new(501, "5.5.2", "Empty user name"));
        }
        self.state = State::Authenticating {
            username: username.clone(),
        };
        self.actions
            .push_back(Action::Authenticate { username, password });
    }

    fn mail(&mut self, rest: &str) {
        if !self.greeted {
            return self.error(Reply::new(503, "5.5.1", "Say EHLO first"));
        }
        if self.user.is_none() {
            return self.error(Reply::new(
                530,
                "5.7.0",
                "Authentication required: log in with your provider's user name and password",
            ));
        }
        if self.envelope.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Nested MAIL command"));
        }
        let Some(argument) = strip_keyword(rest, "FROM:") else {
            return self.error(Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>"));
        };
        let Some((path, params)) = parse_path(argument) else {
            return self.error(Reply::new(501, "5.1.7", "Bad sender address syntax"));
        };
        let mut envelope = Envelope {
            mail_from: path,
            ..Envelope::default()
        };
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(n) if n > self.options.limits.max_message as u64 => {
                        return self.error(Reply::new(
                            552,
                            "5.3.4",
                            format!(
                                "The message is larger than the limit of {} bytes",
                                self.options.limits.max_message
                            ),
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => return self.error(Reply::new(501, "5.5.4", "Bad SIZE value")),
                },
                "BODY" => match value.to_ascii_uppercase().as_str() {
                    "7BIT" => envelope.eight_bit = false,
                    "8BITMIME" => envelope.eight_bit = true,
                    _ => {
                        return self.error(Reply::new(
                            555,
                            "5.5.4",
                            "Only BODY=7BIT and BODY=8BITMIME are supported",
                        ))
                    }
                },
                "SMTPUTF8" if value.is_empty() => envelope.smtputf8 = true,
                // AUTH=<> (RFC 4954) says nothing the gateway uses.
                "AUTH" => {}
                _ => {
                    return self.error(Reply::new(
                        555,
                        "5.5.4",
                        format!("MAIL parameter {key} is not supported"),
                    ))
                }
            }
        }
        self.envelope = Some(envelope);
        self.send(Reply::new(250, "2.1.0", "Sender OK"));
    }

    fn rcpt(&mut self, rest: &str) {
        let Some(envelope) = &self.envelope else {
            return self.error(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        if envelope.recipients.len() >= self.options.limits.max_recipients {
            return self.send(Reply::new(
                452,
                "4.5.3",
                format!(
                    "Too many recipients (at most {} per message)",
                    self.options.limits.max_recipients
                ),
            ));
        }
        let Some(argument) = strip_keyword(rest, "TO:") else {
            return self.error(Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>"));
        };
        let Some((path, params)) = parse_path(argument) else {
            return self.error(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
        };
        if path.is_empty() || !path.contains('@') {
            return self.error(Reply::new(
                501,
                "5.1.3",
                "The recipient needs a full address",
            ));
        }
        if !params.trim().is_empty() {
            return self.error(Reply::new(
                555,
                "5.5.4",
                "RCPT parameters are not supported",
            ));
        }
        if let Some(envelope) = &mut self.envelope {
            envelope.recipients.push(path);
        }
        self.send(Reply::new(250, "2.1.5", "Recipient OK"));
    }

    fn data_command(&mut self, rest: &str) {
        if !rest.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "DATA takes no argument"));
        }
        match &self.envelope {
            None => self.error(Reply::new(503, "5.5.1", "Need MAIL before DATA")),
            Some(e) if e.recipients.is_empty() => {
                self.error(Reply::new(554, "5.5.1", "No valid recipients"))
            }
            Some(_) => {
                self.state = State::Data;
                self.data.clear();
                self.data_too_large = false;
                self.data_after_crlf = true;
                self.data_bare_cr = false;
                self.send(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
            }
        }
    }

    /// One line of DATA. Against SMTP smuggling (Longin, 2023), only
    /// `CRLF . CRLF` ends the message: a `.` line that a bare LF ends, or
    /// that follows a line a bare LF ended, is content. A bare LF ends a
    /// content line and is normalised to CRLF (as Postfix's
    /// `smtpd_forbid_bare_newline = normalize`); a bare CR is refused at
    /// the end of the message, since receivers disagree on whether it ends
    /// a line. Either way, what reaches the provider has CRLF line ends only.
    fn step_data(&mut self) -> bool {
        // Data lines are bounded only by the message size.
        let max = self.options.limits.max_message + 2;
        let Some(line) = self.next_line(max) else {
            return false;
        };
        let line = match line {
            Ok(range) => range,
            Err(()) => {
                self.data_too_large = true;
                // The over-long line ended at `start - 1`; its CR, if any,
                // is just before (or was dropped with the line's start).
                self.data_after_crlf =
                    self.start < 2 || self.input.get(self.start - 2) == Some(&b'\r');
                return true;
            }
        };
        // `next_line` left out the CR of a CRLF; what follows the line is
        // that CR, or the bare LF.
        let ends_in_crlf = self.input.get(line.end) == Some(&b'\r');
        let after_crlf = std::mem::replace(&mut self.data_after_crlf, ends_in_crlf);
        if self.input[line.clone()] == *b"." && after_crlf && ends_in_crlf {
            return self.end_of_data();
        }
        if self.data_too_large {
            return true;
        }
        let line = &self.input[line];
        self.data_bare_cr |= line.contains(&b'\r');
        // Dot-stuffing is undone; a lone `.` that did not end the message
        // (smuggling) stays as it was written.
        let content = match line {
            b"." => line,
            _ => line.strip_prefix(b".").unwrap_or(line),
        };
        if self.data.len() + content.len() + 2 > self.options.limits.max_message {
            self.data_too_large = true;
            self.data = Vec::new();
            return true;
        }
        self.data.extend_from_slice(content);
        self.data.extend_from_slice(b"\r\n");
        true
    }

    /// `CRLF . CRLF`: the message goes to the driver, or is refused here.
    fn end_of_data(&mut self) -> bool {
        let data = std::mem::take(&mut self.data);
        let refusal = if self.data_too_large {
            Some(Reply::new(
                552,
                "5.3.4",
                format!(
                    "The message is larger than the limit of {} bytes; nothing was sent",
                    self.options.limits.max_message
                ),
            ))
        } else if self.data_bare_cr {
            Some(Reply::new(
                550,
                "5.6.0",
                "The message contains a bare carriage return (CR without LF), which mail \
                 servers read in different ways; nothing was sent. Send it with ordinary line ends",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.state = State::Command;
            self.envelope = None;
            self.send(reply);
            return true;
        }
        let Some(envelope) = &self.envelope else {
            self.state = State::Command;
            return true;
        };
        let transaction = Transaction {
            mail_from: envelope.mail_from.clone(),
            recipients: envelope.recipients.clone(),
            eight_bit: envelope.eight_bit,
            smtputf8: envelope.smtputf8,
            data,
        };
        // The transaction stays open until the driver reports back.
        self.state = State::Delivering;
        self.actions.push_back(Action::Deliver(transaction));
        true
    }
}

/// `FROM:<…> …` → the part after the keyword (case-insensitive, spaces
/// after the colon tolerated as many clients send them).
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| rest[keyword.len()..].trim_start())
}

/// `<path> params` → (address without brackets or source route, params).
fn parse_path(argument: &str) -> Option<(String, &str)> {
    let rest = argument.strip_prefix('<')?;
    let end = rest.find('>')?;
    let mut path = &rest[..end];
    let params = &rest[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // An obsolete source route (`@a,@b:user@c`) is ignored (RFC 5321 §4.1.2).
    if path.starts_with('@') {
        path = path.split_once(':')?.1;
    }
    let quoted = path.starts_with('"');
    if path.len() > 256
        || path
            .chars()
            .any(|c| c.is_control() || (c == ' ' && !quoted))
    {
        return None;
    }
    Some((path.to_string(), params))
}

#[cfg(test)]
mod tests;
