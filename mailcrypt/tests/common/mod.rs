//! Shared helpers for the mailcrypt integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

/// `../shared/testdata` relative to the project root.
pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    let path = testdata(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every certificate in a file (armored or binary).
pub fn certs(rel: &str) -> Vec<Cert> {
    CertParser::from_bytes(&read(rel))
        .expect("a keyring")
        .collect::<Result<Vec<_>, _>>()
        .expect("valid certificates")
}

pub fn cert(rel: &str) -> Cert {
    Cert::from_bytes(&read(rel)).expect("a certificate")
}

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Wraps OpenPGP data (armored or binary) into a PGP/MIME message, base64
/// encoded so any bytes survive.
pub fn pgp_mime(from: &str, to: &str, data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut body = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        body.push_str("\r\n");
    }
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: test\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {body}--b--\r\n"
    )
    .into_bytes()
}

/// The armored OpenPGP message inside our PGP/MIME output.
pub fn armored_part(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let start = text
        .find("-----BEGIN PGP MESSAGE-----")
        .expect("an armored message");
    let end = text
        .find("-----END PGP MESSAGE-----")
        .expect("an armor end")
        + "-----END PGP MESSAGE-----".len();
    text[start..end].as_bytes().to_vec()
}
