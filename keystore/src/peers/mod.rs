//! Peers: Autocrypt state, key history, trust decisions and key events.

use std::time::SystemTime;

use autocrypt::{normalize_addr, Incoming, PeerChange, PeerState, PreferEncrypt};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use serde::Serialize;
use sqlx::SqliteConnection;

use crate::error::KeystoreError;
use crate::time::{from_db, to_db};
use crate::Keystore;

mod record;
mod rows;
mod trust;

use rows::*;
use trust::apply_trust;

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    Autocrypt,
    Gossip,
    Dns,
    /// The Web Key Directory.
    Wkd,
    Import,
    SetupMessage,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Autocrypt => "autocrypt",
            KeySource::Gossip => "gossip",
            KeySource::Dns => "dns",
            KeySource::Wkd => "wkd",
            KeySource::Import => "import",
            KeySource::SetupMessage => "setup-message",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "gossip" => KeySource::Gossip,
            "dns" => KeySource::Dns,
            "wkd" => KeySource::Wkd,
            "import" => KeySource::Import,
            "setup-message" => KeySource::SetupMessage,
            _ => KeySource::Autocrypt,
        }
    }
}

/// How far one (address, key) is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustLevel {
    /// Trust on first use: learned, never checked by the user.
    Tofu,
    /// The user compared the fingerprint (`keytool verify`).
    Verified,
    /// The user said this key is not the peer's. It is never used.
    Rejected,
}

impl TrustLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Tofu => "tofu",
            TrustLevel::Verified => "verified",
            TrustLevel::Rejected => "rejected",
        }
    }
}

/// What the key in an incoming message means, for the status header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// No Autocrypt key in the message.
    None,
    /// The peer's key as before (or the first one), trust on first use.
    Tofu,
    /// The key the user verified.
    Verified,
    /// An unverified peer's key changed with this message.
    Changed,
    /// A key different from the verified one: stored, not used.
    Conflict,
    /// A key the user rejected.
    Rejected,
    /// The message was older than what we know; nothing was learned.
    Stale,
}

impl KeyStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyStatus::None => "none",
            KeyStatus::Tofu => "tofu",
            KeyStatus::Verified => "verified",
            KeyStatus::Changed => "changed",
            KeyStatus::Conflict => "conflict",
            KeyStatus::Rejected => "rejected",
            KeyStatus::Stale => "stale",
        }
    }
}

/// One row of a peer's key history.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub address: String,
    pub fingerprint: String,
    pub source: KeySource,
    #[serde(serialize_with = "unix")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "unix")]
    pub last_seen: SystemTime,
    pub trust: TrustLevel,
    /// When the user verified or rejected the key.
    #[serde(serialize_with = "unix_opt")]
    pub trust_since: Option<SystemTime>,
    #[serde(skip)]
    pub cert: Cert,
}

/// What [`Keystore::verify_fingerprint`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerprintCheck {
    /// The key with this fingerprint is now verified.
    Verified(String),
    /// No usable key of the contact has this fingerprint (normalized).
    Mismatch(String),
}

/// Something that happened to a peer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    New,
    Changed,
    Conflict,
    Verified,
    Unverified,
    Rejected,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Changed => "changed",
            EventKind::Conflict => "conflict",
            EventKind::Verified => "verified",
            EventKind::Unverified => "unverified",
            EventKind::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => EventKind::New,
            "changed" => EventKind::Changed,
            "conflict" => EventKind::Conflict,
            "verified" => EventKind::Verified,
            "unverified" => EventKind::Unverified,
            "rejected" => EventKind::Rejected,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyEvent {
    #[serde(serialize_with = "unix")]
    pub at: SystemTime,
    pub kind: EventKind,
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
}

/// One line of `keytool list`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSummary {
    pub address: String,
    /// The key mail to this peer is encrypted to, if any.
    pub fingerprint: Option<String>,
    pub trust: Option<TrustLevel>,
    pub prefer_encrypt: String,
    #[serde(serialize_with = "unix_opt")]
    pub last_seen: Option<SystemTime>,
    /// Keys that differ from the verified one and were seen after it was verified.
    pub conflicts: Vec<String>,
}

impl PeerSummary {
    /// The key a person should compare to verify this contact: a
    /// conflicting key first (what they most likely need to check), else
    /// the key mail goes to ([`Keystore::verification_candidate`]).
    pub fn verification_candidate(&self) -> Option<&str> {
        self.conflicts
            .first()
            .or(self.fingerprint.as_ref())
            .map(String::as_str)
    }
}

pub(crate) fn unix<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(to_db(*t))
}

fn unix_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&to_db(*t)),
        None => s.serialize_none(),
    }
}

type HistoryRow = (
    String,
    String,
    Vec<u8>,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);
type PeerRow = (
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    String,
    Option<i64>,
    Option<Vec<u8>>,
);

/// A fingerprint as stored: upper-case hex without spaces. Accepts the
/// groups of four people read out and the `OPENPGP4FPR:` URI of QR codes.
pub fn normalize_fingerprint(f: &str) -> String {
    let f = f.trim();
    let f = match f.get(..12) {
        Some(scheme) if scheme.eq_ignore_ascii_case("OPENPGP4FPR:") => &f[12..],
        _ => f,
    };
    f.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}
