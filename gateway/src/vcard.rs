//! Contacts as vCards (RFC 6350), the way Delta Chat hands them out and
//! takes them in: `EMAIL` names the address, `KEY` carries the OpenPGP
//! certificate as a `data:application/pgp-keys;base64,…` URI (vCard 4.0) or
//! as `KEY;TYPE=PGP;ENCODING=b:…` (vCard 3.0). `keytool import` reads them,
//! `keytool export --vcard` writes them. Parsing (folding, escapes, old
//! encodings) is calcard's (Stalwart's vCard library); the five lines of a
//! written card are written here ([`render`] says why).

use sequoia_openpgp::parse::Parse as _;
use sequoia_openpgp::serialize::SerializeInto as _;
use sequoia_openpgp::Cert;

/// At most this many vCards are read from one input: an address book export
/// is a few thousand at most, and every one costs a keystore write.
const MAX_CARDS: usize = 10_000;

/// One contact with a key.
#[derive(Debug, Clone)]
pub struct Contact {
    /// The address the vCard gives (the first `EMAIL`): the one the key is
    /// recorded for, whatever the key's own user IDs say.
    pub address: String,
    /// The formatted name (`FN`), if any.
    pub name: Option<String>,
    pub cert: Cert,
}

/// Why one vCard of an input gave no contact.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VcardError {
    #[error("a vCard without an EMAIL address")]
    NoAddress,
    #[error("the vCard for {0} has no OpenPGP key (KEY)")]
    NoKey(String),
    #[error("the KEY of {address}'s vCard is not an OpenPGP certificate: {reason}")]
    BadKey { address: String, reason: String },
    #[error("line {0} is not vCard syntax")]
    Syntax(String),
}

/// Whether `data` looks like vCard text (so `keytool import` reads it as
/// contacts, not as OpenPGP data).
pub fn is_vcard(data: &[u8]) -> bool {
    let text = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    text[start..]
        .get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"BEGIN:VCARD"))
}

/// Every vCard in `text`, each a contact or the reason it is none. Parsing
/// stops at the first line that is no vCard syntax (reported once).
pub fn parse(text: &str) -> Vec<Result<Contact, VcardError>> {
    use calcard::{Entry, Parser};
    let mut parser = Parser::new(text);
    let mut out = Vec::new();
    while out.len() < MAX_CARDS {
        match parser.entry() {
            Entry::VCard(card) => out.push(contact(&card)),
            Entry::Eof => break,
            Entry::InvalidLine(line) => {
                out.push(Err(VcardError::Syntax(one_line(&line))));
                break;
            }
            // Calendars and broken components are no contacts.
            _ => {}
        }
    }
    out
}

fn contact(card: &calcard::vcard::VCard) -> Result<Contact, VcardError> {
    use calcard::vcard::{VCardProperty, VCardValue};
    let text_of = |property: &VCardProperty| {
        card.entries
            .iter()
            .filter(|e| &e.name == property)
            .flat_map(|e| e.values.iter())
            .find_map(|v| match v {
                VCardValue::Text(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                _ => None,
            })
    };
    let address = text_of(&VCardProperty::Email)
        .map(|a| a.strip_prefix("mailto:").unwrap_or(&a).to_string())
        .ok_or(VcardError::NoAddress)?;
    let name = text_of(&VCardProperty::Fn);
    let key = card
        .entries
        .iter()
        .filter(|e| e.name == VCardProperty::Key)
        .flat_map(|e| e.values.iter())
        .find_map(|v| match v {
            VCardValue::Binary(data) => Some(data.data.clone()),
            // A vCard 3.0 key that happened to decode as text, or an
            // armored key written as text.
            VCardValue::Text(t) => Some(t.as_bytes().to_vec()),
            _ => None,
        })
        .ok_or_else(|| VcardError::NoKey(address.clone()))?;
    let cert = Cert::from_bytes(&key).map_err(|e| VcardError::BadKey {
        address: address.clone(),
        reason: e.to_string(),
    })?;
    Ok(Contact {
        address,
        name,
        cert,
    })
}

/// A vCard 4.0 for `address` with its public certificate, line for line as
/// Delta Chat writes one (`EMAIL`, `FN`, `KEY` as a data URI on one line),
/// so Delta Chat and other address books can import it. Secret key material
/// never goes in.
///
/// Written here rather than by calcard: its writer escapes the comma of a
/// `data:` URI (`base64\,`), which no reader takes for a key.
pub fn render(address: &str, name: Option<&str>, cert: &Cert) -> anyhow::Result<String> {
    use base64::Engine as _;
    let public = cert.clone().strip_secret_key_material();
    let key = base64::engine::general_purpose::STANDARD.encode(public.to_vec()?);
    Ok(format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nEMAIL:{}\r\nFN:{}\r\n\
         KEY:data:application/pgp-keys;base64,{key}\r\nEND:VCARD\r\n",
        escape(address),
        escape(name.unwrap_or(address)),
    ))
}

/// A text value as RFC 6350 §3.4 escapes it.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Someone else's text as one bounded line, for an error message.
fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn key(address: &str) -> Cert {
        autocrypt::key::generate(address, SystemTime::now()).expect("key")
    }

    #[test]
    fn what_render_writes_parse_reads_back() {
        let cert = key("alice@example.org");
        let card = render("alice@example.org", Some("Alice"), &cert).expect("vCard");
        assert!(card.starts_with("BEGIN:VCARD\r\nVERSION:4.0\r\n"), "{card}");
        assert!(
            card.contains("KEY:data:application/pgp-keys;base64,"),
            "{card}"
        );
        assert!(is_vcard(card.as_bytes()));
        let contacts = parse(&card);
        assert_eq!(contacts.len(), 1);
        let contact = contacts[0].as_ref().expect("contact");
        assert_eq!(contact.address, "alice@example.org");
        assert_eq!(contact.name.as_deref(), Some("Alice"));
        assert_eq!(contact.cert.fingerprint(), cert.fingerprint());
        assert!(!contact.cert.is_tsk(), "no secret key in a vCard");
    }

    #[test]
    fn several_cards_each_with_its_own_verdict() {
        let bob = key("bob@example.org");
        let b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(bob.to_vec().expect("bytes"))
        };
        // The address of the card counts, not the key's user ID; a vCard
        // 3.0 key; a card without key; one without address; a broken key.
        let text = format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bob\r\nEMAIL;TYPE=INTERNET:bob@work.example\r\n\
             KEY;TYPE=PGP;ENCODING=b:{b64}\r\nEND:VCARD\r\n\
             BEGIN:VCARD\r\nVERSION:4.0\r\nEMAIL:carol@example.org\r\nEND:VCARD\r\n\
             BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Nobody\r\nEND:VCARD\r\n\
             BEGIN:VCARD\r\nVERSION:4.0\r\nEMAIL:dave@example.org\r\n\
             KEY:data:application/pgp-keys;base64,AAAA\r\nEND:VCARD\r\n"
        );
        let contacts = parse(&text);
        assert_eq!(contacts.len(), 4, "{contacts:?}");
        let first = contacts[0].as_ref().expect("vCard 3.0 key");
        assert_eq!(first.address, "bob@work.example");
        assert_eq!(first.cert.fingerprint(), bob.fingerprint());
        assert_eq!(
            contacts[1].as_ref().err(),
            Some(&VcardError::NoKey("carol@example.org".into()))
        );
        assert_eq!(contacts[2].as_ref().err(), Some(&VcardError::NoAddress));
        assert!(matches!(
            contacts[3].as_ref().err(),
            Some(VcardError::BadKey { address, .. }) if address == "dave@example.org"
        ));
    }

    #[test]
    fn folded_lines_escapes_and_a_byte_order_mark() {
        let cert = key("erin@example.org");
        let card = render("erin@example.org", Some("Erin, \"E\"; Ops"), &cert).expect("vCard");
        assert!(card.contains("FN:Erin\\, \"E\"\\; Ops\r\n"), "{card}");
        // Folded as RFC 6350 allows (other address books do), with a BOM.
        let key_line = card.lines().find(|l| l.starts_with("KEY:")).expect("KEY");
        let folded: String = key_line
            .as_bytes()
            .chunks(70)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n ");
        let text = format!("\u{feff}{}", card.replace(key_line, &folded));
        assert!(is_vcard(text.as_bytes()));
        let contacts = parse(&text);
        let contact = contacts[0].as_ref().expect("contact");
        assert_eq!(contact.cert.fingerprint(), cert.fingerprint());
        assert_eq!(contact.name.as_deref(), Some("Erin, \"E\"; Ops"));
    }

    #[test]
    fn openpgp_data_is_no_vcard() {
        assert!(!is_vcard(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n"));
        assert!(!is_vcard(b"\x99\x01"));
        assert!(!is_vcard(b""));
        assert!(is_vcard(b"\r\n begin:vcard\r\n"));
    }

    #[test]
    fn hostile_input_gives_errors_not_panics() {
        for text in [
            "BEGIN:VCARD\r\n",
            "BEGIN:VCARD\r\nKEY:data:;base64,!!!!\r\nEMAIL:x@y\r\nEND:VCARD",
            "BEGIN:VCARD\r\nEMAIL:\r\nEND:VCARD\r\n",
            "\u{0}\u{1}BEGIN",
        ] {
            let _ = parse(text);
        }
    }
}
