//! The `Autocrypt:` and `Autocrypt-Gossip:` header format.

use base64::Engine as _;
use sequoia_openpgp::serialize::SerializeInto as _;
use sequoia_openpgp::Cert;

use crate::addr::{addr_eq, normalize_addr};
use crate::HeaderError;

/// Headers larger than this are ignored (Level 1: "MUST NOT be processed").
pub const MAX_HEADER_LEN: usize = 10 * 1024;

/// Base64 line length when keydata is folded over several header lines.
const KEYDATA_LINE: usize = 76;

/// The sender's stated encryption preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PreferEncrypt {
    Mutual,
    #[default]
    NoPreference,
}

impl PreferEncrypt {
    /// Reads a `prefer-encrypt` value: anything but `mutual` means no preference.
    pub fn from_value(value: &str) -> Self {
        if value.trim().eq_ignore_ascii_case("mutual") {
            PreferEncrypt::Mutual
        } else {
            PreferEncrypt::NoPreference
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PreferEncrypt::Mutual => "mutual",
            PreferEncrypt::NoPreference => "nopreference",
        }
    }
}

/// A parsed, validated `Autocrypt:` (or `Autocrypt-Gossip:`) header.
#[derive(Debug, Clone, PartialEq)]
pub struct AutocryptHeader {
    /// The address as written in the header (compare with [`addr_eq`]).
    pub addr: String,
    pub prefer_encrypt: PreferEncrypt,
    /// The certificate carried in `keydata`.
    pub cert: Cert,
}

impl AutocryptHeader {
    /// Builds a header for `addr` carrying `cert` (minimize it first with
    /// [`crate::key::minimize`]).
    pub fn new(addr: &str, prefer_encrypt: PreferEncrypt, cert: Cert) -> Self {
        AutocryptHeader {
            addr: addr.trim().to_string(),
            prefer_encrypt,
            cert,
        }
    }

    /// Parses a header value and checks it against the address it must
    /// belong to (the From address for `Autocrypt:`, a recipient for gossip).
    ///
    /// `value` is the raw header value, possibly folded.
    pub fn parse(value: &str, expected_addr: Option<&str>) -> Result<Self, HeaderError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(HeaderError::TooLong(value.len()));
        }
        let mut addr = None;
        let mut prefer_encrypt = None;
        let mut keydata = None;
        for attr in value.split(';') {
            let attr = attr.trim();
            if attr.is_empty() {
                continue;
            }
            let Some((name, val)) = attr.split_once('=') else {
                return Err(HeaderError::Malformed(truncate(attr)));
            };
            let name = name.trim().to_ascii_lowercase();
            let slot = match name.as_str() {
                "addr" => &mut addr,
                "prefer-encrypt" => &mut prefer_encrypt,
                "keydata" => &mut keydata,
                other if other.starts_with('_') => continue,
                other => return Err(HeaderError::UnknownCriticalAttribute(truncate(other))),
            };
            if slot.replace(val.trim()).is_some() {
                return Err(HeaderError::DuplicateAttribute(name));
            }
        }
        let addr = addr.ok_or(HeaderError::MissingAddr)?;
        if addr.is_empty() {
            return Err(HeaderError::MissingAddr);
        }
        if let Some(expected) = expected_addr {
            if !addr_eq(addr, expected) {
                return Err(HeaderError::AddrMismatch {
                    header_addr: truncate(addr),
                    expected: normalize_addr(expected),
                });
            }
        }
        let keydata = keydata.ok_or(HeaderError::MissingKeydata)?;
        let compact: String = keydata.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| HeaderError::KeydataNotBase64)?;
        let cert =
            crate::certs::parse(&bytes).map_err(|e| HeaderError::KeydataNotCert(e.to_string()))?;
        if cert.is_tsk() {
            return Err(HeaderError::KeydataHasSecret);
        }
        Ok(AutocryptHeader {
            addr: addr.to_string(),
            prefer_encrypt: prefer_encrypt
                .map(PreferEncrypt::from_value)
                .unwrap_or_default(),
            cert,
        })
    }

    /// Renders the header value as an `Autocrypt:` header: `addr`, then
    /// `prefer-encrypt=mutual` if set, then `keydata` last, folded with `eol`
    /// followed by a space.
    pub fn render(&self, eol: &str) -> String {
        self.render_inner(eol, true)
    }

    /// Renders the header value as an `Autocrypt-Gossip:` header, which never
    /// carries `prefer-encrypt`.
    pub fn render_gossip(&self, eol: &str) -> String {
        self.render_inner(eol, false)
    }

    fn render_inner(&self, eol: &str, with_preference: bool) -> String {
        let mut out = format!("addr={}; ", self.addr);
        if with_preference && self.prefer_encrypt == PreferEncrypt::Mutual {
            out.push_str("prefer-encrypt=mutual; ");
        }
        out.push_str("keydata=");
        // Serializing a certificate we hold in memory cannot fail short of
        // running out of memory; an empty keydata would be rejected by peers.
        let bytes = self.cert.to_vec().unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        for chunk in encoded.as_bytes().chunks(KEYDATA_LINE) {
            out.push_str(eol);
            out.push(' ');
            // base64 output is ASCII, so any chunking is on char boundaries.
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        }
        out
    }
}

/// Picks the sender's header among all `Autocrypt:` header values of a
/// message: exactly one valid header is used; none or several valid ones
/// mean no header.
///
/// Returns the chosen header (if any) and the problems with the others, so
/// callers can log why a header was ignored.
pub fn select_sender_header<S: AsRef<str>>(
    values: &[S],
    from_addr: &str,
) -> (Option<AutocryptHeader>, Vec<HeaderError>) {
    let mut valid = Vec::new();
    let mut problems = Vec::new();
    for value in values {
        match AutocryptHeader::parse(value.as_ref(), Some(from_addr)) {
            Ok(header) => valid.push(header),
            Err(e) => problems.push(e),
        }
    }
    if valid.len() > 1 {
        problems.push(HeaderError::Ambiguous);
        return (None, problems);
    }
    (valid.pop(), problems)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;
    use std::time::{Duration, UNIX_EPOCH};

    fn cert() -> Cert {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let k = key::generate("alice@example.org", t).unwrap();
        key::minimize(&k, "alice@example.org", t).unwrap()
    }

    #[test]
    fn round_trips() {
        let h = AutocryptHeader::new("alice@example.org", PreferEncrypt::Mutual, cert());
        let rendered = h.render("\r\n");
        assert!(rendered.starts_with("addr=alice@example.org; prefer-encrypt=mutual; keydata="));
        assert!(rendered.lines().all(|l| l.len() <= 78));
        let back = AutocryptHeader::parse(&rendered, Some("Alice@Example.org")).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn gossip_has_no_preference() {
        let h = AutocryptHeader::new("alice@example.org", PreferEncrypt::Mutual, cert());
        let g = h.render_gossip("\n");
        assert!(!g.contains("prefer-encrypt"));
        let back = AutocryptHeader::parse(&g, None).unwrap();
        assert_eq!(back.prefer_encrypt, PreferEncrypt::NoPreference);
    }

    #[test]
    fn rules_of_level1() {
        let good =
            AutocryptHeader::new("alice@example.org", PreferEncrypt::Mutual, cert()).render("\n");
        let key = good.split("keydata=").nth(1).unwrap().to_string();
        let with = |attrs: &str| format!("{attrs}keydata={key}");

        assert_eq!(
            AutocryptHeader::parse(&with("addr=alice@example.org; "), Some("bob@example.org")),
            Err(HeaderError::AddrMismatch {
                header_addr: "alice@example.org".into(),
                expected: "bob@example.org".into()
            })
        );
        assert_eq!(
            AutocryptHeader::parse(&with("addr=alice@example.org; color=blue; "), None),
            Err(HeaderError::UnknownCriticalAttribute("color".into()))
        );
        let h = AutocryptHeader::parse(&with("addr=alice@example.org; _color=blue; "), None);
        assert!(h.is_ok());
        let h = AutocryptHeader::parse(
            &with("addr=alice@example.org; prefer-encrypt=always; "),
            None,
        )
        .unwrap();
        assert_eq!(h.prefer_encrypt, PreferEncrypt::NoPreference);
        assert_eq!(
            AutocryptHeader::parse(&with("addr=a@b; addr=a@b; "), None),
            Err(HeaderError::DuplicateAttribute("addr".into()))
        );
        assert_eq!(
            AutocryptHeader::parse(&with(""), None),
            Err(HeaderError::MissingAddr)
        );
        assert_eq!(
            AutocryptHeader::parse("addr=a@b", None),
            Err(HeaderError::MissingKeydata)
        );
        assert_eq!(
            AutocryptHeader::parse("addr=a@b; keydata=!!!", None),
            Err(HeaderError::KeydataNotBase64)
        );
        let long = format!(
            "addr=a@b; _pad={}; keydata={key}",
            "x".repeat(MAX_HEADER_LEN)
        );
        assert!(matches!(
            AutocryptHeader::parse(&long, None),
            Err(HeaderError::TooLong(_))
        ));
    }

    #[test]
    fn several_valid_headers_mean_none() {
        let h =
            AutocryptHeader::new("alice@example.org", PreferEncrypt::Mutual, cert()).render("\n");
        let (chosen, problems) =
            select_sender_header(std::slice::from_ref(&h), "alice@example.org");
        assert!(chosen.is_some() && problems.is_empty());
        let (chosen, problems) = select_sender_header(&[h.clone(), h], "alice@example.org");
        assert!(chosen.is_none());
        assert_eq!(problems, vec![HeaderError::Ambiguous]);
        // One valid plus one invalid header: the valid one counts.
        let (chosen, _) = select_sender_header(
            &[
                AutocryptHeader::new("alice@example.org", PreferEncrypt::Mutual, cert())
                    .render("\n"),
                "addr=x@y; keydata=AAAA".to_string(),
            ],
            "alice@example.org",
        );
        assert!(chosen.is_some());
    }
}
