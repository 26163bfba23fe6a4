//! What Autocrypt needs to know about an incoming message
//! ([`autocrypt::MessageFacts`]): from its outer header section, or, once it
//! is decrypted, from the header its sender protected inside. The
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

/// The facts of a decrypted message: what its sender wrote inside the
/// encryption counts, since nobody on the way could change it. `shown` is
/// the message as decrypted, protected header restored
/// ([`crate::Outcome::message`]): its From and Date are the inner ones
/// where the sender protected them (Delta Chat randomises the outer Date
/// into the past; the real one is inside), and an `Autocrypt:` header
/// inside takes precedence over the outer one (RFC 9788's direction, and
/// Delta Chat puts it only there). Without one inside, the outer header of
/// `provider_bytes` still announces the key, as Autocrypt Level 1 peers
/// send it.
pub fn decrypted_facts(provider_bytes: &[u8], shown: &[u8], arrival: SystemTime) -> MessageFacts {
    let mut facts = message_facts(shown, arrival);
    if facts.autocrypt_headers.is_empty() {
        let (outer, _) = mime::split_header(provider_bytes);
        facts.autocrypt_headers = mime::values(outer, "Autocrypt");
    }
    facts
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

    #[test]
    fn decrypted_facts_prefer_what_is_inside() {
        let arrival = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let outer = b"From: alice@example.org\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\
Autocrypt: addr=alice@example.org; keydata=OUTER\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"\r\n\r\nx\r\n";
        let inner = b"From: alice@example.org\r\nDate: Thu, 5 Nov 2026 10:00:00 +0000\r\n\
Autocrypt: addr=alice@example.org; keydata=INNER\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
        let f = decrypted_facts(outer, inner, arrival);
        assert_eq!(f.autocrypt_headers.len(), 1);
        assert!(f.autocrypt_headers[0].contains("INNER"), "{f:?}");
        // The protected Date, not the outer one.
        assert_eq!(
            f.date,
            Some(UNIX_EPOCH + Duration::from_secs(1_793_872_800))
        );
        assert_eq!(f.content_type, "text/plain");

        // Nothing inside: the outer header still announces the key.
        let bare = b"From: alice@example.org\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
        let f = decrypted_facts(outer, bare, arrival);
        assert!(f.autocrypt_headers[0].contains("OUTER"), "{f:?}");
        assert!(f.date.is_none());
    }

    proptest::proptest! {
        /// Whatever the outside says, what the sender put inside counts;
        /// the outside fills in only what is missing inside.
        #[test]
        fn inside_wins_outside_fills_in(
            inner_key in proptest::option::of("[A-Za-z0-9]{4,12}"),
            outer_key in proptest::option::of("[A-Za-z0-9]{4,12}"),
            inner_day in proptest::option::of(1u32..28),
            outer_day in 1u32..28,
        ) {
            let arrival = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
            let mut outer = format!("From: a@example.org\r\nDate: {outer_day} Nov 2026 10:00:00 +0000\r\n");
            if let Some(k) = &outer_key {
                outer.push_str(&format!("Autocrypt: addr=a@example.org; keydata=OUT{k}\r\n"));
            }
            outer.push_str("Content-Type: multipart/encrypted\r\n\r\nx\r\n");
            let mut inner = String::from("From: a@example.org\r\n");
            if let Some(d) = inner_day {
                inner.push_str(&format!("Date: {d} Nov 2026 10:00:00 +0000\r\n"));
            }
            if let Some(k) = &inner_key {
                inner.push_str(&format!("Autocrypt: addr=a@example.org; keydata=IN{k}\r\n"));
            }
            inner.push_str("\r\nhi\r\n");
            let f = decrypted_facts(outer.as_bytes(), inner.as_bytes(), arrival);
            let expected = match (&inner_key, &outer_key) {
                (Some(k), _) => Some(format!("IN{k}")),
                (None, Some(k)) => Some(format!("OUT{k}")),
                (None, None) => None,
            };
            let got = f.autocrypt_headers.first().and_then(|h| h.rsplit("keydata=").next()).map(str::to_string);
            proptest::prop_assert_eq!(got, expected);
            proptest::prop_assert_eq!(f.autocrypt_headers.len() <= 1, true);
            let day = |d: u32| UNIX_EPOCH + Duration::from_secs(1_793_527_200 + (u64::from(d) - 1) * 86_400);
            proptest::prop_assert_eq!(f.date, inner_day.map(day));
        }
    }
}
