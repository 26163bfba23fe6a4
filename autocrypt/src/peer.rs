//! Per-peer Autocrypt state and its update from incoming messages.

use std::time::SystemTime;

use sequoia_openpgp::{Cert, Fingerprint};

use crate::header::{select_sender_header, AutocryptHeader, PreferEncrypt};
use crate::{normalize_addr, HeaderError};

/// What Autocrypt remembers about one correspondent (`peers[addr]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerState {
    /// Effective date of the newest message seen from the peer.
    pub last_seen: Option<SystemTime>,
    /// Effective date of the newest message with a valid Autocrypt header.
    pub autocrypt_timestamp: Option<SystemTime>,
    pub public_key: Option<Cert>,
    pub prefer_encrypt: PreferEncrypt,
    /// Effective date of the newest accepted gossip about the peer.
    pub gossip_timestamp: Option<SystemTime>,
    pub gossip_key: Option<Cert>,
}

/// What an update did to a peer, so the keystore can record key changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// The message was older than the newest Autocrypt header: nothing changed.
    Stale,
    /// Only `last_seen` moved (or nothing, for a message without header that
    /// is not newer).
    Seen,
    /// The Autocrypt header was applied; the key stayed the same.
    Refreshed,
    /// The Autocrypt header brought a key for a peer that had none.
    NewKey { fingerprint: Fingerprint },
    /// The Autocrypt header replaced the peer's key by a different one.
    KeyChanged { old: Fingerprint, new: Fingerprint },
}

/// The facts about an incoming message that Autocrypt needs. The message
/// engine extracts them; this crate never parses MIME.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    /// Every address in the From header.
    pub from: Vec<String>,
    /// The Date header, if present and parseable.
    pub date: Option<SystemTime>,
    /// When the message arrived (or, failing that, when we first saw it).
    pub arrival: SystemTime,
    /// The top-level content type, lower-case `type/subtype`.
    pub content_type: String,
    /// The `Auto-Submitted` header value, if any.
    pub auto_submitted: Option<String>,
    /// The raw values of every `Autocrypt:` header.
    pub autocrypt_headers: Vec<String>,
}

/// Why an incoming message does not update peer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    NoFrom,
    SeveralFrom,
    Report,
    AutoReplied,
}

/// An incoming message as Autocrypt sees it, ready to update `peers[from]`.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The normalized sender address (`from-addr`).
    pub from_addr: String,
    pub effective_date: SystemTime,
    /// The single valid Autocrypt header, if there is one.
    pub header: Option<AutocryptHeader>,
    /// Why other Autocrypt headers were not used.
    pub header_problems: Vec<HeaderError>,
}

/// The effective date of a message: its Date, or the arrival time when Date
/// is missing or in the future.
pub fn effective_date(date: Option<SystemTime>, arrival: SystemTime) -> SystemTime {
    match date {
        Some(d) if d <= arrival => d,
        _ => arrival,
    }
}

/// Decides whether a message may update peer state and extracts what it
/// contributes.
pub fn examine(facts: &MessageFacts) -> Result<Incoming, Ignored> {
    let from_addr = match facts.from.as_slice() {
        [] => return Err(Ignored::NoFrom),
        [one] => normalize_addr(one),
        _ => return Err(Ignored::SeveralFrom),
    };
    if from_addr.is_empty() {
        return Err(Ignored::NoFrom);
    }
    if facts.content_type.eq_ignore_ascii_case("multipart/report") {
        return Err(Ignored::Report);
    }
    if let Some(value) = &facts.auto_submitted {
        if value
            .trim()
            .to_ascii_lowercase()
            .starts_with("auto-replied")
        {
            return Err(Ignored::AutoReplied);
        }
    }
    let (header, header_problems) = select_sender_header(&facts.autocrypt_headers, &from_addr);
    Ok(Incoming {
        from_addr,
        effective_date: effective_date(facts.date, facts.arrival),
        header,
        header_problems,
    })
}

impl PeerState {
    /// Applies an incoming message from this peer (Level 1, "Updating
    /// Autocrypt Peer State").
    pub fn update(&mut self, incoming: &Incoming) -> PeerChange {
        let date = incoming.effective_date;
        if self.autocrypt_timestamp.is_some_and(|t| date < t) {
            return PeerChange::Stale;
        }
        if self.last_seen.is_none_or(|t| date > t) {
            self.last_seen = Some(date);
        }
        let Some(header) = &incoming.header else {
            return PeerChange::Seen;
        };
        let old = self.public_key.as_ref().map(Cert::fingerprint);
        let new = header.cert.fingerprint();
        self.autocrypt_timestamp = Some(date);
        self.public_key = Some(header.cert.clone());
        self.prefer_encrypt = header.prefer_encrypt;
        match old {
            None => PeerChange::NewKey { fingerprint: new },
            Some(old) if old == new => PeerChange::Refreshed,
            Some(old) => PeerChange::KeyChanged { old, new },
        }
    }

    /// Applies accepted gossip about this peer (Level 1, "Updating Autocrypt
    /// Peer State from Key Gossip"). Gossip only ever fills `gossip_key`;
    /// the recommendation prefers `public_key`, so gossip never overrides a
    /// key received directly. Returns whether anything changed.
    pub fn update_from_gossip(&mut self, effective_date: SystemTime, key: &Cert) -> bool {
        if self.gossip_timestamp.is_some_and(|t| t > effective_date) {
            return false;
        }
        self.gossip_timestamp = Some(effective_date);
        self.gossip_key = Some(key.clone());
        true
    }

    /// The key Autocrypt would encrypt to: the direct key, else gossip.
    pub fn target_key(&self) -> Option<&Cert> {
        self.public_key.as_ref().or(self.gossip_key.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * 86400)
    }

    fn header(addr: &str) -> AutocryptHeader {
        let k = key::generate(addr, t(0)).unwrap();
        AutocryptHeader::new(
            addr,
            PreferEncrypt::Mutual,
            key::minimize(&k, addr, t(0)).unwrap(),
        )
    }

    fn incoming(days: u64, header: Option<AutocryptHeader>) -> Incoming {
        Incoming {
            from_addr: "bob@example.org".into(),
            effective_date: t(days),
            header,
            header_problems: vec![],
        }
    }

    #[test]
    fn effective_date_falls_back_to_arrival() {
        assert_eq!(effective_date(Some(t(1)), t(2)), t(1));
        assert_eq!(effective_date(Some(t(3)), t(2)), t(2));
        assert_eq!(effective_date(None, t(2)), t(2));
    }

    #[test]
    fn ignores_reports_autoreplies_and_several_senders() {
        let base = MessageFacts {
            from: vec!["bob@example.org".into()],
            date: None,
            arrival: t(0),
            content_type: "text/plain".into(),
            auto_submitted: None,
            autocrypt_headers: vec![],
        };
        assert!(examine(&base).is_ok());
        let mut m = base.clone();
        m.from.push("carol@example.org".into());
        assert_eq!(examine(&m).unwrap_err(), Ignored::SeveralFrom);
        let mut m = base.clone();
        m.content_type = "multipart/report".into();
        assert_eq!(examine(&m).unwrap_err(), Ignored::Report);
        let mut m = base.clone();
        m.auto_submitted = Some("auto-replied".into());
        assert_eq!(examine(&m).unwrap_err(), Ignored::AutoReplied);
        let mut m = base;
        m.from.clear();
        assert_eq!(examine(&m).unwrap_err(), Ignored::NoFrom);
    }

    #[test]
    fn update_follows_level1() {
        let h1 = header("bob@example.org");
        let h2 = header("bob@example.org");
        let mut peer = PeerState::default();
        assert!(matches!(
            peer.update(&incoming(10, Some(h1.clone()))),
            PeerChange::NewKey { .. }
        ));
        assert_eq!(peer.autocrypt_timestamp, Some(t(10)));
        // An older message with another key changes nothing.
        assert_eq!(
            peer.update(&incoming(5, Some(h2.clone()))),
            PeerChange::Stale
        );
        assert_eq!(
            peer.public_key.as_ref().unwrap().fingerprint(),
            h1.cert.fingerprint()
        );
        // A newer message without a header only moves last_seen.
        assert_eq!(peer.update(&incoming(20, None)), PeerChange::Seen);
        assert_eq!(peer.last_seen, Some(t(20)));
        assert_eq!(peer.autocrypt_timestamp, Some(t(10)));
        // A message between the two with a header updates the key but not last_seen.
        assert!(matches!(
            peer.update(&incoming(15, Some(h2.clone()))),
            PeerChange::KeyChanged { .. }
        ));
        assert_eq!(peer.last_seen, Some(t(20)));
        assert_eq!(peer.autocrypt_timestamp, Some(t(15)));
    }

    #[test]
    fn gossip_does_not_go_back_in_time() {
        let h1 = header("carol@example.org");
        let h2 = header("carol@example.org");
        let mut peer = PeerState::default();
        assert!(peer.update_from_gossip(t(10), &h1.cert));
        assert!(!peer.update_from_gossip(t(5), &h2.cert));
        assert_eq!(
            peer.gossip_key.as_ref().unwrap().fingerprint(),
            h1.cert.fingerprint()
        );
        // A direct key wins over gossip.
        peer.update(&Incoming {
            from_addr: "carol@example.org".into(),
            effective_date: t(11),
            header: Some(h2.clone()),
            header_problems: vec![],
        });
        assert!(peer.update_from_gossip(t(12), &h1.cert));
        assert_eq!(
            peer.target_key().unwrap().fingerprint(),
            h2.cert.fingerprint()
        );
    }
}
