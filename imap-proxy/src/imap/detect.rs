//! Which messages the gateway serves itself, decided from two cheap items
//! the proxy adds to a client's FETCH: a few header fields (`Content-Type`,
//! `Letterlock-Security`, and what Autocrypt learning needs) and the first
//! bytes of the body.
//!
//! Served by the gateway: PGP/MIME (encrypted or signed — a verified
//! message gets the status header), inline PGP (the body starts with an
//! armored block), and any message carrying a `Letterlock-Security` field
//! from outside (rule 6: it is removed), also where only the data a client
//! asked for shows it ([`carries_status_header`]). Everything else passes
//! through byte for byte.

use std::num::NonZeroU32;

use imap_next::imap_types::core::{AString, Vec1};
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName, Section};
use letterlock_mime::entity::ContentType;
use letterlock_mime::header as mime;

/// The header fields to fetch: `BODY.PEEK[HEADER.FIELDS (…)]`. The first
/// two decide who serves the message; the rest let the proxy learn keys
/// from the cleartext mail it passes through (Autocrypt needs From, Date,
/// Auto-Submitted and the header itself).
pub const HEADER_FIELDS: [&str; 6] = [
    "Content-Type",
    mailcrypt::STATUS_HEADER,
    "From",
    "Date",
    "Auto-Submitted",
    "Autocrypt",
];

/// How much of the body to fetch: `BODY.PEEK[TEXT]<0.N>`. Enough for
/// leading blank lines and the armor line.
pub const TEXT_PREFIX: u32 = 256;

/// The detection items of one message, fetched after a FETCH that went
/// without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub uid: u32,
    pub header: Vec<u8>,
    pub prefix: Vec<u8>,
}

/// Whether the gateway must serve this message itself.
pub fn served_by_gateway(header_fields: &[u8], text_prefix: &[u8]) -> bool {
    let (header, _) = mime::split_header(header_fields);
    if mailcrypt::has_status_header(header) {
        return true;
    }
    let content_type = ContentType::of(header);
    if content_type.is("multipart/encrypted") || content_type.is("multipart/signed") {
        return true;
    }
    if content_type.is("text/plain") {
        let start = text_prefix
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(text_prefix.len());
        let body = &text_prefix[start..];
        return body.starts_with(b"-----BEGIN PGP MESSAGE-----")
            || body.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----");
    }
    false
}

/// Whether data the provider sent for a client's FETCH holds a status
/// header the detection fields cannot show: one spelled inside another
/// field after a bare CR (`X-Any: a\rLetterlock-Security: …`), which
/// Dovecot files under `X-Any` and a lenient client reads as a field of its
/// own. Such a message is served by the gateway, which removes it (rule 6).
pub fn carries_status_header(items: &[MessageDataItem<'_>]) -> bool {
    items.iter().any(|item| {
        let data = match item {
            MessageDataItem::BodyExt { data, .. }
            | MessageDataItem::Rfc822(data)
            | MessageDataItem::Rfc822Header(data) => data.0.as_ref(),
            _ => None,
        };
        data.is_some_and(|d| mailcrypt::has_status_header(d.as_ref()))
    })
}

/// The two items added to a FETCH to tell who serves each message.
pub fn items() -> Vec<MessageDataItemName<'static>> {
    let names: Vec<AString<'static>> = HEADER_FIELDS
        .iter()
        .filter_map(|n| AString::try_from(n.to_string()).ok())
        .collect();
    let mut items = Vec::new();
    if let Ok(fields) = Vec1::try_from(names) {
        items.push(MessageDataItemName::BodyExt {
            section: Some(Section::HeaderFields(None, fields)),
            partial: None,
            peek: true,
        });
    }
    items.push(MessageDataItemName::BodyExt {
        section: Some(Section::Text(None)),
        partial: Some((0, NonZeroU32::new(TEXT_PREFIX).unwrap_or(NonZeroU32::MIN))),
        peek: true,
    });
    items
}

/// The values of the two detection items in a provider's answer: the
/// header fields and the text prefix.
pub fn found_in(items: &[MessageDataItem<'_>]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut header = None;
    let mut prefix = None;
    for item in items {
        if let MessageDataItem::BodyExt {
            section,
            origin,
            data,
        } = item
        {
            let bytes = data
                .0
                .as_ref()
                .map(|d| d.clone().into_inner().into_owned())
                .unwrap_or_default();
            match (section, origin) {
                (Some(Section::HeaderFields(None, names)), None)
                    if is_detection(names.as_ref()) =>
                {
                    header = Some(bytes)
                }
                (Some(Section::Text(None)), Some(0)) => prefix = Some(bytes),
                _ => {}
            }
        }
    }
    (header, prefix)
}

/// The header-fields list is the proxy's own detection list.
fn is_detection(names: &[AString<'_>]) -> bool {
    names.len() == HEADER_FIELDS.len()
        && names
            .iter()
            .zip(HEADER_FIELDS)
            .all(|(n, h)| n.as_ref().eq_ignore_ascii_case(h.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_gateway_serves() {
        let pgp_mime = b"Content-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n";
        assert!(served_by_gateway(pgp_mime, b"This is an OpenPGP/MIME"));
        assert!(served_by_gateway(
            b"Content-Type: Multipart/Signed; boundary=x\r\n\r\n",
            b""
        ));
        assert!(served_by_gateway(
            b"Content-Type: text/plain\r\n\r\n",
            b"\r\n-----BEGIN PGP MESSAGE-----\r\n"
        ));
        assert!(served_by_gateway(
            b"\r\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\r\n"
        ));
        assert!(served_by_gateway(
            b"Letterlock-Security: encrypted; signature=valid\r\n\r\n",
            b"forged"
        ));
        assert!(!served_by_gateway(
            b"Content-Type: text/plain\r\n\r\n",
            b"hello"
        ));
        assert!(!served_by_gateway(
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",
            b"--x\r\n"
        ));
        assert!(!served_by_gateway(
            b"Content-Type: text/html\r\n\r\n",
            b"-----BEGIN PGP MESSAGE-----"
        ));
        assert!(!served_by_gateway(b"", b""));
        for spelled in [
            &b"Letterlock-Security : encrypted\r\n\r\n"[..],
            b"From: a@b\rLetterlock-Security: encrypted\r\n\r\n",
        ] {
            assert!(served_by_gateway(spelled, b"forged"));
        }
    }
}
