//! Shared helpers for the mailcrypt integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::{PacketParserResult, Parse};
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

/// Silences the unused-import lint for helpers some test files do not use.
pub fn _unused(_: PacketParserResult) {}
