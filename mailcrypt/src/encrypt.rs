//! Outgoing mail: PGP/MIME encryption with header protection, cleartext
//! signing, and the sender's Autocrypt header.

use std::time::SystemTime;

use autocrypt::AutocryptHeader;
use sequoia_openpgp::Cert;

use crate::error::EncryptError;
use crate::mime::{self, line_ending, split_header, Field};
use crate::{openpgp, padding};

/// Header fields that stay readable outside the encryption: what transport,
/// threading and the recipient's client need before decrypting. Everything
/// else is only inside (RFC 9788 `hp="cipher"`); the outer Subject is `[...]`.
const OUTER_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
];

/// Fields describing the content; the outer message gets its own.
const CONTENT_FIELDS: &[&str] = &[
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-Description",
    "Content-ID",
    "MIME-Version",
];

/// How the MIME boundary is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Boundary {
    /// A fresh random boundary for each message.
    #[default]
    Random,
    /// A fixed boundary, so tests get byte-identical structure.
    Fixed(String),
}

impl Boundary {
    fn make(&self) -> String {
        match self {
            Boundary::Random => mime::random_boundary(),
            Boundary::Fixed(b) => b.clone(),
        }
    }
}

/// Everything [`encrypt`] needs besides the message.
#[derive(Debug, Clone)]
pub struct EncryptRequest<'a> {
    /// The sender's certificate with its secret signing key. The message is
    /// always encrypted to it too, so the sender can read its own copy.
    pub sender: &'a Cert,
    /// The recipients' certificates (the copy for one Bcc recipient has just
    /// that one).
    pub recipients: &'a [Cert],
    /// The sender's `Autocrypt:` header, placed inside (where Delta Chat
    /// and RFC 9788 peers read it, and nobody on the way can change it) and
    /// outside (where Autocrypt Level 1 peers read it; ARCHITECTURE.md,
    /// "Autocrypt inside and outside").
    pub autocrypt: Option<&'a AutocryptHeader>,
    /// `Autocrypt-Gossip:` headers, placed inside (from
    /// [`autocrypt::gossip::headers_to_emit`]; empty for one recipient and
    /// for Bcc copies).
    pub gossip: &'a [AutocryptHeader],
    /// Leave the recipient key IDs out of the ciphertext (wildcard IDs), as
    /// for Bcc copies.
    pub hide_recipients: bool,
    /// Pad the plaintext to a size bucket (see [`crate::bucket`]).
    pub pad: bool,
    /// Signature time and key validity reference.
    pub now: SystemTime,
    pub boundary: Boundary,
}

impl<'a> EncryptRequest<'a> {
    /// From `sender` to `recipients`, as a person's ordinary message goes:
    /// padded, signed now, a random boundary; no Autocrypt header, no
    /// gossip, recipients named. Change the rest with struct update syntax
    /// (`EncryptRequest { autocrypt: Some(&header), ..EncryptRequest::new(..) }`).
    pub fn new(sender: &'a Cert, recipients: &'a [Cert]) -> Self {
        EncryptRequest {
            sender,
            recipients,
            autocrypt: None,
            gossip: &[],
            hide_recipients: false,
            pad: true,
            now: SystemTime::now(),
            boundary: Boundary::Random,
        }
    }
}

/// Encrypts a message for its recipients: RFC 3156 PGP/MIME, signed inside
/// the encryption, with RFC 9788 header protection.
///
/// The inner entity is the original message with its header section kept
/// byte for byte (minus `Bcc`, which never leaves), `hp="cipher"` added to
/// its Content-Type, one `HP-Outer` field per outer header field, the gossip
/// and the padding. The body is not touched. On any error nothing is
/// returned: the caller has nothing it could send by mistake.
pub fn encrypt(message: &[u8], req: &EncryptRequest<'_>) -> Result<Vec<u8>, EncryptError> {
    let eol = line_ending(message);
    let (header, body) = split_header(message);
    if header.is_empty() {
        return Err(EncryptError::NoHeader);
    }
    let fields = mime::fields(header);
    let outer = outer_fields(&fields);

    // The inner header; the body follows it into the encryption unchanged.
    let mut inner = Vec::with_capacity(8192);
    let mut has_content_type = false;
    // The sender's header is the gateway's: one the client wrote is not
    // copied inside next to it.
    let own_header = |f: &Field<'_>| req.autocrypt.is_some() && f.is("Autocrypt");
    for field in fields.iter().filter(|f| !f.is("Bcc") && !own_header(f)) {
        if field.is("Content-Type") {
            has_content_type = true;
            inner.extend_from_slice(field.raw_without_eol());
            inner.extend_from_slice(b"; hp=\"cipher\"");
            inner.extend_from_slice(eol.as_bytes());
        } else {
            inner.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                inner.extend_from_slice(eol.as_bytes());
            }
        }
    }
    if !has_content_type {
        mime::push_field(
            &mut inner,
            "Content-Type",
            "text/plain; charset=us-ascii; hp=\"cipher\"",
            eol,
        );
    }
    for field in &outer {
        inner.extend_from_slice(b"HP-Outer: ");
        inner.extend_from_slice(field);
        inner.extend_from_slice(eol.as_bytes());
    }
    if let Some(ac) = req.autocrypt {
        mime::push_field(&mut inner, "Autocrypt", &ac.render(eol), eol);
    }
    for g in req.gossip {
        mime::push_field(&mut inner, "Autocrypt-Gossip", &g.render_gossip(eol), eol);
    }
    if req.pad {
        let final_len = inner.len() + eol.len() + body.len();
        inner.extend_from_slice(&padding::field_for(final_len, eol));
    }
    inner.extend_from_slice(eol.as_bytes());
    let inner = zeroize::Zeroizing::new(inner);

    let signer = openpgp::signing_keypair(req.sender, req.now)?;
    let mut recipients: Vec<&Cert> = req.recipients.iter().collect();
    if !recipients
        .iter()
        .any(|c| c.fingerprint() == req.sender.fingerprint())
    {
        recipients.push(req.sender);
    }
    let boundary = req.boundary.make();
    let mut out = Vec::with_capacity(4096);
    for raw in &outer {
        out.extend_from_slice(raw);
        out.extend_from_slice(eol.as_bytes());
    }
    if let Some(ac) = req.autocrypt {
        mime::push_field(&mut out, "Autocrypt", &ac.render(eol), eol);
    }
    mime::push_field(&mut out, "MIME-Version", "1.0", eol);
    let parts = [
        format!("This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156){eol}"),
        format!("--{boundary}{eol}Content-Type: application/pgp-encrypted{eol}Content-Description: PGP/MIME version identification{eol}{eol}Version: 1{eol}{eol}"),
        format!("--{boundary}{eol}Content-Type: application/octet-stream; name=\"encrypted.asc\"{eol}Content-Description: OpenPGP encrypted message{eol}Content-Disposition: inline; filename=\"encrypted.asc\"{eol}{eol}"),
    ];
    mime::push_field(
        &mut out,
        "Content-Type",
        &format!("multipart/encrypted;{eol} protocol=\"application/pgp-encrypted\";{eol} boundary=\"{boundary}\""),
        eol,
    );
    out.extend_from_slice(eol.as_bytes());
    for p in &parts {
        out.extend_from_slice(p.as_bytes());
    }
    openpgp::sign_and_encrypt(
        &[&inner, body],
        signer,
        &recipients,
        req.hide_recipients,
        req.now,
        &mut out,
        eol,
    )?;
    out.extend_from_slice(format!("--{boundary}--{eol}").as_bytes());
    Ok(out)
}

/// The outer header fields (raw, without line ending): structural fields as
/// they are, and `Subject: [...]` in place of the real subject.
fn outer_fields(fields: &[Field<'_>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for field in fields {
        if OUTER_FIELDS.iter().any(|n| field.is(n)) {
            out.push(field.raw_without_eol().to_vec());
        } else if field.is("Subject") {
            out.push(b"Subject: [...]".to_vec());
        }
    }
    out
}

/// Appends text produced with `\n` line endings, converted to `eol`.
fn push_with_eol(out: &mut Vec<u8>, text: &[u8], eol: &str) {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(eol.as_bytes());
        }
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
    }
}

/// Signs a message that goes out in cleartext: RFC 3156 multipart/signed.
///
/// The signed entity holds the message's content fields and body; the other
/// header fields stay outside. Lines are signed as CRLF, as RFC 3156 requires.
pub fn sign(
    message: &[u8],
    sender: &Cert,
    now: SystemTime,
    boundary: &Boundary,
) -> Result<Vec<u8>, EncryptError> {
    let eol = line_ending(message);
    let (header, body) = split_header(message);
    if header.is_empty() {
        return Err(EncryptError::NoHeader);
    }
    let fields = mime::fields(header);
    let mut signed = Vec::with_capacity(message.len() + 64);
    let mut has_content_type = false;
    for field in fields.iter().filter(|f| is_content_field(f)) {
        has_content_type |= field.is("Content-Type");
        signed.extend_from_slice(field.raw);
    }
    if !has_content_type {
        mime::push_field(
            &mut signed,
            "Content-Type",
            "text/plain; charset=us-ascii",
            eol,
        );
    }
    signed.extend_from_slice(eol.as_bytes());
    signed.extend_from_slice(body);
    let signed = to_crlf(&signed);
    let signature = openpgp::sign_detached(&signed, openpgp::signing_keypair(sender, now)?, now)?;

    let boundary = boundary.make();
    let mut out = Vec::with_capacity(signed.len() + signature.len() + 1024);
    for field in fields
        .iter()
        .filter(|f| !is_content_field(f) && !f.is("Bcc"))
    {
        out.extend_from_slice(field.raw);
    }
    mime::push_field(&mut out, "MIME-Version", "1.0", "\r\n");
    mime::push_field(
        &mut out,
        "Content-Type",
        &format!("multipart/signed; micalg=pgp-sha512;\r\n protocol=\"application/pgp-signature\";\r\n boundary=\"{boundary}\""),
        "\r\n",
    );
    out.extend_from_slice(
        format!(
            "\r\nThis is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n--{boundary}\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&signed);
    out.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\nContent-Description: OpenPGP digital signature\r\nContent-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n").as_bytes());
    push_with_eol(&mut out, &signature, "\r\n");
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(if eol == "\r\n" { out } else { from_crlf(&out) })
}

fn is_content_field(f: &Field<'_>) -> bool {
    CONTENT_FIELDS.iter().any(|n| f.is(n)) && !f.is("MIME-Version")
}

/// Adds the sender's `Autocrypt:` header to a message that goes out in
/// cleartext, replacing any the client set (it would not be ours).
pub fn add_autocrypt_header(message: &[u8], header: &AutocryptHeader) -> Vec<u8> {
    let eol = line_ending(message);
    let (head, body) = split_header(message);
    let mut out = Vec::with_capacity(message.len() + 1024);
    for field in mime::fields(head).iter().filter(|f| !f.is("Autocrypt")) {
        out.extend_from_slice(field.raw);
        if !field.raw.ends_with(b"\n") {
            out.extend_from_slice(eol.as_bytes());
        }
    }
    mime::push_field(&mut out, "Autocrypt", &header.render(eol), eol);
    out.extend_from_slice(eol.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Converts bare LF line endings to CRLF (existing CRLF stay).
pub(crate) fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

fn from_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}
