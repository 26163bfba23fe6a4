//! Byte-level access to RFC 5322 header sections.
//!
//! The engine must keep the client's bytes exactly as they were (non-ASCII
//! headers, 8-bit bodies, odd folding), so header fields are handled as raw
//! slices here; mail-parser is used where structure has to be understood.

/// The line ending a message uses: CRLF if its first line ends in CRLF.
pub fn line_ending(message: &[u8]) -> &'static str {
    match message.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && message[i - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => "\r\n",
    }
}

/// Splits a message (or MIME part) into its header section and its body.
///
/// The header slice holds every header line with its line ending; the blank
/// separator line belongs to neither. Without a blank line the whole input is
/// header and the body is empty.
pub fn split_header(message: &[u8]) -> (&[u8], &[u8]) {
    let mut start = 0;
    while start < message.len() {
        let end = match message[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i + 1,
            None => message.len(),
        };
        let line = &message[start..end];
        if line == b"\n" || line == b"\r\n" {
            return (&message[..start], &message[end..]);
        }
        start = end;
    }
    (message, &[])
}

/// The header section as IMAP's `BODY[HEADER]` has it: every header line
/// and the blank line after them (the whole input if there is none).
/// Whatever is cut from a message's header is the same when cut from this.
pub fn header_section(message: &[u8]) -> &[u8] {
    let (_, body) = split_header(message);
    &message[..message.len() - body.len()]
}

/// One header field as it appears in the input, folding included.
/// ([`fields`] also starts one at a name with blanks before its colon.)
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The field name as written (compare with [`Field::is`]).
    pub name: &'a str,
    /// The whole field: name, colon, value, continuation lines, final line ending.
    pub raw: &'a [u8],
}

impl<'a> Field<'a> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value unfolded and trimmed; bytes that are not UTF-8 are replaced.
    pub fn value(&self) -> String {
        let after_colon = &self.raw[self.name.len() + 1..];
        let text = String::from_utf8_lossy(after_colon);
        let mut out = String::with_capacity(text.len());
        for piece in text.split('\n') {
            out.push_str(piece.trim_end_matches('\r'));
        }
        out.trim().to_string()
    }

    /// The field without its final line ending, for appending parameters.
    pub fn raw_without_eol(&self) -> &'a [u8] {
        let mut end = self.raw.len();
        while end > 0 && matches!(self.raw[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        &self.raw[..end]
    }
}

/// Splits a header section into fields. Lines before the first field and
/// lines without a colon are kept as part of the preceding field, so no byte
/// is lost; a leading malformed line becomes a field with an empty name.
pub fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new(); // (start, name_end, end)
    let mut start = 0;
    while start < header.len() {
        let end = match header[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i + 1,
            None => header.len(),
        };
        let line = &header[start..end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        let colon = line.iter().position(|&b| b == b':');
        // Blanks between name and colon are obsolete syntax (RFC 5322
        // §4.5) that lenient readers accept: such a line starts a field of
        // its own (whose name then keeps the blanks, so that `is` matches
        // only the strict spelling).
        let name_ok = colon.is_some_and(|c| {
            let name = line[..c].trim_ascii_end();
            !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':')
        });
        match (continuation, name_ok, out.last_mut()) {
            (false, true, _) => out.push((start, start + colon.unwrap_or(0), end)),
            (_, _, Some(last)) => last.2 = end,
            (_, _, None) => out.push((start, start, end)),
        }
        start = end;
    }
    out.into_iter()
        .map(|(s, n, e)| Field {
            // The name was checked to be ASCII above.
            name: std::str::from_utf8(&header[s..n]).unwrap_or(""),
            raw: &header[s..e],
        })
        .collect()
}

/// All values of the fields called `name`, unfolded.
pub fn values(header: &[u8], name: &str) -> Vec<String> {
    fields(header)
        .iter()
        .filter(|f| f.is(name))
        .map(|f| f.value())
        .collect()
}

/// The addresses of a mailbox list such as `"Alice" <alice@example.org>, bob@x`
/// (groups flattened), read by mail-parser's RFC 5322 address parser, the
/// same reading as [`crate::sender`]. What is not an address (no `@`,
/// whitespace inside) is left out.
///
/// Comments are not part of a mailbox (RFC 5322 CFWS): in
/// `alice@good.org (<mallory@evil.org>)` the address is Alice's.
pub fn addresses(value: &str) -> Vec<String> {
    // The value alone, as the one field of a header: mail-parser parses
    // addresses only as part of a header.
    let header = format!("To: {}\r\n\r\n", value.replace(['\r', '\n'], " "));
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(header.as_bytes())
    else {
        return Vec::new();
    };
    let Some(list) = parsed.to() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|mailbox| mailbox.address())
        .map(str::trim)
        .filter(|addr| addr.contains('@') && !addr.contains(char::is_whitespace))
        .map(str::to_string)
        .collect()
}

/// The text without its comments (nested, with quoted pairs); parentheses
/// inside a quoted string are text. A comment becomes a space.
pub fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut depth, mut escaped) = (false, 0u32, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                if depth == 0 {
                    out.push(c);
                }
            }
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                if depth == 0 {
                    out.push(' ');
                }
                depth += 1;
            }
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Appends `Name: value` and a line ending; the value must already be folded.
pub fn push_field(out: &mut Vec<u8>, name: &str, value: &str, eol: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(eol.as_bytes());
}

/// A MIME boundary that cannot occur in base64 or armored text.
pub fn random_boundary() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let token: String = (0..24)
        .map(|_| {
            let i = rng.gen_range(0..36u8);
            char::from(if i < 10 { b'0' + i } else { b'a' + i - 10 })
        })
        .collect();
    format!("=-=letterlock-{token}=-=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header_and_body_with_either_line_ending() {
        assert_eq!(
            split_header(b"A: 1\r\nB: 2\r\n\r\nbody"),
            (&b"A: 1\r\nB: 2\r\n"[..], &b"body"[..])
        );
        assert_eq!(
            split_header(b"A: 1\n\nbody\n"),
            (&b"A: 1\n"[..], &b"body\n"[..])
        );
        assert_eq!(split_header(b"A: 1\n"), (&b"A: 1\n"[..], &b""[..]));
        assert_eq!(line_ending(b"A: 1\r\n"), "\r\n");
        assert_eq!(line_ending(b"A: 1\n"), "\n");
    }

    #[test]
    fn keeps_folding_and_unfolds_values() {
        let h = b"Subject: a\r\n  b\r\nFrom: x@y\r\n";
        let f = fields(h);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].raw, b"Subject: a\r\n  b\r\n");
        assert_eq!(f[0].value(), "a  b");
        assert_eq!(f[1].value(), "x@y");
        let joined: Vec<u8> = f.iter().flat_map(|f| f.raw.iter().copied()).collect();
        assert_eq!(joined, h);
    }

    #[test]
    fn extracts_addresses() {
        assert_eq!(
            addresses(r#""Doe, John" <john@example.org>, bob@example.org (Bob), junk"#),
            vec!["john@example.org", "bob@example.org"]
        );
        // A comment's address is not the mailbox's; a quoted string's
        // parentheses are not a comment.
        for (value, want) in [
            ("alice@good.org (<mallory@evil.org>)", "alice@good.org"),
            (
                "Alice (<mallory@evil.org>) <alice@good.org>",
                "alice@good.org",
            ),
            ("<alice@good.org> (x (<m@evil.org>))", "alice@good.org"),
            ("\"Bob (work)\" <bob@example.org>", "bob@example.org"),
        ] {
            assert_eq!(addresses(value), [want], "{value}");
        }
    }
}
