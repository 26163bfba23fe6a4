//! Which messages the gateway serves itself, decided from two cheap items
//! the proxy adds to a client's FETCH: a few header fields (`Content-Type`,
//! `Letterlock-Security`, and what Autocrypt learning needs) and the first
//! bytes of the body.
//!
//! Served by the gateway: PGP/MIME (encrypted or signed — a verified
//! message gets the status header), inline PGP (the body starts with an
//! armored block), and any message carrying a `Letterlock-Security` field
//! from outside (rule 6: it is removed). Everything else passes through
//! byte for byte.

use mailcrypt::entity::ContentType;
use mailcrypt::mime;

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

/// Whether the gateway must serve this message itself.
pub fn served_by_gateway(header_fields: &[u8], text_prefix: &[u8]) -> bool {
    let (header, _) = mime::split_header(header_fields);
    let fields = mime::fields(header);
    if fields.iter().any(|f| f.is(mailcrypt::STATUS_HEADER)) {
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
    }
}
