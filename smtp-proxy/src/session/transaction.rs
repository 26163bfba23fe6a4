//! One mail transaction: MAIL, RCPT, DATA and the message up to its final
//! dot, handed to the session's I/O as [`Action::Deliver`](super::Action).

use super::*;

impl Session {
    pub(super) fn mail(&mut self, rest: &str) {
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

    pub(super) fn rcpt(&mut self, rest: &str) {
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

    pub(super) fn data_command(&mut self, rest: &str) {
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
    pub(super) fn step_data(&mut self) -> bool {
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
    pub(super) fn end_of_data(&mut self) -> bool {
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
pub(super) fn parse_path(argument: &str) -> Option<(String, &str)> {
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
