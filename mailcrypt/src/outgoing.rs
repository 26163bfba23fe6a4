//! Reading and adjusting a client's outgoing message before it is
//! encrypted or sent: who it is addressed to, header fields that must not
//! leave (Bcc, the gateway's own request fields), and tags in the subject.
//! Everything not touched stays byte for byte as the client wrote it.

use zeroize::Zeroizing;

use crate::decrypt::STATUS_HEADER;
use crate::mime;

/// The addresses in the header fields called `names` (e.g. To and Cc), in
/// order, without duplicates (compared as Autocrypt compares addresses).
pub fn header_addresses(message: &[u8], names: &[&str]) -> Vec<String> {
    let (header, _) = mime::split_header(message);
    let mut out: Vec<String> = Vec::new();
    for field in mime::fields(header) {
        if names.iter().any(|n| field.is(n)) {
            for addr in mime::addresses(&field.value()) {
                if !out.iter().any(|a| autocrypt::addr_eq(a, &addr)) {
                    out.push(addr);
                }
            }
        }
    }
    out
}

/// The message without the header fields called one of `names`.
pub fn strip_fields(message: &[u8], names: &[&str]) -> Vec<u8> {
    crate::decrypt::strip_fields(message, names)
}

/// The unfolded value of the first field called `name`, if any.
pub fn field_value(message: &[u8], name: &str) -> Option<String> {
    let (header, _) = mime::split_header(message);
    mime::fields(header)
        .into_iter()
        .find(|f| f.is(name))
        .map(|f| f.value())
}

/// The Message-IDs a message answers or forwards, from In-Reply-To,
/// References and Thunderbird's X-Forwarded-Message-Id, in field order.
pub fn referenced_message_ids(message: &[u8]) -> Vec<String> {
    const FIELDS: [&str; 3] = ["In-Reply-To", "References", "X-Forwarded-Message-Id"];
    let (header, _) = mime::split_header(message);
    let mut ids = Vec::new();
    for field in mime::fields(header) {
        if FIELDS.iter().any(|n| field.is(n)) {
            ids.extend(message_ids(&field.value()));
        }
    }
    ids
}

/// The Message-IDs in a field value (Message-ID, In-Reply-To, References),
/// read as RFC 5322 reads them: comments (nested, with quoted pairs) are
/// not part of an id, folding white space inside `<…>` is dropped, and a
/// field may hold several. Without any `<…>`, the whole value (comments
/// and blanks removed) is taken as one id, as lenient clients write it.
/// Both sides of the conversation check (recording an encrypted message,
/// finding what a reply refers to) read ids with this one function, so a
/// spelling cannot make them disagree.
pub fn message_ids(value: &str) -> Vec<String> {
    let clean = mime::without_comments(value);
    let compact = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let mut ids = Vec::new();
    let mut rest = clean.as_str();
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let id = compact(&rest[open..open + close + 1]);
        if id.len() > 2 {
            ids.push(id);
        }
        rest = &rest[open + close + 1..];
    }
    if ids.is_empty() {
        let bare = compact(&clean);
        if !bare.is_empty() {
            ids.push(bare);
        }
    }
    ids
}

/// Words per phrase of [`quotable_phrases`].
pub const PHRASE_WORDS: usize = 6;

/// The phrases of a message's text a reply could quote: every run of
/// [`PHRASE_WORDS`] words of its text parts (HTML as text), lowercased,
/// with quote markers (`>`) and line breaks gone, so that a quote rewrapped
/// by the replying client (format=flowed, HTML blockquote) still matches.
/// A text shorter than a phrase is one phrase. With `at_most`, a longer
/// list is sampled evenly (any quote of `PHRASE_WORDS + stride` words then
/// holds a sampled phrase).
///
/// Recorded for encrypted messages with no Message-ID, looked up for
/// outgoing ones: a reply to such a message has no other link to it.
pub fn quotable_phrases(message: &[u8], at_most: Option<usize>) -> Vec<Zeroizing<String>> {
    let Some(parsed) = letterlock_mime::parse(message) else {
        return Vec::new();
    };
    let mut words: Vec<String> = Vec::new();
    for part in &parsed.parts {
        let text = match &part.body {
            mail_parser::PartType::Text(t) => Zeroizing::new(t.to_string()),
            mail_parser::PartType::Html(h) => {
                Zeroizing::new(mail_parser::decoders::html::html_to_text(h))
            }
            _ => continue,
        };
        for line in text.lines() {
            let line = line.trim_start_matches(|c: char| c == '>' || c.is_whitespace());
            words.extend(line.split_whitespace().map(str::to_lowercase));
        }
    }
    let words = Zeroizing::new(words);
    let mut phrases: Vec<Zeroizing<String>> = if words.len() < PHRASE_WORDS {
        match words.is_empty() {
            true => Vec::new(),
            false => vec![Zeroizing::new(words.join(" "))],
        }
    } else {
        words
            .windows(PHRASE_WORDS)
            .map(|w| Zeroizing::new(w.join(" ")))
            .collect()
    };
    if let Some(limit) = at_most.filter(|&l| l > 0 && phrases.len() > l) {
        let stride = phrases.len().div_ceil(limit);
        phrases = phrases.into_iter().step_by(stride).collect();
    }
    phrases
}

/// Whether a client's message carries a message the gateway decrypted: the
/// status header saying `encrypted` on the message itself (edit as new,
/// redirect) or on an attached message at any depth (forward as
/// attachment), transfer-encoded or not.
pub fn carries_decrypted_message(message: &[u8]) -> bool {
    fn says_encrypted(value: &str) -> bool {
        value
            .trim_start()
            .get(..9)
            .is_some_and(|v| v.eq_ignore_ascii_case("encrypted"))
    }
    fn walk(m: &mail_parser::Message<'_>, depth: usize) -> bool {
        let own = m
            .headers_raw()
            .any(|(name, value)| name.eq_ignore_ascii_case(STATUS_HEADER) && says_encrypted(value));
        own || (depth > 0
            && m.parts.iter().any(|part| match &part.body {
                mail_parser::PartType::Message(inner) => walk(inner, depth - 1),
                _ => false,
            }))
    }
    // Unencoded, at any depth: a header line of that name.
    let mut at_line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if at_line_start {
            let rest = &message[i..];
            if rest.len() > STATUS_HEADER.len()
                && rest[..STATUS_HEADER.len()].eq_ignore_ascii_case(STATUS_HEADER.as_bytes())
                && rest[STATUS_HEADER.len()] == b':'
            {
                let value_end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                let value = String::from_utf8_lossy(&rest[STATUS_HEADER.len() + 1..value_end]);
                if says_encrypted(&value) {
                    return true;
                }
            }
        }
        at_line_start = b == b'\n';
    }
    // Transfer-encoded attachments (base64, quoted-printable). A message
    // nested too deeply to take apart is taken to carry one: the safe
    // reading, since it must then be encrypted or is refused.
    match letterlock_mime::parse(message) {
        Some(m) => walk(&m, 8),
        None => letterlock_mime::exceeds_nesting_bound(message),
    }
}

/// Takes one of `tags` (e.g. `[plain]`, matched without regard to case)
/// from the very start of the decoded Subject (after leading white space
/// only) and returns it with the message whose Subject no longer carries
/// it. A tag anywhere else (`Re: [plain] …`) is text, often someone else's,
/// and is left alone. Other fields and the body are untouched.
pub fn take_subject_tag(message: &[u8], tags: &[&str]) -> Option<(String, Vec<u8>)> {
    let (header, body) = mime::split_header(message);
    let fields = mime::fields(header);
    let subject_field = fields.iter().find(|f| f.is("Subject"))?;
    let decoded = decode_subject(subject_field.raw)?;
    let subject = decoded.trim_start();
    let tag = tags.iter().find(|t| {
        subject
            .get(..t.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(t))
    })?;
    let remaining = subject[tag.len()..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let eol = mime::line_ending(message);
    let mut out = Vec::with_capacity(message.len());
    for f in &fields {
        if std::ptr::eq(f.raw, subject_field.raw) {
            out.extend_from_slice(encode_subject(&remaining, eol).as_bytes());
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    out.extend_from_slice(eol.as_bytes());
    out.extend_from_slice(body);
    Some((tag.to_string(), out))
}

/// The Subject field's text with RFC 2047 encoded words decoded.
fn decode_subject(raw_field: &[u8]) -> Option<String> {
    let mut header = raw_field.to_vec();
    if !header.ends_with(b"\n") {
        header.extend_from_slice(b"\r\n");
    }
    header.extend_from_slice(b"\r\n");
    let parsed = letterlock_mime::parse(&header)?;
    parsed.subject().map(str::to_string)
}

/// `Subject: …` with the line ending: plain ASCII as is (folded at spaces),
/// anything else as UTF-8 encoded words of at most 75 characters.
fn encode_subject(text: &str, eol: &str) -> String {
    use base64::Engine as _;
    if text.is_ascii() && !text.contains("=?") {
        let mut out = String::from("Subject:");
        let mut line_len = out.len();
        for word in text.split(' ') {
            if line_len + 1 + word.len() > 76 && line_len > "Subject:".len() {
                out.push_str(eol);
                line_len = 0;
            }
            out.push(' ');
            out.push_str(word);
            line_len += 1 + word.len();
        }
        out.push_str(eol);
        return out;
    }
    // 39 bytes of UTF-8 become 52 base64 characters: 64 with the wrapper,
    // so even the first line (after "Subject: ") stays under 76.
    let mut chunks = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > 39 {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    let words: Vec<String> = chunks
        .iter()
        .map(|c| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(c.as_bytes())
            )
        })
        .collect();
    format!("Subject: {}{eol}", words.join(&format!("{eol} ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_shares_phrases_with_what_it_quotes() {
        let original = b"From: b@example.org\r\nContent-Type: text/plain\r\n\r\n\
Bob here. The second merger closes on Monday, keep it quiet.\r\n";
        let phrases = |m: &[u8]| -> Vec<String> {
            quotable_phrases(m, None)
                .iter()
                .map(|p| p.to_string())
                .collect()
        };
        let recorded = phrases(original);
        let shares = |reply: &[u8]| phrases(reply).iter().any(|p| recorded.contains(p));
        // Rewrapped and quoted, as a client answers in plain text.
        assert!(shares(
            b"Content-Type: text/plain\r\n\r\nReally?\r\n\r\n> Bob here. The second merger closes\r\n\
> > on Monday, keep it quiet.\r\n"
        ));
        // In HTML, inside a blockquote.
        assert!(shares(
            b"Content-Type: text/html\r\n\r\n<p>Really?</p><blockquote>The second merger \
<b>closes</b> on Monday, keep it quiet</blockquote>"
        ));
        // New text shares nothing.
        assert!(!shares(
            b"Content-Type: text/plain\r\n\r\nLunch on Monday? The second one is on me.\r\n"
        ));
        // Sampling keeps at most the limit, evenly.
        let long: String = (0..5_000).map(|i| format!("w{i} ")).collect();
        let message = format!("Content-Type: text/plain\r\n\r\n{long}\r\n");
        let sampled = quotable_phrases(message.as_bytes(), Some(100));
        assert!(
            sampled.len() <= 100 && sampled.len() > 90,
            "{}",
            sampled.len()
        );
        // Short text is one phrase.
        assert_eq!(
            phrases(b"Content-Type: text/plain\r\n\r\nCode 4711\r\n"),
            ["code 4711"]
        );
    }

    #[test]
    fn recipients_from_to_and_cc() {
        let m = b"From: a@example.org\r\nTo: \"Bob, B.\" <bob@example.org>, carol@example.net\r\nCc: BOB@example.org,\r\n dave@example.net\r\nBcc: eve@example.net\r\n\r\nhi\r\n";
        assert_eq!(
            header_addresses(m, &["To", "Cc"]),
            ["bob@example.org", "carol@example.net", "dave@example.net"]
        );
        assert_eq!(header_addresses(m, &["Bcc"]), ["eve@example.net"]);
        let stripped = strip_fields(m, &["Bcc"]);
        assert!(!String::from_utf8_lossy(&stripped).contains("eve@"));
    }

    #[test]
    fn a_rewritten_subject_reads_back_as_written() {
        let long_ascii = "word ".repeat(40);
        let long_utf8 = "Grüße aus Köln, ".repeat(12);
        for text in [
            "Lunch",
            long_ascii.trim_end(),
            long_utf8.trim_end(),
            // Text that looks like an encoded word must not become one.
            "about =?utf-8?q?hi?= and more",
            "tab\there",
        ] {
            for eol in ["\r\n", "\n"] {
                let field = encode_subject(text, eol);
                assert!(field.ends_with(eol) && field.is_ascii(), "{field:?}");
                for line in field.split(eol) {
                    assert!(line.len() <= 78, "{line:?} of {field:?}");
                }
                let expected = text.replace('\t', " ");
                let decoded = decode_subject(field.as_bytes()).unwrap_or_default();
                assert!(
                    decoded == text || decoded == expected,
                    "{text:?} became {field:?}, read back as {decoded:?}"
                );
            }
        }
    }

    #[test]
    fn subject_tags_are_removed() {
        let m = b"From: a@example.org\r\nSubject: [PLAIN] Lunch\r\n  tomorrow\r\nTo: b@example.org\r\n\r\nbody\r\n";
        let (tag, out) = take_subject_tag(m, &["[plain]", "[encrypt]"]).expect("tag");
        assert_eq!(tag, "[plain]");
        assert_eq!(
            out,
            b"From: a@example.org\r\nSubject: Lunch tomorrow\r\nTo: b@example.org\r\n\r\nbody\r\n"
        );
        let encoded = b"Subject: =?UTF-8?Q?=5Bencrypt=5D_Gr=C3=BC=C3=9Fe?=\n\nx\n";
        let (tag, out) = take_subject_tag(encoded, &["[plain]", "[encrypt]"]).expect("tag");
        assert_eq!(tag, "[encrypt]");
        let out = String::from_utf8(out).expect("ascii");
        assert!(
            out.to_ascii_lowercase().starts_with("subject: =?utf-8?"),
            "{out}"
        );
        assert_eq!(
            decode_subject(out.split("\n\n").next().unwrap_or("").as_bytes()).as_deref(),
            Some("Grüße")
        );
        assert!(take_subject_tag(b"Subject: hello\r\n\r\nx", &["[plain]"]).is_none());
        // Only at the very start: in a thread subject the tag is someone else's text.
        for elsewhere in [
            "Re: [plain] hello",
            "Fwd: [PLAIN] hello",
            "hello [plain]",
            "=?UTF-8?Q?Re=3A_=5Bplain=5D_x?=",
            "[plai n] x",
        ] {
            let m = format!("Subject: {elsewhere}\r\n\r\nx");
            assert!(
                take_subject_tag(m.as_bytes(), &["[plain]", "[encrypt]"]).is_none(),
                "{elsewhere}"
            );
        }
        let (tag, _) = take_subject_tag(b"Subject:   [plain]Re: x\r\n\r\nx", &["[plain]"])
            .expect("leading white space is not text");
        assert_eq!(tag, "[plain]");
        assert!(take_subject_tag(b"To: x@example.org\r\n\r\nx", &["[plain]"]).is_none());
    }

    #[test]
    fn references_are_read_from_every_thread_field() {
        let m = b"In-Reply-To: <p@x>\r\nReferences: <r@x>\r\n <p@x>\r\nX-Forwarded-Message-Id: <f@y>\r\nSubject: s\r\n\r\nReferences: <body@x>\r\n";
        assert_eq!(
            referenced_message_ids(m),
            ["<p@x>", "<r@x>", "<p@x>", "<f@y>"]
        );
        assert!(referenced_message_ids(b"Subject: new\r\n\r\nx").is_empty());
        assert_eq!(message_ids("bare@id"), ["bare@id"]);
        assert_eq!(message_ids("<a@x> <unterminated"), ["<a@x>"]);
        // RFC 5322 spellings: comments, folding, several ids, a comment
        // that looks like an id.
        for (value, ids) in [
            ("<id@x> (comment)", &["<id@x>"][..]),
            ("(a comment (nested) <not@this>) <id@x>", &["<id@x>"]),
            ("<id@x>(c)<second@y>", &["<id@x>", "<second@y>"]),
            ("<id\r\n @x>", &["<id@x>"]),
            (" id@x (comment)", &["id@x"]),
            (
                "<\"quoted (not a comment)\"@x>",
                &["<\"quoted(notacomment)\"@x>"],
            ),
        ] {
            assert_eq!(message_ids(value), ids, "{value:?}");
        }
    }

    #[test]
    fn decrypted_messages_are_found_however_they_are_carried() {
        let status = "Letterlock-Security: encrypted; signature=valid";
        let own = format!("From: a@x\r\n{status}\r\n\r\nhi\r\n");
        let attached = format!(
            "From: a@x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nsee below\r\n--b\r\n\
             Content-Type: message/rfc822\r\n\r\nFrom: c@y\r\n{status}\r\n\r\nsecret\r\n--b--\r\n"
        );
        use base64::Engine as _;
        let encoded_inner = base64::engine::general_purpose::STANDARD
            .encode(format!("From: c@y\r\n{status}\r\n\r\nsecret\r\n"));
        let encoded = format!(
            "From: a@x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {encoded_inner}\r\n--b--\r\n"
        );
        for (what, m) in [("own", own), ("attached", attached), ("encoded", encoded)] {
            assert!(carries_decrypted_message(m.as_bytes()), "{what}");
        }
        let signed_only = "From: a@x\r\nLetterlock-Security: signed; signature=valid\r\n\r\nhi\r\n";
        let mentioned = "From: a@x\r\n\r\nThe header Letterlock-Security: encrypted is ours.\r\n";
        for m in [signed_only, mentioned] {
            assert!(!carries_decrypted_message(m.as_bytes()), "{m}");
        }
    }

    #[test]
    fn long_subjects_are_folded() {
        let long = format!("Subject: [plain] {}\r\n\r\nx", "word ".repeat(40));
        let (_, out) = take_subject_tag(long.as_bytes(), &["[plain]"]).expect("tag");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.lines().all(|l| l.len() <= 78), "{text}");
        let unicode = format!("Subject: [plain] {}\r\n\r\nx", "ü".repeat(100));
        let (_, out) = take_subject_tag(unicode.as_bytes(), &["[plain]"]).expect("tag");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        assert_eq!(decode_subject(head.as_bytes()), Some("ü".repeat(100)));
    }
}
