//! FETCH responses for messages the gateway serves itself.
//!
//! The proxy forwards a client's FETCH to the provider unchanged (so that
//! flags, `\Seen` and UIDs stay the provider's business) and, for a
//! message whose served bytes differ from the provider's (decrypted, or
//! cleaned of a forged status header), replaces every item that describes
//! content with one computed from the served bytes by [`crate::imap::section`]
//! and [`crate::imap::structure`]. Items the client did not ask for (the proxy's
//! own detection items) are dropped. Pure functions, no I/O.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{AString, IString, Literal, NString};
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName, Section};
use imap_next::imap_types::ToStatic;

use crate::imap::section::{partial, section, Spec};
use crate::imap::structure::{body_structure, envelope};

/// What a FETCH needs of the served message: nothing (UID, FLAGS,
/// INTERNALDATE and MODSEQ are the provider's), only its size, its size and header
/// section (a mail client's header sync), or its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    Nothing,
    Size,
    Header,
    Bytes,
}

/// What the items a client asked for need of the served message.
pub fn needs(requested: &[MessageDataItemName<'_>]) -> Needs {
    requested
        .iter()
        .map(|name| match name {
            name if is_metadata(name) => Needs::Nothing,
            MessageDataItemName::Rfc822Size => Needs::Size,
            // The top-level header, whole or some of its fields: cut from
            // the header section alone.
            MessageDataItemName::Rfc822Header | MessageDataItemName::Envelope => Needs::Header,
            MessageDataItemName::BodyExt {
                section:
                    Some(
                        Section::Header(None)
                        | Section::HeaderFields(None, _)
                        | Section::HeaderFieldsNot(None, _),
                    ),
                ..
            } => Needs::Header,
            _ => Needs::Bytes,
        })
        .max()
        .unwrap_or(Needs::Nothing)
}

/// [`rewrite`] for a FETCH that [`needs`] only the header: `header` is the
/// served message's header section, `served_size` its whole size.
pub fn rewrite_from_header(
    provider_items: Vec<MessageDataItem<'static>>,
    requested: &[MessageDataItemName<'_>],
    header: &[u8],
    served_size: u32,
) -> Vec<MessageDataItem<'static>> {
    rewrite(provider_items, requested, header)
        .into_iter()
        .map(|item| match item {
            MessageDataItem::Rfc822Size(_) => MessageDataItem::Rfc822Size(served_size),
            other => other,
        })
        .collect()
}

/// [`rewrite`] for a FETCH that [`needs`] only the served size.
pub fn rewrite_size(
    provider_items: Vec<MessageDataItem<'static>>,
    requested: &[MessageDataItemName<'_>],
    served_size: u32,
) -> Vec<MessageDataItem<'static>> {
    provider_items
        .into_iter()
        .filter(|item| requested.iter().any(|name| answers(name, item)))
        .map(|item| match item {
            MessageDataItem::Rfc822Size(_) => MessageDataItem::Rfc822Size(served_size),
            other => other,
        })
        .collect()
}

/// Rewrites the provider's items for one message into the client's answer.
///
/// `requested` is what the client asked for (with `UID` added for a
/// `UID FETCH`, whose answers always carry it); `served` the message as the
/// gateway shows it. Items the client asked for that the provider did not
/// send (it may split a response) are not invented.
pub fn rewrite(
    provider_items: Vec<MessageDataItem<'static>>,
    requested: &[MessageDataItemName<'_>],
    served: &[u8],
) -> Vec<MessageDataItem<'static>> {
    let mut out = Vec::with_capacity(provider_items.len());
    for item in provider_items {
        let Some(name) = requested.iter().find(|name| answers(name, &item)) else {
            continue;
        };
        if is_metadata_item(&item) {
            out.push(item);
            continue;
        }
        let answer = match (computed(name, served), item) {
            // The section as the provider echoed it (its spelling of field
            // names), as for the messages passed through.
            (
                Some(MessageDataItem::BodyExt { origin, data, .. }),
                MessageDataItem::BodyExt { section, .. },
            ) => MessageDataItem::BodyExt {
                section,
                origin,
                data,
            },
            (Some(computed), _) => computed,
            (None, item) => item,
        };
        out.push(answer);
    }
    out
}

/// The client's answer for a message the provider was asked only the
/// metadata of ([`metadata_names`]): its UID, flags, dates and mod-sequence
/// as the provider sent them, every content item computed from `served`.
pub fn answer_from_served(
    provider_items: Vec<MessageDataItem<'static>>,
    requested: &[MessageDataItemName<'_>],
    served: &[u8],
) -> Vec<MessageDataItem<'static>> {
    let mut out: Vec<MessageDataItem<'static>> = provider_items
        .into_iter()
        .filter(|item| is_metadata_item(item) && requested.iter().any(|name| answers(name, item)))
        .collect();
    out.extend(requested.iter().filter_map(|name| computed(name, served)));
    out
}

/// Flags, UID, INTERNALDATE, MODSEQ: the provider's for every message,
/// whoever serves its content.
fn is_metadata_item(item: &MessageDataItem<'_>) -> bool {
    matches!(
        item,
        MessageDataItem::Uid(_)
            | MessageDataItem::Flags(_)
            | MessageDataItem::InternalDate(_)
            | MessageDataItem::ModSeq(_)
    )
}

/// The items that describe no content, which the provider answers for
/// every message alike.
fn is_metadata(name: &MessageDataItemName<'_>) -> bool {
    matches!(
        name,
        MessageDataItemName::Uid
            | MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::ModSeq
    )
}

/// What to ask the provider instead of `requested` when the served content
/// of every message is known (the archive's, or the provider's own for
/// plain mail, fetched apart): the metadata items and `RFC822.SIZE` (to
/// portion out the plain messages' second fetch). `None` where that
/// would change what the client gets: an item that sets `\Seen` (the
/// provider would not see it), or one the gateway does not compute
/// (`BINARY`).
pub fn metadata_names(
    requested: &[MessageDataItemName<'static>],
) -> Option<Vec<MessageDataItemName<'static>>> {
    let computable = |name: &MessageDataItemName<'_>| match name {
        MessageDataItemName::BodyExt { peek, .. } => *peek,
        MessageDataItemName::Body
        | MessageDataItemName::BodyStructure
        | MessageDataItemName::Envelope
        | MessageDataItemName::Rfc822Header
        | MessageDataItemName::Rfc822Size => true,
        // RFC822 and RFC822.TEXT set \Seen; BINARY is not computed.
        _ => false,
    };
    if !requested.iter().all(|n| is_metadata(n) || computable(n)) {
        return None;
    }
    let mut names: Vec<MessageDataItemName<'static>> = requested
        .iter()
        .filter(|n| is_metadata(n))
        .cloned()
        .collect();
    for extra in [MessageDataItemName::Uid, MessageDataItemName::Rfc822Size] {
        if !names.contains(&extra) {
            names.push(extra);
        }
    }
    Some(names)
}

/// The item answering `name` computed from the served message; `None` for
/// the items that are the provider's (UID, flags, dates, mod-sequence).
fn computed(name: &MessageDataItemName<'_>, served: &[u8]) -> Option<MessageDataItem<'static>> {
    Some(match name {
        MessageDataItemName::Body => MessageDataItem::Body(body_structure(served, false)),
        MessageDataItemName::BodyStructure => {
            MessageDataItem::BodyStructure(body_structure(served, true))
        }
        MessageDataItemName::Envelope => MessageDataItem::Envelope(envelope(served)),
        MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(served)),
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(literal(&section(served, &Spec::Header(&[]))))
        }
        MessageDataItemName::Rfc822Text => {
            MessageDataItem::Rfc822Text(literal(&section(served, &Spec::Text(&[]))))
        }
        MessageDataItemName::Rfc822Size => {
            MessageDataItem::Rfc822Size(u32::try_from(served.len()).unwrap_or(u32::MAX))
        }
        MessageDataItemName::BodyExt {
            section: wanted,
            partial: window,
            ..
        } => {
            let bytes = section_bytes(served, wanted.as_ref());
            let bytes = match window {
                Some((origin, count)) => Cow::Borrowed(partial(&bytes, *origin, count.get())),
                None => bytes,
            };
            MessageDataItem::BodyExt {
                section: wanted.to_static(),
                origin: window.map(|(origin, _)| origin),
                data: literal(&bytes),
            }
        }
        _ => return None,
    })
}

/// Whether a provider item answers one of the client's requested names.
fn answers(name: &MessageDataItemName<'_>, item: &MessageDataItem<'_>) -> bool {
    match (name, item) {
        (MessageDataItemName::Body, MessageDataItem::Body(_))
        | (MessageDataItemName::BodyStructure, MessageDataItem::BodyStructure(_))
        | (MessageDataItemName::Envelope, MessageDataItem::Envelope(_))
        | (MessageDataItemName::Flags, MessageDataItem::Flags(_))
        | (MessageDataItemName::InternalDate, MessageDataItem::InternalDate(_))
        | (MessageDataItemName::Rfc822, MessageDataItem::Rfc822(_))
        | (MessageDataItemName::Rfc822Header, MessageDataItem::Rfc822Header(_))
        | (MessageDataItemName::Rfc822Size, MessageDataItem::Rfc822Size(_))
        | (MessageDataItemName::Rfc822Text, MessageDataItem::Rfc822Text(_))
        | (MessageDataItemName::Uid, MessageDataItem::Uid(_)) => true,
        (
            MessageDataItemName::BodyExt {
                section: s,
                partial: p,
                ..
            },
            MessageDataItem::BodyExt {
                section: t, origin, ..
            },
        ) => same_section(s, t) && p.map(|(o, _)| o) == *origin,
        // A FETCH that changes flags (no .PEEK) brings FLAGS unasked.
        (_, MessageDataItem::Flags(_)) => true,
        // The provider sends MODSEQ when the client asked, or enabled
        // CONDSTORE (RFC 7162 3.1.4: then with every FLAGS): it is the
        // provider's, like FLAGS, and always passed on.
        (_, MessageDataItem::ModSeq(_)) => true,
        _ => false,
    }
}

/// Whether two sections name the same thing: servers echo field names in
/// their own spelling and case (`HEADER.FIELDS (FROM)` for `(From)`).
pub(crate) fn same_section(a: &Option<Section<'_>>, b: &Option<Section<'_>>) -> bool {
    let names = |list: &[AString<'_>]| -> Vec<Vec<u8>> {
        list.iter()
            .map(|n| n.as_ref().to_ascii_lowercase())
            .collect()
    };
    match (a, b) {
        (None, None) => true,
        (Some(Section::HeaderFields(p, x)), Some(Section::HeaderFields(q, y)))
        | (Some(Section::HeaderFieldsNot(p, x)), Some(Section::HeaderFieldsNot(q, y))) => {
            p == q && names(x.as_ref()) == names(y.as_ref())
        }
        (a, b) => a == b,
    }
}

/// The bytes of an IMAP section of the served message.
fn section_bytes<'a>(served: &'a [u8], wanted: Option<&Section<'_>>) -> Cow<'a, [u8]> {
    let Some(wanted) = wanted else {
        return Cow::Borrowed(served);
    };
    let path = |part: &Option<imap_next::imap_types::fetch::Part>| -> Vec<NonZeroU32> {
        part.as_ref()
            .map(|p| p.0.as_ref().to_vec())
            .unwrap_or_default()
    };
    let names = |list: &[AString<'_>]| -> Vec<Vec<u8>> {
        list.iter().map(|n| n.as_ref().to_vec()).collect()
    };
    match wanted {
        Section::Part(part) => {
            let path = part.0.as_ref().to_vec();
            section(served, &Spec::Part(&path))
        }
        Section::Header(part) => {
            let path = path(part);
            section(served, &Spec::Header(&path))
        }
        Section::Text(part) => {
            let path = path(part);
            section(served, &Spec::Text(&path))
        }
        Section::Mime(part) => {
            let path = part.0.as_ref().to_vec();
            section(served, &Spec::Mime(&path))
        }
        Section::HeaderFields(part, list) | Section::HeaderFieldsNot(part, list) => {
            let path = path(part);
            let owned = names(list.as_ref());
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            let spec = if matches!(wanted, Section::HeaderFields(..)) {
                Spec::HeaderFields(&path, &refs)
            } else {
                Spec::HeaderFieldsNot(&path, &refs)
            };
            section(served, &spec)
        }
    }
}

/// Message bytes as an IMAP literal. NUL cannot travel in one; it becomes
/// 0x80, as Dovecot does.
fn literal(bytes: &[u8]) -> NString<'static> {
    let data: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == 0 { 0x80 } else { b })
        .collect();
    match Literal::try_from(data) {
        Ok(lit) => NString(Some(IString::Literal(lit))),
        Err(_) => NString::NIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_next::imap_types::core::Vec1;
    use imap_next::imap_types::fetch::Part;

    const SERVED: &[u8] = b"From: bob@example.org\r\nSubject: real subject\r\nLetterlock-Security: encrypted\r\n\r\nsecret text\r\n";

    fn data(item: &MessageDataItem<'_>) -> Vec<u8> {
        match item {
            MessageDataItem::BodyExt { data, .. }
            | MessageDataItem::Rfc822(data)
            | MessageDataItem::Rfc822Header(data)
            | MessageDataItem::Rfc822Text(data) => data
                .0
                .as_ref()
                .map(|d| d.clone().into_inner().into_owned())
                .unwrap_or_default(),
            other => panic!("no data in {other:?}"),
        }
    }

    fn ciphertext_item(
        section: Option<Section<'static>>,
        origin: Option<u32>,
    ) -> MessageDataItem<'static> {
        MessageDataItem::BodyExt {
            section,
            origin,
            data: literal(b"-----BEGIN PGP MESSAGE-----"),
        }
    }

    #[test]
    fn what_a_fetch_needs_of_the_served_message() {
        use MessageDataItemName as N;
        assert_eq!(needs(&[N::Uid, N::Flags, N::InternalDate]), Needs::Nothing);
        assert_eq!(needs(&[N::Uid, N::Rfc822Size, N::Flags]), Needs::Size);
        assert_eq!(needs(&[N::Rfc822Size, N::Envelope]), Needs::Header);
        let fields = |path: Option<Part>| N::BodyExt {
            section: Some(Section::HeaderFields(
                path,
                Vec1::from(AString::try_from("Subject").expect("name")),
            )),
            partial: None,
            peek: true,
        };
        assert_eq!(needs(&[N::Rfc822Size, fields(None)]), Needs::Header);
        // A header inside (an attached message's) is not in the top header.
        let inner = Part(Vec1::from(NonZeroU32::MIN));
        assert_eq!(needs(&[fields(Some(inner))]), Needs::Bytes);
        assert_eq!(needs(&[fields(None), N::BodyStructure]), Needs::Bytes);
        assert_eq!(needs(&[]), Needs::Nothing);
        let provider = vec![
            MessageDataItem::Uid(NonZeroU32::MIN),
            MessageDataItem::Rfc822Size(999),
            MessageDataItem::Flags(vec![]),
        ];
        let answer = rewrite_size(provider, &[N::Uid, N::Rfc822Size], 42);
        // FLAGS comes along unasked when a FETCH changed them; it is kept.
        assert_eq!(
            answer,
            [
                MessageDataItem::Uid(NonZeroU32::MIN),
                MessageDataItem::Rfc822Size(42),
                MessageDataItem::Flags(vec![])
            ]
        );
    }

    #[test]
    fn content_items_come_from_the_served_bytes() {
        let uid = MessageDataItem::Uid(NonZeroU32::new(7).expect("7"));
        let provider = vec![
            uid.clone(),
            MessageDataItem::Rfc822Size(9999),
            ciphertext_item(None, None),
            ciphertext_item(Some(Section::Text(None)), Some(2)),
            MessageDataItem::Rfc822Header(literal(b"Subject: [...]\r\n\r\n")),
            // The proxy's own detection item, not asked for.
            MessageDataItem::BodyStructure(body_structure(b"x", true)),
        ];
        let requested = vec![
            MessageDataItemName::Uid,
            MessageDataItemName::Rfc822Size,
            MessageDataItemName::BodyExt {
                section: None,
                partial: None,
                peek: true,
            },
            MessageDataItemName::BodyExt {
                section: Some(Section::Text(None)),
                partial: Some((2, NonZeroU32::new(4).expect("4"))),
                peek: true,
            },
            MessageDataItemName::Rfc822Header,
        ];
        let out = rewrite(provider, &requested, SERVED);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0], uid);
        assert_eq!(out[1], MessageDataItem::Rfc822Size(SERVED.len() as u32));
        assert_eq!(data(&out[2]), SERVED);
        assert_eq!(data(&out[3]), b"cret");
        assert!(String::from_utf8_lossy(&data(&out[4])).contains("Subject: real subject"));
    }

    #[test]
    fn header_fields_as_thunderbird_asks() {
        let fields: Vec<AString<'static>> = ["From", "Subject", "Date"]
            .iter()
            .map(|n| AString::try_from(*n).expect("astring"))
            .collect();
        let section = Some(Section::HeaderFields(
            None,
            Vec1::try_from(fields).expect("non-empty"),
        ));
        let provider = vec![ciphertext_item(section.clone(), None)];
        let requested = vec![MessageDataItemName::BodyExt {
            section,
            partial: None,
            peek: true,
        }];
        let out = rewrite(provider, &requested, SERVED);
        assert_eq!(
            data(&out[0]),
            b"From: bob@example.org\r\nSubject: real subject\r\n\r\n"
        );
    }

    #[test]
    fn nul_bytes_travel_as_0x80() {
        let NString(Some(IString::Literal(lit))) = literal(b"a\0b") else {
            panic!("not a literal");
        };
        assert_eq!(lit.data(), b"a\x80b");
    }

    /// Whatever a header sync asks is the same cut from the header section
    /// (with the whole size) as from the whole message: the archive can
    /// answer it without reading the messages.
    #[test]
    fn header_items_from_the_header_section_match_those_from_the_whole_message() {
        use MessageDataItemName as N;
        let messages: [&[u8]; 5] = [
            SERVED,
            b"From: a@example.org\r\nSubject: folded\r\n and on\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.org\r\nSubject: inner\r\n\r\ninner body\r\n--b--\r\n",
            b"From: lf@example.org\nSubject: bare line ends\nDate: Mon, 2 Nov 2026 10:00:00 +0000\n\nbody\n",
            b"From: nobody@example.org\r\nSubject: no body at all\r\n",
            b"\r\nbody without a header\r\n",
        ];
        let names = |list: &[&str]| -> Vec1<AString<'static>> {
            Vec1::try_from(
                list.iter()
                    .map(|n| AString::try_from(n.to_string()).expect("name"))
                    .collect::<Vec<_>>(),
            )
            .expect("names")
        };
        let sections = [
            Section::Header(None),
            Section::HeaderFields(
                None,
                names(&["From", "Subject", "Content-Type", "Received"]),
            ),
            Section::HeaderFieldsNot(None, names(&["Subject"])),
        ];
        let mut requested = vec![N::Uid, N::Rfc822Size, N::Rfc822Header, N::Envelope];
        let mut provider = vec![
            MessageDataItem::Uid(NonZeroU32::MIN),
            MessageDataItem::Rfc822Size(1),
            MessageDataItem::Rfc822Header(literal(b"x")),
            MessageDataItem::Envelope(envelope(b"")),
        ];
        for section in sections {
            for partial in [None, Some((3, NonZeroU32::new(20).expect("20")))] {
                requested.push(N::BodyExt {
                    section: Some(section.clone()),
                    partial,
                    peek: true,
                });
                provider.push(ciphertext_item(Some(section.clone()), partial.map(|p| p.0)));
            }
        }
        assert_eq!(needs(&requested), Needs::Header);
        for whole in messages {
            let header = letterlock_mime::header::header_section(whole);
            let size = u32::try_from(whole.len()).expect("size");
            assert_eq!(
                rewrite_from_header(provider.clone(), &requested, header, size),
                rewrite(provider.clone(), &requested, whole),
                "{}",
                String::from_utf8_lossy(whole)
            );
        }
    }
}
