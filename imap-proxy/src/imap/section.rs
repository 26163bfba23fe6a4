//! Body sections of a message as IMAP serves them (RFC 3501 §6.4.5,
//! RFC 9051 §6.4.5): `BODY[]`, `HEADER`, `HEADER.FIELDS (…)`,
//! `HEADER.FIELDS.NOT (…)`, `TEXT`, `MIME`, part numbers and `<partial>`
//! ranges, cut byte for byte out of the message the gateway serves.
//!
//! For an encrypted message the provider's sections describe ciphertext, so
//! every section the client asks for is computed here from the decrypted
//! message instead; unencrypted messages get the same treatment when the
//! gateway had to change them (rule 6: a `Letterlock-Security` header from
//! outside is removed). Pure functions, no I/O.

use std::borrow::Cow;
use std::num::NonZeroU32;

use letterlock_mime::entity::Entity;
use letterlock_mime::header as mime;

/// What part of a message a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec<'a> {
    /// `BODY[]`, `RFC822`: the whole message.
    Whole,
    /// `BODY[1.2]`: the body of a part (for a message/rfc822 part, the
    /// whole encapsulated message).
    Part(&'a [NonZeroU32]),
    /// `BODY[HEADER]`, `BODY[1.HEADER]`, `RFC822.HEADER`: the header section
    /// with its blank line, of the message or of an encapsulated one.
    Header(&'a [NonZeroU32]),
    /// `BODY[HEADER.FIELDS (…)]`: only the named fields, and the blank line.
    HeaderFields(&'a [NonZeroU32], &'a [&'a [u8]]),
    /// `BODY[HEADER.FIELDS.NOT (…)]`: all but the named fields.
    HeaderFieldsNot(&'a [NonZeroU32], &'a [&'a [u8]]),
    /// `BODY[TEXT]`, `RFC822.TEXT`: the body, without the header.
    Text(&'a [NonZeroU32]),
    /// `BODY[1.MIME]`: a part's own MIME header, with its blank line.
    Mime(&'a [NonZeroU32]),
}

/// How deep part numbers may go; deeper paths name no part.
const MAX_DEPTH: usize = 64;

/// The bytes of `spec` in `message`. A part that does not exist is empty.
pub fn section<'a>(message: &'a [u8], spec: &Spec<'_>) -> Cow<'a, [u8]> {
    let empty = Cow::Borrowed(&[][..]);
    match spec {
        Spec::Whole => Cow::Borrowed(message),
        Spec::Part(path) => match find(message, path) {
            Some(part) => Cow::Borrowed(part.body),
            None => empty,
        },
        Spec::Mime(path) => match find(message, path) {
            Some(part) if !path.is_empty() => Cow::Borrowed(header_with_blank(&part)),
            _ => empty,
        },
        Spec::Header(path) => match message_at(message, path) {
            Some(inner) => Cow::Borrowed(header_with_blank(&inner)),
            None => empty,
        },
        Spec::Text(path) => match message_at(message, path) {
            Some(inner) => Cow::Borrowed(inner.body),
            None => empty,
        },
        Spec::HeaderFields(path, names) | Spec::HeaderFieldsNot(path, names) => {
            let keep = matches!(spec, Spec::HeaderFields(..));
            let Some(inner) = message_at(message, path) else {
                return empty;
            };
            let mut out = Vec::new();
            for field in mime::fields(inner.header) {
                let named = names
                    .iter()
                    .any(|n| field.name.as_bytes().eq_ignore_ascii_case(n));
                if named == keep {
                    out.extend_from_slice(field.raw);
                    if !field.raw.ends_with(b"\n") {
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            // The blank line is part of every header fetch (RFC 3501).
            out.extend_from_slice(b"\r\n");
            Cow::Owned(out)
        }
    }
}

/// `<origin.count>`: the substring, truncated at the end; empty when the
/// origin is past the end.
pub fn partial(bytes: &[u8], origin: u32, count: u32) -> &[u8] {
    let start = (origin as usize).min(bytes.len());
    let end = start.saturating_add(count as usize).min(bytes.len());
    &bytes[start..end]
}

/// The header section up to and including the blank line.
fn header_with_blank<'a>(entity: &Entity<'a>) -> &'a [u8] {
    &entity.bytes[..entity.bytes.len() - entity.body.len()]
}

/// The part a path of part numbers names. The empty path is the message.
///
/// Numbering as Dovecot does it: the children of a multipart are 1…n; a
/// message (the top one, or one inside a message/rfc822 part) that is not
/// multipart is its own part 1; a leaf inside a multipart is its own part 1
/// once more (`2.1` = `2`), but a message standing in as its own part 1 has
/// no further parts (`1.1` of a single-part message is empty).
fn find<'a>(message: &'a [u8], path: &[NonZeroU32]) -> Option<Entity<'a>> {
    if path.len() > MAX_DEPTH {
        return None;
    }
    let mut entity = Entity::parse(message);
    // The entity is a message (top, or encapsulated), not a part.
    let mut is_message = true;
    // The entity is already standing in as its own part 1.
    let mut stand_in = false;
    for number in path {
        let index = number.get() as usize - 1;
        if !is_message && entity.content_type().is("message/rfc822") {
            entity = Entity::parse(entity.body);
            stand_in = false;
        }
        let content_type = entity.content_type();
        if content_type.mime.starts_with("multipart/") {
            let boundary = content_type.param("boundary")?;
            let parts = entity.parts(boundary)?;
            entity = Entity::parse(parts.get(index)?);
            stand_in = false;
        } else if index == 0 && !stand_in {
            stand_in = true;
        } else {
            return None;
        }
        is_message = false;
    }
    Some(entity)
}

/// The message a HEADER/TEXT section refers to: the top-level message for
/// an empty path, else the message encapsulated in a message/rfc822 part.
fn message_at<'a>(message: &'a [u8], path: &[NonZeroU32]) -> Option<Entity<'a>> {
    if path.is_empty() {
        return Some(Entity::parse(message));
    }
    let part = find(message, path)?;
    part.content_type()
        .is("message/rfc822")
        .then(|| Entity::parse(part.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(numbers: &[u32]) -> Vec<NonZeroU32> {
        numbers
            .iter()
            .map(|n| NonZeroU32::new(*n).expect("non-zero"))
            .collect()
    }

    const NESTED: &[u8] = b"From: a@example.org\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n\
preamble\r\n--out\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--out\r\n\
Content-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: inner\r\n\
Content-Type: multipart/alternative; boundary=\"in\"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n\
--in\r\nContent-Type: text/html\r\n\r\n<p>inner html</p>\r\n--in--\r\n\r\n--out\r\n\
Content-Type: message/rfc822\r\n\r\nSubject: single\r\n\r\nsingle body\r\n--out--\r\n";

    fn s(spec: Spec<'_>) -> String {
        String::from_utf8(section(NESTED, &spec).into_owned()).expect("utf-8")
    }

    #[test]
    fn whole_header_and_text() {
        assert_eq!(section(NESTED, &Spec::Whole), NESTED);
        let header = s(Spec::Header(&[]));
        assert!(header.starts_with("From: a@example.org\r\n"));
        assert!(header.ends_with("boundary=\"out\"\r\n\r\n"));
        let text = s(Spec::Text(&[]));
        assert!(text.starts_with("preamble\r\n--out\r\n"));
        assert_eq!(header.len() + text.len(), NESTED.len());
    }

    #[test]
    fn part_numbers_follow_rfc_3501() {
        assert_eq!(s(Spec::Part(&p(&[1]))), "first part");
        assert_eq!(s(Spec::Mime(&p(&[1]))), "Content-Type: text/plain\r\n\r\n");
        // A message/rfc822 part: its body is the whole encapsulated message.
        assert!(s(Spec::Part(&p(&[2]))).starts_with("From: b@example.org\r\n"));
        assert_eq!(
            s(Spec::Header(&p(&[2]))),
            "From: b@example.org\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=\"in\"\r\n\r\n"
        );
        assert!(s(Spec::Text(&p(&[2]))).starts_with("--in\r\n"));
        assert_eq!(s(Spec::Part(&p(&[2, 1]))), "inner plain");
        assert_eq!(s(Spec::Part(&p(&[2, 2]))), "<p>inner html</p>");
        assert_eq!(
            s(Spec::Mime(&p(&[2, 2]))),
            "Content-Type: text/html\r\n\r\n"
        );
        // A single-part encapsulated message: its body is part 3.1.
        assert_eq!(s(Spec::Part(&p(&[3, 1]))), "single body");
        assert_eq!(s(Spec::Header(&p(&[3]))), "Subject: single\r\n\r\n");
        // Parts that do not exist are empty.
        assert_eq!(s(Spec::Part(&p(&[4]))), "");
        assert_eq!(s(Spec::Part(&p(&[1, 2]))), "");
        assert_eq!(s(Spec::Header(&p(&[1]))), "");
        assert_eq!(s(Spec::Mime(&[])), "");
    }

    #[test]
    fn single_part_message_is_part_one() {
        let m = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
        assert_eq!(section(m, &Spec::Part(&p(&[1]))), &b"hello\r\n"[..]);
        assert_eq!(
            section(m, &Spec::Mime(&p(&[1]))),
            &b"Subject: x\r\nContent-Type: text/plain\r\n\r\n"[..]
        );
        assert_eq!(section(m, &Spec::Part(&p(&[2]))), &b""[..]);
    }

    #[test]
    fn header_fields_and_not() {
        let m = b"From: a@example.org\r\nSubject: folded\r\n and more\r\nTo: b@example.org\r\n\r\nbody\r\n";
        let names: &[&[u8]] = &[b"subject", b"TO"];
        assert_eq!(
            section(m, &Spec::HeaderFields(&[], names)),
            &b"Subject: folded\r\n and more\r\nTo: b@example.org\r\n\r\n"[..]
        );
        assert_eq!(
            section(m, &Spec::HeaderFieldsNot(&[], names)),
            &b"From: a@example.org\r\n\r\n"[..]
        );
        let none: &[&[u8]] = &[b"X-Nothing"];
        assert_eq!(section(m, &Spec::HeaderFields(&[], none)), &b"\r\n"[..]);
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"0123456789", 2, 3), b"234");
        assert_eq!(partial(b"0123456789", 8, 100), b"89");
        assert_eq!(partial(b"0123456789", 10, 1), b"");
        assert_eq!(partial(b"0123456789", u32::MAX, u32::MAX), b"");
    }

    #[test]
    fn deep_paths_and_garbage_do_not_panic() {
        let deep = vec![NonZeroU32::new(1).expect("1"); 1000];
        assert_eq!(section(NESTED, &Spec::Part(&deep)), &b""[..]);
        for junk in [
            &b""[..],
            b"\r\n",
            b"no header at all",
            b"Content-Type: multipart/mixed\r\n\r\n--",
        ] {
            for spec in [
                Spec::Whole,
                Spec::Part(&p(&[1, 1])),
                Spec::Header(&p(&[1])),
                Spec::Text(&[]),
                Spec::Mime(&p(&[1])),
            ] {
                let _ = section(junk, &spec);
            }
        }
    }
}
