//! The message a user sees after decryption: the protected header
//! restored over the outer one (RFC 9788), the engine's own fields and any
//! forged status header removed.

use super::*;

/// Outer fields kept beside a protected header: what the provider's
/// servers added on the way (trace, authentication results, list
/// information). Everything else outside is unauthenticated and would stand
/// next to the sender's own fields as if they had written it.
const TRANSPORT_FIELDS: &[&str] = &[
    "Received",
    "Return-Path",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "Authentication-Results",
    "Received-SPF",
    "DKIM-Signature",
    "Autocrypt",
];
const TRANSPORT_PREFIXES: &[&str] = &["ARC-", "List-", "X-Spam"];

/// Whether the sender protected the header inside the encryption (RFC 9788:
/// `hp` on the inner Content-Type, or a From inside).
pub(super) fn header_protected(content: &[u8]) -> bool {
    let inner = Entity::parse(content);
    inner.content_type().param("hp").is_some()
        || mime::fields(inner.header).iter().any(|f| f.is("From"))
}

/// The message the user sees: fields that came only from outside, then the
/// decrypted entity's fields, which win over outer ones of the same name,
/// then its body.
///
/// When the sender protected the header (RFC 9788: `hp` on the inner
/// Content-Type, or a From inside), the inner header is the whole header:
/// of the outer fields only transport ones are kept. An attacker who
/// re-sends someone's ciphertext must not be able to add a Reply-To, Cc or
/// Subject that the reader takes for the sender's ("Re: What's up Johnny?").
/// Without protection (older clients) the outer fields are all there is.
pub(super) fn restore(root: &Entity<'_>, content: &[u8]) -> Vec<u8> {
    let eol = line_ending(root.header);
    let inner = Entity::parse(content);
    let inner_fields = mime::fields(inner.header);
    let protected = header_protected(content);
    // `get`: a hostile field name may have a multi-byte character there.
    let starts_with = |f: &Field<'_>, prefix: &str| {
        f.name
            .get(..prefix.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(prefix))
    };
    let is_content = |f: &Field<'_>| starts_with(f, "Content-") || f.is("MIME-Version");
    let is_transport = |f: &Field<'_>| {
        TRANSPORT_FIELDS.iter().any(|n| f.is(n))
            || TRANSPORT_PREFIXES.iter().any(|p| starts_with(f, p))
    };
    let mut out = Vec::with_capacity(content.len() + root.header.len());
    for f in mime::fields(root.header) {
        let shadowed = inner_fields.iter().any(|i| i.is(f.name));
        let kept = !protected || is_transport(&f);
        if kept && !shadowed && !is_content(&f) && !is_engine_field(&f) {
            push_raw(&mut out, &f, eol);
        }
    }
    if !inner_fields.iter().any(|f| f.is("MIME-Version")) {
        mime::push_field(&mut out, "MIME-Version", "1.0", eol);
    }
    for f in inner_fields.iter().filter(|f| !is_engine_field(f)) {
        push_raw(&mut out, f, eol);
    }
    out.extend_from_slice(line_ending(content).as_bytes());
    out.extend_from_slice(inner.body);
    out
}

fn is_engine_field(f: &Field<'_>) -> bool {
    ENGINE_FIELDS.iter().any(|n| f.is(n))
}

fn push_raw(out: &mut Vec<u8>, f: &Field<'_>, eol: &str) {
    out.extend_from_slice(f.raw);
    if !f.raw.ends_with(b"\n") {
        out.extend_from_slice(eol.as_bytes());
    }
}

/// Whether a header field carries the status header in any spelling a
/// lenient reader accepts (rule 6: remove as the most lenient client
/// reads, trust as the strictest): the name in any case, blanks before
/// the colon (Thunderbird's libmime backs up over them), and at the start
/// of any piece of the field that a bare CR or LF begins, with leading
/// blanks (a reader that ends lines at a bare CR sees a field there).
pub(crate) fn spells_status_header(field: &[u8]) -> bool {
    let name = STATUS_HEADER.as_bytes();
    field.split(|&b| b == b'\r' || b == b'\n').any(|piece| {
        let piece = piece.trim_ascii_start();
        piece
            .get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
            && piece[name.len()..].trim_ascii_start().first() == Some(&b':')
    })
}

/// The message without any field that [`spells_status_header`] (the whole
/// field, continuation lines included), or `None` if it has none.
pub(crate) fn strip_status_spellings(message: &[u8]) -> Option<Vec<u8>> {
    let (header, _) = mime::split_header(message);
    let fields = mime::fields(header);
    if !fields.iter().any(|f| spells_status_header(f.raw)) {
        return None;
    }
    let mut out = Vec::with_capacity(message.len());
    for f in fields.iter().filter(|f| !spells_status_header(f.raw)) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(&message[header.len()..]);
    Some(out)
}

/// The message with every header field called one of `names` removed.
pub(crate) fn strip_fields(message: &[u8], names: &[&str]) -> Vec<u8> {
    let (header, _) = mime::split_header(message);
    let fields = mime::fields(header);
    if !fields.iter().any(|f| names.iter().any(|n| f.is(n))) {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len());
    for f in fields.iter().filter(|f| !names.iter().any(|n| f.is(n))) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(&message[header.len()..]);
    out
}

/// The From address of a message as it arrived, if it has exactly one:
/// the address whose held key may sign it ([`SignerKeys`]). A protected
/// From inside the encryption must name the same address for a signature
/// to count.
pub fn sender_address(message: &[u8]) -> Option<String> {
    let (header, _) = mime::split_header(message);
    single_from(header)
}

/// The From address, if the message has exactly one (one field, one
/// mailbox), as mail-parser's RFC 5322 parser reads it.
pub(super) fn single_from(header: &[u8]) -> Option<String> {
    letterlock_mime::sender(header).map(|m| m.address)
}

pub(super) fn recipients(header: &[u8]) -> Vec<String> {
    ["To", "Cc"]
        .iter()
        .flat_map(|n| mime::values(header, n))
        .flat_map(|v| mime::addresses(&v))
        .collect()
}
