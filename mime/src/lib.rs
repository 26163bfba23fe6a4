//! RFC 5322 / MIME structure for Letterlock, on mail-parser, with one rule
//! every caller gets for free: a message nested too deeply is never taken
//! apart.
//!
//! mail-parser builds a tree (`PartType::Message` inside parts inside
//! messages) whose `Drop`, `Clone` and `into_owned` recurse once per level,
//! and it recurses itself into base64 or quoted-printable encoded
//! message/rfc822 parts. About 4,000 nested levels in a 210 KB mail
//! overflowed a thread's stack and aborted the whole gateway (rule 7: no
//! input ends the process). [`parse`] counts, in one linear pass before
//! mail-parser sees anything, every `Content-Type` field that can open a
//! level (multipart/*, message/*; a digest twice, since its parts default to
//! message/rfc822) in the message, in its quoted-printable decoding and in
//! every base64 run (three levels deep, as far as mail-parser decodes). The
//! count bounds the depth of the tree from above, whatever the boundaries
//! say, so nothing deeper than [`MAX_LEVELS`] is ever built.
//!
//! Written by hand because no crate bounds mail-parser's nesting.
//!
//! Also here: who a message is from ([`sender`], mail-parser's RFC 5322
//! address parser) and the addresses a display name shows a reader
//! ([`addresses_in_name`]); header sections as raw byte slices
//! ([`header`]: fields, values, line endings, kept byte for byte) and MIME
//! entities cut out of the input by hand ([`entity`]: signatures cover exact
//! bytes), used by the crypto engine, the IMAP side and the archive alike.
//!
//! ```
//! let from = letterlock_mime::sender(
//!     b"From: =?utf-8?q?Bob_M=C3=BCller?= <bob@example.org>\r\nSubject: hi\r\n\r\nbody\r\n",
//! )
//! .expect("one sender");
//! assert_eq!(from.address, "bob@example.org");
//! assert_eq!(from.name.as_deref(), Some("Bob Müller"));
//! // Two From fields: nobody is the sender.
//! assert!(letterlock_mime::sender(b"From: a@example.org\r\nFrom: b@example.org\r\n\r\n").is_none());
//! ```

pub mod entity;
pub mod header;

use std::borrow::Cow;

use base64::Engine as _;

/// At most this many structure-opening `Content-Type` fields (see the crate
/// docs); the tree is then at most `2 × MAX_STRUCTURE_FIELDS + 2` levels
/// deep, far within a 2 MiB thread stack (mail-parser's tree of 8,000
/// levels was dropped on one in a debug build). Real mail has a handful; a
/// digest of a hundred multipart messages a few hundred.
pub const MAX_STRUCTURE_FIELDS: usize = 500;

/// The deepest tree [`parse`] returns.
pub const MAX_LEVELS: usize = 2 * MAX_STRUCTURE_FIELDS + 2;

/// How deep mail-parser decodes encoded message/rfc822 parts into messages.
const ENCODED_LEVELS: usize = 3;

/// mail-parser's parse, or `None` when the message cannot be parsed or
/// could nest deeper than [`MAX_LEVELS`]. Callers treat `None` as "nothing
/// can be said about the parts" and choose the safe reading.
pub fn parse(message: &[u8]) -> Option<mail_parser::Message<'_>> {
    if exceeds_nesting_bound(message) {
        return None;
    }
    mail_parser::MessageParser::default().parse(message)
}

/// Whether a message could nest deeper than [`MAX_LEVELS`] (see the crate
/// docs); linear in its size.
pub fn exceeds_nesting_bound(message: &[u8]) -> bool {
    let mut budget = MAX_STRUCTURE_FIELDS;
    !fits(message, ENCODED_LEVELS, &mut budget)
}

/// Takes the structure-opening fields of `bytes` (and of what it encodes,
/// `levels` deep) from `budget`; `false` once it runs out.
fn fits(bytes: &[u8], levels: usize, budget: &mut usize) -> bool {
    let text = quoted_printable_decoded(bytes);
    if !take(structure_fields(&text), budget) {
        return false;
    }
    if levels == 0 {
        return true;
    }
    // Runs from the input as it is: quoted-printable decoding would take a
    // base64 line's `=` padding for a soft line break.
    base64_runs(bytes).all(|decoded| fits(&decoded, levels - 1, budget))
}

fn take(n: usize, budget: &mut usize) -> bool {
    match budget.checked_sub(n) {
        Some(rest) => {
            *budget = rest;
            true
        }
        None => false,
    }
}

/// Lines of the input, without their line ends (LF, CRLF, or a bare CR:
/// whatever any reader might take for one).
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
}

/// How many levels the `Content-Type` fields anywhere in `text` can open:
/// one for each naming multipart or message, two for a digest. Field names
/// as the most lenient reader spells them (any case, blanks before the
/// colon); values with their continuation lines.
fn structure_fields(text: &[u8]) -> usize {
    let mut count = 0;
    let mut value: Option<Vec<u8>> = None;
    let mut finish = |value: Option<Vec<u8>>| {
        if let Some(v) = value {
            let v = v.to_ascii_lowercase();
            let has = |word: &[u8]| v.windows(word.len()).any(|w| w == word);
            if has(b"multipart") || has(b"message") {
                count += 1 + usize::from(has(b"digest"));
            }
        }
    };
    for line in lines(text) {
        if matches!(line[0], b' ' | b'\t') {
            if let Some(v) = value.as_mut() {
                // A value is bounded: nothing past 1000 bytes can change the answer much,
                // and a hostile field must not grow without limit.
                if v.len() < 1000 {
                    v.extend_from_slice(line);
                }
            }
            continue;
        }
        finish(value.take());
        value = content_type_value(line).map(<[u8]>::to_vec);
    }
    finish(value);
    count
}

/// The value after `Content-Type:` (any case, blanks before the colon).
fn content_type_value(line: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"content-type";
    let head = line.get(..NAME.len())?;
    if !head.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let rest = &line[NAME.len()..];
    let blanks = rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    (rest.get(blanks) == Some(&b':')).then(|| &rest[blanks + 1..])
}

/// The input with quoted-printable undone, where it has any: a field
/// written as `Content-=\r\nType: multipart/...` in an encoded part counts
/// too. Borrowed when nothing looks encoded.
fn quoted_printable_decoded(bytes: &[u8]) -> Cow<'_, [u8]> {
    if bytes.contains(&b'=') {
        Cow::Owned(decode_quoted_printable(bytes))
    } else {
        Cow::Borrowed(bytes)
    }
}

/// Quoted-printable decoding (RFC 2045 §6.7), lenient as mail readers are:
/// soft line breaks after CRLF or LF, and an `=` not followed by two hex
/// digits kept as it is.
pub fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'=' if body.get(i + 1) == Some(&b'\r') && body.get(i + 2) == Some(&b'\n') => i += 3,
            b'=' if body.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => {
                let hex = body
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Every run of consecutive base64 lines, decoded (runs that do not decode
/// are skipped: mail-parser would not find a message in them either).
fn base64_runs(text: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let is_base64 = |l: &[u8]| {
        let l = l.trim_ascii();
        l.len() >= 4
            && l.iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    };
    let mut rest = lines(text).peekable();
    std::iter::from_fn(move || loop {
        let first = rest.next()?;
        if !is_base64(first) {
            continue;
        }
        let mut run: Vec<u8> = first.trim_ascii().to_vec();
        while let Some(next) = rest.next_if(|l| is_base64(l)) {
            run.extend_from_slice(next.trim_ascii());
        }
        let engine = &base64::engine::general_purpose::STANDARD;
        let decoded = engine.decode(&run).or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(run.trim_ascii_end())
        });
        if let Ok(decoded) = decoded {
            return Some(decoded);
        }
    })
}

/// The one mailbox of a message's From field, as mail-parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// What a mail client shows for the sender: the display name with
    /// encoded words decoded (where there is none, a comment, as clients
    /// show it).
    pub name: Option<String>,
    pub address: String,
}

/// The sender of a message (its header, or the whole message): the one
/// mailbox of its one From field, or `None` when there are several fields,
/// several mailboxes, a group, or no address. Parsed by mail-parser's
/// RFC 5322 parser, header only (nothing nests there).
pub fn sender(message: &[u8]) -> Option<Mailbox> {
    let parsed = mail_parser::MessageParser::default().parse_headers(message)?;
    if parsed.header_values("From").count() != 1 {
        return None;
    }
    let mailbox = match parsed.from()? {
        mail_parser::Address::List(list) => match list.as_slice() {
            [one] => one,
            _ => return None,
        },
        mail_parser::Address::Group(_) => return None,
    };
    let address = mailbox.address()?.trim();
    if !address.contains('@') || address.contains(char::is_whitespace) {
        return None;
    }
    Some(Mailbox {
        name: mailbox
            .name()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        address: address.to_string(),
    })
}

/// The addresses written in a display name (`"bob@example.org" <…>`, or
/// with a full-width at sign, `bob＠example.org`), lowercased, with
/// look-alike at signs made `@`: what a reader who sees only the name
/// takes for the sender.
pub fn addresses_in_name(name: &str) -> Vec<String> {
    const AT_SIGNS: [char; 3] = ['@', '\u{ff20}', '\u{fe6b}'];
    name.split(|c: char| c.is_whitespace() || "<>\"'()[],;:".contains(c))
        .filter_map(|token| {
            let at = token.find(AT_SIGNS)?;
            let (local, rest) = token.split_at(at);
            let domain = rest.trim_start_matches(AT_SIGNS);
            let domain = domain.trim_end_matches('.');
            (!local.is_empty() && domain.contains('.'))
                .then(|| format!("{}@{}", local, domain).to_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_is_read_as_rfc_5322_says() {
        let from =
            |field: &str| sender(format!("{field}\r\nSubject: x\r\n\r\nbody\r\n").as_bytes());
        let mailbox = |name: Option<&str>, address: &str| {
            Some(Mailbox {
                name: name.map(str::to_string),
                address: address.to_string(),
            })
        };
        assert_eq!(
            from("From: bob@example.org"),
            mailbox(None, "bob@example.org")
        );
        assert_eq!(
            from("From: \"bob@example.org\" <m-sig@evil.example>"),
            mailbox(Some("bob@example.org"), "m-sig@evil.example")
        );
        assert_eq!(
            from("From: =?utf-8?q?bob=40example=2Eorg?= <m@evil.example>"),
            mailbox(Some("bob@example.org"), "m@evil.example")
        );
        assert_eq!(
            from("From: Bob\r\n Example <bob@example.org>"),
            mailbox(Some("Bob Example"), "bob@example.org")
        );
        let comment = from("From: bob@example.org (<mallory@evil.example>)").expect("a sender");
        assert_eq!(comment.address, "bob@example.org");
        assert_eq!(from("From: a@example.org, b@example.org"), None);
        assert_eq!(from("From: a@example.org\r\nFrom: b@example.org"), None);
        assert_eq!(from("From: friends: a@example.org, b@example.org;"), None);
        assert_eq!(from("Subject: no sender"), None);
    }

    #[test]
    fn addresses_are_found_in_display_names() {
        assert_eq!(addresses_in_name("Bob Example"), Vec::<String>::new());
        assert_eq!(addresses_in_name("bob@example.org"), ["bob@example.org"]);
        assert_eq!(
            addresses_in_name("Bob (Bob@Example.org)"),
            ["bob@example.org"]
        );
        assert_eq!(
            addresses_in_name("<mallory@evil.example>"),
            ["mallory@evil.example"]
        );
        assert_eq!(
            addresses_in_name("bob\u{ff20}example.org"),
            ["bob@example.org"]
        );
        assert_eq!(addresses_in_name("Bob @ home"), Vec::<String>::new());
        assert_eq!(addresses_in_name("us@home"), Vec::<String>::new());
    }

    /// `levels` message/rfc822 parts, each inside a multipart/mixed.
    pub(crate) fn nested(levels: usize) -> Vec<u8> {
        let mut inner = b"From: a@example.org\r\nSubject: leaf\r\n\r\nleaf\r\n".to_vec();
        for i in 0..levels {
            let mut m = format!(
                "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n\
                 --b{i}\r\nContent-Type: message/rfc822\r\n\r\n"
            )
            .into_bytes();
            m.extend_from_slice(&inner);
            m.extend_from_slice(format!("\r\n--b{i}--\r\n").as_bytes());
            inner = m;
        }
        inner
    }

    #[test]
    fn ordinary_deep_mail_is_parsed() {
        // A thrice-forwarded HTML mail is about 8 levels.
        let m = nested(20);
        assert!(parse(&m).is_some());
    }

    #[test]
    fn too_deep_mail_is_refused_before_it_is_parsed() {
        for levels in [MAX_STRUCTURE_FIELDS, 4_000, 10_000] {
            let m = nested(levels);
            assert!(exceeds_nesting_bound(&m), "{levels}");
            assert!(parse(&m).is_none(), "{levels}");
        }
    }

    #[test]
    fn every_spelling_and_encoding_counts() {
        let field = |f: &str| f.repeat(MAX_STRUCTURE_FIELDS + 1).into_bytes();
        for spelling in [
            "Content-Type: multipart/mixed; boundary=x\r\n",
            "content-type : MULTIPART/mixed\n",
            "Content-Type:\r\n message/rfc822\r\n",
            "Content-Type: message/rfc822\rX: y\r",
        ] {
            assert!(exceeds_nesting_bound(&field(spelling)), "{spelling:?}");
        }
        let qp = "Conte=\r\nnt-Type: multipart/mixed\r\n".repeat(MAX_STRUCTURE_FIELDS + 1);
        assert!(exceeds_nesting_bound(qp.as_bytes()));
        // Deep structure hidden in a base64 message/rfc822 part, itself in one.
        let b64 = |bytes: &[u8]| {
            let e = base64::engine::general_purpose::STANDARD.encode(bytes);
            let lines: Vec<&str> = e
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap_or(""))
                .collect();
            lines.join("\r\n")
        };
        // Sizes whose base64 ends in `=` and `==` padding as well as none.
        for extra in ["", "x", "xy"] {
            let mut deep = nested(MAX_STRUCTURE_FIELDS);
            deep.extend_from_slice(extra.as_bytes());
            let inner = b64(&deep);
            let outer = format!(
            "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
             Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--o--\r\n",
            b64(format!(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{inner}\r\n"
            )
            .as_bytes())
        );
            assert!(exceeds_nesting_bound(outer.as_bytes()), "{extra:?}");
        }
    }

    #[test]
    fn wide_mail_is_not_deep() {
        let mut m = b"Content-Type: multipart/mixed; boundary=w\r\n\r\n".to_vec();
        for i in 0..100_000 {
            m.extend_from_slice(
                format!("--w\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes(),
            );
        }
        m.extend_from_slice(b"--w--\r\n");
        assert!(!exceeds_nesting_bound(&m));
        assert!(parse(&m).is_some_and(|p| p.parts.len() > 100_000));
    }
}
