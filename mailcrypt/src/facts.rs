//! What Autocrypt needs to know about an incoming message
//! ([`autocrypt::MessageFacts`]), read from its outer header section. The
//! `autocrypt` crate never parses mail; this is where its facts come from.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autocrypt::MessageFacts;

use crate::mime;

/// The facts of `message` as the provider holds it (for an encrypted
/// message, its outer header: that is where `Autocrypt:` belongs).
/// `arrival` is when it reached the mailbox, or when the gateway first saw it.
pub fn message_facts(message: &[u8], arrival: SystemTime) -> MessageFacts {
    let (header, _) = mime::split_header(message);
    // One sender as mail-parser's RFC 5322 parser reads it, or none (two
    // fields, two mailboxes, a group): the same reading that decides whose
    // key may sign the message.
    let from: Vec<String> = letterlock_mime::sender(header)
        .map(|m| m.address)
        .into_iter()
        .collect();
    let date = mime::values(header, "Date")
        .first()
        .and_then(|v| mail_parser::DateTime::parse_rfc822(v.trim()))
        .map(|d| d.to_timestamp())
        .and_then(|secs| u64::try_from(secs).ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
    let content_type = mime::values(header, "Content-Type")
        .first()
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "text/plain".into());
    MessageFacts {
        from,
        date,
        arrival,
        content_type,
        auto_submitted: mime::values(header, "Auto-Submitted").into_iter().next(),
        autocrypt_headers: mime::values(header, "Autocrypt"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_from_the_outer_header() {
        let m = b"From: Alice <alice@example.org>\r\nDate: Tue, 3 Nov 2026 10:00:00 +0000\r\n\
Content-Type: Multipart/Encrypted; protocol=\"application/pgp-encrypted\"\r\n\
Autocrypt: addr=alice@example.org; keydata=AAAA\r\n Bbbb\r\nAuto-Submitted: no\r\n\r\nbody\r\n";
        let arrival = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let f = message_facts(m, arrival);
        assert_eq!(f.from, ["alice@example.org"]);
        assert_eq!(
            f.date,
            Some(UNIX_EPOCH + Duration::from_secs(1_793_700_000))
        );
        assert_eq!(f.content_type, "multipart/encrypted");
        assert_eq!(f.auto_submitted.as_deref(), Some("no"));
        assert_eq!(f.autocrypt_headers.len(), 1);
        assert!(f.autocrypt_headers[0].contains("keydata=AAAA"));
        assert_eq!(f.arrival, arrival);

        let bare = message_facts(b"Subject: x\r\n\r\n", arrival);
        assert!(bare.from.is_empty() && bare.date.is_none());
        assert_eq!(bare.content_type, "text/plain");
    }
}
