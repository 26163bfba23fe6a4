//! A submitted message read for sending: the writer's request (a `[plain]`
//! or `[encrypt]` subject tag, or the `Letterlock-Encrypt` header a client
//! can be configured to add), and which envelope recipients are visible
//! (To/Cc) or hidden (Bcc: they get copies of their own).

use mailcrypt::outgoing::{
    field_value, header_addresses, referenced_message_ids, strip_fields, take_subject_tag,
};

use crate::decision::Override;
use crate::reply::Reply;

/// The header a client may set instead of a subject tag: `yes` or `no`.
pub const REQUEST_HEADER: &str = "Letterlock-Encrypt";
const TAGS: [&str; 2] = ["[plain]", "[encrypt]"];

/// What the proxy sends on from one DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The message without the request marks (the Bcc field is still there:
    /// the encrypted path drops it, the cleartext path must strip it).
    pub message: Vec<u8>,
    pub request: Option<Override>,
    /// Envelope recipients named in To or Cc.
    pub visible: Vec<String>,
    /// Envelope recipients not named in To or Cc (Bcc).
    pub hidden: Vec<String>,
    /// It answers, forwards or carries a message that was encrypted (filled
    /// in from the keystore by the caller; `read` cannot know).
    pub answers_encrypted: bool,
}

/// Reads a submission. A request header with a value other than yes/no is
/// refused rather than guessed at.
pub fn read(data: Vec<u8>, envelope_recipients: &[String]) -> Result<Submission, Reply> {
    let header_request = match field_value(&data, REQUEST_HEADER) {
        None => None,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "yes" | "encrypt" => Some(Override::Encrypt),
            "no" | "plain" => Some(Override::Plain),
            _ => {
                let why =
                    format!("the {REQUEST_HEADER} header must be \"yes\" or \"no\", not \"{v}\"");
                return Err(Reply::new(550, "5.6.0", format!("Not sent: {why}")));
            }
        },
    };
    // Copies only when there is something to remove: messages can be large.
    let mut message = if header_request.is_some() {
        strip_fields(&data, &[REQUEST_HEADER])
    } else {
        data
    };
    // In a reply or forward the subject came from someone else's message:
    // a `[plain]` there may be theirs, so only `[encrypt]` counts.
    let answers = !referenced_message_ids(&message).is_empty();
    let tags: &[&str] = if answers { &TAGS[1..] } else { &TAGS };
    let mut tag_request = None;
    if let Some((tag, rewritten)) = take_subject_tag(&message, tags) {
        message = rewritten;
        tag_request = Some(if tag == "[plain]" {
            Override::Plain
        } else {
            Override::Encrypt
        });
    }
    // When the two disagree, encryption wins: the safe reading.
    let request = match (header_request, tag_request) {
        (Some(Override::Encrypt), _) | (_, Some(Override::Encrypt)) => Some(Override::Encrypt),
        (a, b) => a.or(b),
    };
    let named = header_addresses(&message, &["To", "Cc"]);
    let (visible, hidden) = envelope_recipients
        .iter()
        .cloned()
        .partition(|r| named.iter().any(|n| autocrypt::addr_eq(n, r)));
    Ok(Submission {
        message,
        request,
        visible,
        hidden,
        answers_encrypted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bcc_recipients_are_the_unnamed_ones() {
        let m = b"From: a@example.org\r\nTo: Bob <bob@example.org>\r\nCc: carol@example.net\r\nBcc: dave@example.net\r\nSubject: hi\r\n\r\nbody\r\n";
        let s = read(
            m.to_vec(),
            &rcpts(&["BOB@example.org", "carol@example.net", "dave@example.net"]),
        )
        .expect("read");
        assert_eq!(s.visible, ["BOB@example.org", "carol@example.net"]);
        assert_eq!(s.hidden, ["dave@example.net"]);
        assert_eq!(s.request, None);
        assert_eq!(s.message, m);
    }

    #[test]
    fn requests_from_tag_and_header() {
        let tagged = b"To: b@example.org\r\nSubject: [plain] hi\r\n\r\nx\r\n";
        let s = read(tagged.to_vec(), &rcpts(&["b@example.org"])).expect("read");
        assert_eq!(s.request, Some(Override::Plain));
        assert_eq!(s.message, b"To: b@example.org\r\nSubject: hi\r\n\r\nx\r\n");

        let header = b"To: b@example.org\r\nLetterlock-Encrypt: Yes\r\nSubject: hi\r\n\r\nx\r\n";
        let s = read(header.to_vec(), &rcpts(&["b@example.org"])).expect("read");
        assert_eq!(s.request, Some(Override::Encrypt));
        assert_eq!(s.message, b"To: b@example.org\r\nSubject: hi\r\n\r\nx\r\n");

        let both = b"Letterlock-Encrypt: yes\r\nSubject: [plain] hi\r\n\r\nx\r\n";
        assert_eq!(
            read(both.to_vec(), &[]).expect("read").request,
            Some(Override::Encrypt)
        );

        let bad = b"Letterlock-Encrypt: maybe\r\nSubject: hi\r\n\r\nx\r\n";
        let err = read(bad.to_vec(), &[]).expect_err("refused");
        assert_eq!(err.code, 550);
        assert!(err.lines[0].contains("\"yes\" or \"no\""), "{err}");
    }

    /// A thread subject an attacker chose (`[plain] …`, kept by a reply
    /// that adds no prefix, or `Re: [plain] …`) never turns a reply into
    /// cleartext; `[encrypt]` still counts in a reply.
    #[test]
    fn plain_tag_does_not_count_in_replies_or_forwards() {
        for thread in [
            "In-Reply-To: <x@evil.example>",
            "References: <a@b> <x@evil.example>",
            "X-Forwarded-Message-Id: <x@evil.example>",
        ] {
            for subject in ["[plain] hi", "Re: [plain] hi"] {
                let m = format!("To: b@example.org\r\n{thread}\r\nSubject: {subject}\r\n\r\nx\r\n");
                let s = read(m.clone().into_bytes(), &rcpts(&["b@example.org"])).expect("read");
                assert_eq!(s.request, None, "{thread} / {subject}");
                assert_eq!(s.message, m.as_bytes(), "the subject stays as written");
            }
            let m = format!("{thread}\r\nSubject: [encrypt] hi\r\n\r\nx\r\n");
            assert_eq!(
                read(m.into_bytes(), &[]).expect("read").request,
                Some(Override::Encrypt)
            );
        }
        let new = b"Subject: Re: [plain] not a reply\r\n\r\nx\r\n";
        assert_eq!(read(new.to_vec(), &[]).expect("read").request, None);
    }
}
