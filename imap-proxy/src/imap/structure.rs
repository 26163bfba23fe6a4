//! `ENVELOPE`, `BODY` and `BODYSTRUCTURE` (RFC 3501 §7.4.2) computed from
//! the bytes the gateway serves, for messages whose provider copy says
//! nothing true about them (ciphertext). Values are the raw header bytes,
//! unfolded, as IMAP servers give them; sizes and line counts are of the
//! served bytes, so they agree with the sections of [`crate::imap::section`].

use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_next::imap_types::core::{IString, NString, Vec1};
use imap_next::imap_types::envelope::{Address, Envelope};
use letterlock_mime::entity::{ContentType, Entity};
use letterlock_mime::header::{self as mime, Field};

/// How deep MIME nesting is followed; deeper parts are described as opaque.
const MAX_DEPTH: usize = 32;

/// The ENVELOPE of a message.
pub fn envelope(message: &[u8]) -> Envelope<'static> {
    let entity = Entity::parse(message);
    envelope_of(entity.header)
}

/// BODYSTRUCTURE (`extended`) or BODY of a message.
pub fn body_structure(message: &[u8], extended: bool) -> BodyStructure<'static> {
    structure(&Entity::parse(message), extended, 0)
}

fn envelope_of(header: &[u8]) -> Envelope<'static> {
    let fields = mime::fields(header);
    // As Dovecot does: a repeated field counts by its last occurrence, a
    // repeated address field by all of them.
    let last = |name: &str| fields.iter().rev().find(|f| f.is(name)).map(raw_value);
    let addresses = |name: &str| -> Vec<Address<'static>> {
        fields
            .iter()
            .filter(|f| f.is(name))
            .flat_map(|f| address_list(&raw_value(f)))
            .collect()
    };
    let from = addresses("From");
    let sender = match addresses("Sender") {
        s if s.is_empty() => from.clone(),
        s => s,
    };
    let reply_to = match addresses("Reply-To") {
        r if r.is_empty() => from.clone(),
        r => r,
    };
    Envelope {
        date: nstring(last("Date")),
        subject: nstring(last("Subject")),
        from,
        sender,
        reply_to,
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        in_reply_to: nstring(last("In-Reply-To")),
        message_id: nstring(last("Message-ID")),
    }
}

fn structure(entity: &Entity<'_>, extended: bool, depth: usize) -> BodyStructure<'static> {
    let content_type = entity.content_type();
    let fields = mime::fields(entity.header);
    let first = |name: &str| fields.iter().find(|f| f.is(name)).map(raw_value);
    if content_type.mime.starts_with("multipart/") && depth < MAX_DEPTH {
        let parts = content_type
            .param("boundary")
            .and_then(|b| entity.parts(b))
            .unwrap_or_default();
        let bodies: Vec<BodyStructure<'static>> = parts
            .iter()
            .map(|p| structure(&Entity::parse(p), extended, depth + 1))
            .collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            let (_, subtype) = split_mime(&content_type);
            return BodyStructure::Multi {
                bodies,
                subtype: istring(subtype.as_bytes()),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: parameters(first("Content-Type").as_deref()),
                    tail: Some(disposition_tail(&first)),
                }),
            };
        }
    }
    let (kind, subtype) = split_mime(&content_type);
    let mut parameter_list = parameters(first("Content-Type").as_deref());
    let has_charset = parameter_list
        .iter()
        .any(|(name, _)| name.as_ref().eq_ignore_ascii_case(b"charset"));
    if kind == "text" && !has_charset {
        parameter_list.push((istring(b"charset"), istring(b"us-ascii")));
    }
    let basic = BasicFields {
        parameter_list,
        id: nstring(first("Content-ID")),
        description: nstring(first("Content-Description")),
        content_transfer_encoding: istring(
            &first("Content-Transfer-Encoding").unwrap_or_else(|| b"7bit".to_vec()),
        ),
        size: u32::try_from(entity.body.len()).unwrap_or(u32::MAX),
    };
    let lines = line_count(entity.body);
    let specific = if kind == "text" {
        SpecificFields::Text {
            subtype: istring(subtype.as_bytes()),
            number_of_lines: lines,
        }
    } else if content_type.is("message/rfc822") && depth < MAX_DEPTH {
        let inner = Entity::parse(entity.body);
        SpecificFields::Message {
            envelope: Box::new(envelope_of(inner.header)),
            body_structure: Box::new(structure(&inner, extended, depth + 1)),
            number_of_lines: lines,
        }
    } else {
        SpecificFields::Basic {
            r#type: istring(kind.as_bytes()),
            subtype: istring(subtype.as_bytes()),
        }
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring(first("Content-MD5")),
            tail: Some(disposition_tail(&first)),
        }),
    }
}

/// Disposition, language and location, the tail shared by both kinds.
fn disposition_tail(first: &dyn Fn(&str) -> Option<Vec<u8>>) -> Disposition<'static> {
    let disposition = first("Content-Disposition").map(|raw| {
        let parsed = ContentType::of(&[b"Content-Type: ".as_slice(), &raw, b"\r\n"].concat());
        // Parsed as if it were a Content-Type: "attachment" has no subtype.
        let kind = parsed.mime.split('/').next().unwrap_or("").to_string();
        (istring(kind.as_bytes()), parameters(Some(&raw)))
    });
    let language = first("Content-Language").map(|raw| {
        String::from_utf8_lossy(&raw)
            .split(',')
            .map(|l| istring(l.trim().as_bytes()))
            .collect::<Vec<_>>()
    });
    Disposition {
        disposition,
        tail: Some(Language {
            language: language.unwrap_or_default(),
            tail: Some(Location {
                location: nstring(first("Content-Location")),
                extensions: Vec::new(),
            }),
        }),
    }
}

fn split_mime(content_type: &ContentType) -> (String, String) {
    match content_type.mime.split_once('/') {
        Some((kind, sub)) => (kind.to_string(), sub.to_string()),
        None => (content_type.mime.clone(), String::new()),
    }
}

/// The parameters of a Content-Type or Content-Disposition value as
/// Dovecot reports them: quoting removed, RFC 2231 continuations joined,
/// but extended values (`name*=utf-8''…`) left encoded under their `name*`
/// key. Decoding them here would put 8-bit text into the structure where
/// clients expect the encoded form (they decode it themselves).
fn parameters(value: Option<&[u8]>) -> Vec<(IString<'static>, IString<'static>)> {
    let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
    let value = value.unwrap_or_default();
    let mut at = match next_separator(value, 0) {
        Some(at) => at,
        None => return Vec::new(),
    };
    while at < value.len() && raw.len() < MAX_PARAMETERS {
        at += 1; // the ';'
        let name_end = value[at..]
            .iter()
            .position(|&b| b == b'=' || b == b';')
            .map_or(value.len(), |p| at + p);
        let name = String::from_utf8_lossy(&value[at..name_end])
            .trim()
            .to_string();
        if name_end >= value.len() || value[name_end] == b';' {
            at = name_end;
            continue;
        }
        let mut v = name_end + 1;
        while v < value.len() && value[v].is_ascii_whitespace() {
            v += 1;
        }
        let (parsed, end) = if value.get(v) == Some(&b'"') {
            quoted(value, v + 1)
        } else {
            let end = next_separator(value, v).unwrap_or(value.len());
            (value[v..end].trim_ascii_end().to_vec(), end)
        };
        if !name.is_empty() {
            raw.push((name, parsed));
        }
        at = next_separator(value, end).unwrap_or(value.len());
    }
    join_continuations(raw)
        .into_iter()
        .map(|(name, value)| (istring(name.as_bytes()), istring(&value)))
        .collect()
}

/// A header with more parameters than this is hostile; the rest is ignored.
const MAX_PARAMETERS: usize = 256;

/// The next `;` at or after `from` outside a quoted string.
fn next_separator(value: &[u8], from: usize) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, &b) in value.iter().enumerate().skip(from) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// A quoted string starting after its opening quote: its content without
/// escapes, and where it ends.
fn quoted(value: &[u8], from: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = from;
    while i < value.len() {
        match value[i] {
            b'\\' if i + 1 < value.len() => {
                out.push(value[i + 1]);
                i += 2;
            }
            b'"' => return (out, i + 1),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (out, i)
}

/// `name*0`, `name*1*`, … joined into one `name` (or `name*` when the
/// first piece is extended), in the place of the first piece.
fn join_continuations(raw: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pieces: Vec<(String, u32, Vec<u8>, bool)> = Vec::new();
    for (name, value) in raw {
        let (base, rest) = match name.split_once('*') {
            Some((base, rest)) => (base, rest),
            None => {
                out.push((name, value));
                continue;
            }
        };
        let (number, extended) = match rest.strip_suffix('*') {
            Some(number) => (number, true),
            None => (rest, false),
        };
        match number.parse::<u32>() {
            Ok(n) if !number.is_empty() => {
                pieces.push((base.to_ascii_lowercase(), n, value, extended));
                if !out
                    .iter()
                    .any(|(k, _)| k.trim_end_matches('*').eq_ignore_ascii_case(base))
                {
                    out.push((base.to_string(), Vec::new()));
                }
            }
            _ => out.push((name, value)),
        }
    }
    pieces.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (name, value) in &mut out {
        let mine: Vec<&(String, u32, Vec<u8>, bool)> = pieces
            .iter()
            .filter(|p| p.0.eq_ignore_ascii_case(name))
            .collect();
        if mine.is_empty() || !value.is_empty() {
            continue;
        }
        if mine[0].3 {
            name.push('*');
        }
        for piece in mine {
            value.extend_from_slice(&piece.2);
        }
    }
    out
}

/// Lines in a body, counted as line ends (as Dovecot counts them: a last
/// line without its line end does not count).
fn line_count(body: &[u8]) -> u32 {
    u32::try_from(body.iter().filter(|&&b| b == b'\n').count()).unwrap_or(u32::MAX)
}

/// A field's value as raw bytes: after the colon, unfolded, trimmed.
fn raw_value(field: &Field<'_>) -> Vec<u8> {
    let value = &field.raw[field.name.len() + 1..];
    let unfolded: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let start = unfolded
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(unfolded.len());
    let end = unfolded
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    unfolded[start..end].to_vec()
}

/// A string for IMAP: quoted when it can be, else a literal. NUL cannot be
/// sent at all and is dropped.
fn istring(bytes: &[u8]) -> IString<'static> {
    let clean: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    IString::try_from(clean).unwrap_or_else(|_| IString::try_from("").expect("empty string"))
}

fn nstring(value: Option<Vec<u8>>) -> NString<'static> {
    match value {
        Some(v) => NString(Some(istring(&v))),
        None => NString::NIL,
    }
}

/// An address list (RFC 5322 §3.4) as ENVELOPE addresses, groups included
/// (start: mailbox = group name, host NIL; end: all NIL).
fn address_list(value: &[u8]) -> Vec<Address<'static>> {
    let nil = || Address {
        name: NString::NIL,
        adl: NString::NIL,
        mailbox: NString::NIL,
        host: NString::NIL,
    };
    let mut out = Vec::new();
    let mut rest = value;
    while !trim(rest).is_empty() {
        let comma = find_top_level(rest, b',').unwrap_or(rest.len());
        match find_top_level(rest, b':').filter(|&colon| colon < comma) {
            // A group: `name: a, b;`
            Some(colon) => {
                let name = trim(&rest[..colon]);
                let after = &rest[colon + 1..];
                let end = find_top_level(after, b';').unwrap_or(after.len());
                out.push(Address {
                    mailbox: nstring(Some(unquote(name))),
                    ..nil()
                });
                for member in split_top_level(&after[..end], b',') {
                    out.extend(mailbox(trim(member)));
                }
                out.push(nil());
                rest = after.get(end + 1..).unwrap_or(&[]);
            }
            None => {
                out.extend(mailbox(trim(&rest[..comma])));
                rest = rest.get(comma + 1..).unwrap_or(&[]);
            }
        }
        // The separator after a group.
        rest = trim(rest);
        if let Some(r) = rest.strip_prefix(b",") {
            rest = r;
        }
    }
    out
}

/// One mailbox: `Name <local@host>` or `local@host (comment)`.
fn mailbox(item: &[u8]) -> Option<Address<'static>> {
    if item.is_empty() {
        return None;
    }
    let (name, spec) = match (
        find_top_level(item, b'<'),
        item.iter().rposition(|&b| b == b'>'),
    ) {
        (Some(open), Some(close)) if close > open => {
            let name = trim(&item[..open]);
            (
                (!name.is_empty()).then(|| unquote(name)),
                trim(&item[open + 1..close]).to_vec(),
            )
        }
        _ => (None, strip_comments(item)),
    };
    // A source route before the address (`@a,@b:user@host`) is the adl.
    let (adl, spec) = match spec.iter().position(|&b| b == b':') {
        Some(i) if spec.first() == Some(&b'@') => {
            (Some(spec[..i].to_vec()), spec[i + 1..].to_vec())
        }
        _ => (None, spec),
    };
    let (local, host) = match spec.iter().rposition(|&b| b == b'@') {
        Some(at) => (spec[..at].to_vec(), Some(spec[at + 1..].to_vec())),
        None => (spec, None),
    };
    Some(Address {
        name: nstring(name),
        adl: nstring(adl),
        mailbox: nstring(Some(unquote(&local))),
        host: nstring(host),
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `"a \"b\""` → `a "b"`; anything else as it is.
fn unquote(bytes: &[u8]) -> Vec<u8> {
    match bytes
        .strip_prefix(b"\"")
        .and_then(|b| b.strip_suffix(b"\""))
    {
        Some(inner) => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                if b == b'\\' && !escaped {
                    escaped = true;
                    continue;
                }
                escaped = false;
                out.push(b);
            }
            out
        }
        None => bytes.to_vec(),
    }
}

fn strip_comments(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    for &b in bytes {
        match b {
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(b),
            _ => {}
        }
    }
    trim(&out).to_vec()
}

/// Splits at `sep` outside quotes, comments and angle brackets.
fn split_top_level(bytes: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut state = Scan::default();
    for (i, &b) in bytes.iter().enumerate() {
        if state.top_level() && b == sep {
            out.push(&bytes[start..i]);
            start = i + 1;
        } else {
            state.step(b);
        }
    }
    out.push(&bytes[start..]);
    out
}

fn find_top_level(bytes: &[u8], wanted: u8) -> Option<usize> {
    let mut state = Scan::default();
    for (i, &b) in bytes.iter().enumerate() {
        if state.top_level() && b == wanted {
            return Some(i);
        }
        state.step(b);
    }
    None
}

/// Where a scan of a header value is: inside quotes, comments, `<…>`.
#[derive(Default)]
struct Scan {
    quoted: bool,
    escaped: bool,
    comment: usize,
    angle: bool,
}

impl Scan {
    fn top_level(&self) -> bool {
        !self.quoted && self.comment == 0 && !self.angle
    }

    fn step(&mut self, b: u8) {
        if self.escaped {
            self.escaped = false;
            return;
        }
        match b {
            b'\\' if self.quoted || self.comment > 0 => self.escaped = true,
            b'"' if self.comment == 0 => self.quoted = !self.quoted,
            b'(' if !self.quoted => self.comment += 1,
            b')' if !self.quoted && self.comment > 0 => self.comment -= 1,
            b'<' if !self.quoted && self.comment == 0 => self.angle = true,
            b'>' if !self.quoted && self.comment == 0 => self.angle = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: &str) -> Vec<(String, String)> {
        parameters(Some(value.as_bytes()))
            .into_iter()
            .map(|(k, v)| {
                let s = |i: IString<'_>| String::from_utf8_lossy(&i.into_inner()).into_owned();
                (s(k), s(v))
            })
            .collect()
    }

    #[test]
    fn parameters_are_unquoted_and_rfc2231_stays_encoded() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            params(r#"text/plain; charset="utf-8" ; format=flowed"#),
            pairs(&[("charset", "utf-8"), ("format", "flowed")])
        );
        assert_eq!(
            params(r#"attachment; filename="a \"b\"; c.txt"; size=3"#),
            pairs(&[("filename", r#"a "b"; c.txt"#), ("size", "3")])
        );
        assert_eq!(
            params("attachment; filename*=utf-8''bericht-%C3%BC.pdf"),
            pairs(&[("filename*", "utf-8''bericht-%C3%BC.pdf")])
        );
        assert_eq!(
            params("application/x; name*0*=utf-8''a%C3%BC; name*1=b.pdf; x=1"),
            pairs(&[("name*", "utf-8''a%C3%BCb.pdf"), ("x", "1")])
        );
        assert_eq!(
            params("application/x; name*1=\"two\"; name*0=one"),
            pairs(&[("name", "onetwo")])
        );
        assert!(params("text/plain").is_empty());
        assert!(params("text/plain; ; =x; novalue").is_empty());
        assert_eq!(params("a/b; unterminated=\"abc").len(), 1);
    }

    fn show(list: &[Address<'_>]) -> Vec<String> {
        let s = |n: &NString<'_>| {
            n.0.as_ref()
                .map(|i| String::from_utf8_lossy(&i.clone().into_inner()).into_owned())
                .unwrap_or_else(|| "NIL".into())
        };
        list.iter()
            .map(|a| {
                format!(
                    "{}|{}|{}|{}",
                    s(&a.name),
                    s(&a.adl),
                    s(&a.mailbox),
                    s(&a.host)
                )
            })
            .collect()
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            show(&address_list(
                br#""Doe, John" <john@example.org>, plain@example.net (Plain Person), =?utf-8?q?J=C3=BCrgen?= <j@example.de>"#
            )),
            [
                "Doe, John|NIL|john|example.org",
                "NIL|NIL|plain|example.net",
                "=?utf-8?q?J=C3=BCrgen?=|NIL|j|example.de"
            ]
        );
        assert_eq!(
            show(&address_list(
                b"Team: a@example.org, B <b@example.org>;, c@example.org"
            )),
            [
                "NIL|NIL|Team|NIL",
                "NIL|NIL|a|example.org",
                "B|NIL|b|example.org",
                "NIL|NIL|NIL|NIL",
                "NIL|NIL|c|example.org"
            ]
        );
        assert_eq!(
            show(&address_list(b"undisclosed-recipients:;")),
            ["NIL|NIL|undisclosed-recipients|NIL", "NIL|NIL|NIL|NIL"]
        );
        assert_eq!(
            show(&address_list(b"<@relay.example:user@example.org>")),
            ["NIL|@relay.example|user|example.org"]
        );
        assert!(address_list(b"").is_empty());
        assert_eq!(show(&address_list(b"nobody")), ["NIL|NIL|nobody|NIL"]);
    }

    #[test]
    fn hostile_structures_are_bounded() {
        let mut deep = String::from("Subject: deep\r\n");
        for i in 0..500 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        let _ = body_structure(deep.as_bytes(), true);
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed\r\n\r\nx",
            b"From: <<<>>>,,,\"\r\n\r\n",
        ] {
            let _ = body_structure(junk, true);
            let _ = envelope(junk);
        }
    }
}
