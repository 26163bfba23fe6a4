//! AUTH PLAIN and LOGIN: the credentials read off the wire, then handed to
//! the session's I/O as [`Action::Authenticate`](super::Action).

use super::*;

impl Session {
    pub(super) fn auth(&mut self, rest: &str) {
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
    pub(super) fn auth_decode(&mut self, line: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
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

    pub(super) fn auth_plain_response(&mut self, line: &[u8]) {
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

    pub(super) fn auth_login_user(&mut self, line: &[u8]) {
        let Some(decoded) = self.auth_decode(line) else {
            return;
        };
        let Ok(username) = String::from_utf8(decoded.to_vec()) else {
            return self.error(Reply::new(501, "5.5.2", "The user name must be UTF-8"));
        };
        self.state = State::AuthLoginPassword { username };
        self.send(Reply::new(334, "", "UGFzc3dvcmQ6"));
    }

    pub(super) fn auth_login_password(&mut self, username: String, line: &[u8]) {
        let Some(decoded) = self.auth_decode(line) else {
            return;
        };
        let Ok(password) = std::str::from_utf8(&decoded) else {
            return self.error(Reply::new(501, "5.5.2", "The password must be UTF-8"));
        };
        self.start_auth(username, SecretString::from(password.to_string()));
    }

    pub(super) fn start_auth(&mut self, username: String, password: SecretString) {
        if username.is_empty() {
            return self.error(Reply::new(501, "5.5.2", "Empty user name"));
        }
        self.state = State::Authenticating {
            username: username.clone(),
        };
        self.actions
            .push_back(Action::Authenticate { username, password });
    }
}
