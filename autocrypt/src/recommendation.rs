//! The Autocrypt encryption recommendation (Level 1, "Provide a
//! recommendation for message encryption").

use std::time::{Duration, SystemTime};

use sequoia_openpgp::Cert;

use crate::header::PreferEncrypt;
use crate::key::is_encryption_usable;
use crate::peer::PeerState;

/// The 35 days after which a peer's Autocrypt header counts as stale.
const STALE_AFTER: Duration = Duration::from_secs(35 * 24 * 60 * 60);

/// The four UI recommendations, ordered from "no" to "yes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recommendation {
    Disable,
    Discourage,
    Available,
    Encrypt,
}

impl Recommendation {
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Disable => "disable",
            Recommendation::Discourage => "discourage",
            Recommendation::Available => "available",
            Recommendation::Encrypt => "encrypt",
        }
    }
}

/// The recommendation for one recipient and the key to encrypt to.
#[derive(Debug, Clone)]
pub struct RecipientRecommendation<'a> {
    pub recommendation: Recommendation,
    pub target_key: Option<&'a Cert>,
}

/// Computes the recommendation for a single recipient.
///
/// `peer` is `peers[to-addr]` (None if we know nothing), `own_preference`
/// is the sending account's `prefer_encrypt`, and `reply_to_encrypted` says
/// whether the message answers an encrypted one.
pub fn recommend<'a>(
    peer: Option<&'a PeerState>,
    own_preference: PreferEncrypt,
    reply_to_encrypted: bool,
    now: SystemTime,
) -> RecipientRecommendation<'a> {
    let disable = RecipientRecommendation {
        recommendation: Recommendation::Disable,
        target_key: None,
    };
    let Some(peer) = peer else { return disable };
    let usable = |k: &&Cert| is_encryption_usable(k, now);
    let public_key = peer.public_key.as_ref().filter(usable);
    let gossip_key = peer.gossip_key.as_ref().filter(usable);

    let (preliminary, target) = match (public_key, gossip_key) {
        (None, None) => return disable,
        (None, Some(gossip)) => (Recommendation::Discourage, gossip),
        (Some(public), _) => {
            let stale = match (peer.autocrypt_timestamp, peer.last_seen) {
                (Some(ac), Some(seen)) => {
                    seen.duration_since(ac).is_ok_and(|age| age > STALE_AFTER)
                }
                _ => false,
            };
            if stale {
                (Recommendation::Discourage, public)
            } else {
                (Recommendation::Available, public)
            }
        }
    };
    let mutual = preliminary == Recommendation::Available
        && peer.prefer_encrypt == PreferEncrypt::Mutual
        && own_preference == PreferEncrypt::Mutual;
    let recommendation = if reply_to_encrypted || mutual {
        Recommendation::Encrypt
    } else {
        preliminary
    };
    RecipientRecommendation {
        recommendation,
        target_key: Some(target),
    }
}

/// Combines per-recipient recommendations into the message's: any disable
/// disables, all encrypt encrypts, any discourage discourages, otherwise
/// available. No recipients at all gives `Disable`.
pub fn combine<I: IntoIterator<Item = Recommendation>>(recommendations: I) -> Recommendation {
    let all: Vec<_> = recommendations.into_iter().collect();
    if all.is_empty() || all.contains(&Recommendation::Disable) {
        Recommendation::Disable
    } else if all.iter().all(|r| *r == Recommendation::Encrypt) {
        Recommendation::Encrypt
    } else if all.contains(&Recommendation::Discourage) {
        Recommendation::Discourage
    } else {
        Recommendation::Available
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;
    use std::time::UNIX_EPOCH;
    use Recommendation::*;

    fn t(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * 86400)
    }

    fn peer(pref: PreferEncrypt, ac_day: u64, seen_day: u64) -> PeerState {
        PeerState {
            last_seen: Some(t(seen_day)),
            autocrypt_timestamp: Some(t(ac_day)),
            public_key: Some(key::generate("bob@example.org", t(0)).unwrap()),
            prefer_encrypt: pref,
            ..Default::default()
        }
    }

    #[test]
    fn single_recipient() {
        use PreferEncrypt::*;
        let now = t(100);
        let r = |p: Option<&PeerState>, own, reply| recommend(p, own, reply, now).recommendation;
        assert_eq!(r(None, Mutual, true), Disable);
        assert_eq!(r(Some(&PeerState::default()), Mutual, true), Disable);
        assert_eq!(r(Some(&peer(Mutual, 1, 1)), Mutual, false), Encrypt);
        assert_eq!(r(Some(&peer(Mutual, 1, 1)), NoPreference, false), Available);
        assert_eq!(r(Some(&peer(NoPreference, 1, 1)), Mutual, false), Available);
        assert_eq!(r(Some(&peer(NoPreference, 1, 1)), Mutual, true), Encrypt);
        // 35-day rule: header older than last_seen by more than 35 days.
        assert_eq!(r(Some(&peer(Mutual, 1, 36)), Mutual, false), Encrypt);
        assert_eq!(
            r(Some(&peer(NoPreference, 1, 37)), Mutual, false),
            Discourage
        );
        assert_eq!(r(Some(&peer(Mutual, 1, 37)), Mutual, false), Discourage);
        assert_eq!(r(Some(&peer(Mutual, 1, 37)), Mutual, true), Encrypt);
        // Gossip only: discourage, unless replying to encrypted mail.
        let gossip_only = PeerState {
            gossip_key: Some(key::generate("bob@example.org", t(0)).unwrap()),
            gossip_timestamp: Some(t(1)),
            ..Default::default()
        };
        assert_eq!(r(Some(&gossip_only), Mutual, false), Discourage);
        assert_eq!(r(Some(&gossip_only), Mutual, true), Encrypt);
    }

    #[test]
    fn unusable_keys_count_as_absent() {
        let mut p = peer(PreferEncrypt::Mutual, 1, 1);
        let cert = p.public_key.take().unwrap();
        // Revoke the key.
        let mut signer = cert
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap();
        let rev = cert
            .revoke(
                &mut signer,
                sequoia_openpgp::types::ReasonForRevocation::KeyCompromised,
                b"gone",
            )
            .unwrap();
        let (revoked, _) = cert.insert_packets(rev).unwrap();
        p.public_key = Some(revoked);
        assert_eq!(
            recommend(Some(&p), PreferEncrypt::Mutual, true, t(5)).recommendation,
            Disable
        );
    }

    #[test]
    fn combination() {
        assert_eq!(combine([]), Disable);
        assert_eq!(combine([Encrypt, Encrypt]), Encrypt);
        assert_eq!(combine([Encrypt, Disable]), Disable);
        assert_eq!(combine([Encrypt, Discourage]), Discourage);
        assert_eq!(combine([Encrypt, Available]), Available);
        assert_eq!(combine([Available, Discourage, Encrypt]), Discourage);
    }
}
