//! Autocrypt-Gossip: which headers to emit, and which received ones to accept.
//!
//! Gossip only ever updates `gossip_key` (see [`crate::PeerState::update_from_gossip`]);
//! a key received directly in an `Autocrypt:` header always wins in the
//! recommendation, so gossip never overrides it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use sequoia_openpgp::Cert;

use crate::header::{AutocryptHeader, PreferEncrypt};
use crate::key::{minimize, KeyError};
use crate::{addr_eq, normalize_addr, HeaderError};

/// Builds the `Autocrypt-Gossip:` headers for an encrypted message.
///
/// `to_cc` are the To and Cc recipients with the keys the message is
/// encrypted to. Bcc recipients must not be passed: gossip would reveal them.
/// Each key is minimized to the user ID of its address; no header carries
/// `prefer-encrypt`. Level 1 gossips only when there is more than one
/// recipient; the caller decides that.
pub fn headers_to_emit(
    to_cc: &[(&str, &Cert)],
    now: SystemTime,
) -> Result<Vec<AutocryptHeader>, KeyError> {
    let mut seen = BTreeMap::new();
    for (addr, cert) in to_cc {
        let key = normalize_addr(addr);
        if seen.contains_key(&key) {
            continue;
        }
        let min = minimize(cert, addr, now)?;
        seen.insert(
            key,
            AutocryptHeader::new(addr, PreferEncrypt::NoPreference, min),
        );
    }
    Ok(seen.into_values().collect())
}

/// What we know about a message that carried gossip headers.
#[derive(Debug, Clone)]
pub struct GossipContext<'a> {
    /// The sender's address (gossip about the sender is never accepted).
    pub from_addr: &'a str,
    /// All addresses in To and Cc.
    pub to_cc: &'a [String],
    /// The gossip headers were inside an encrypted payload.
    pub encrypted: bool,
    /// That payload carried a valid signature by the sender.
    pub signature_valid: bool,
}

/// Why a gossip header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipRejection {
    /// Gossip counts only inside signed, encrypted mail.
    NotSignedAndEncrypted,
    NotARecipient(String),
    AboutSender(String),
    /// Two gossip headers name the same address; both are ignored.
    Conflicting(String),
    Invalid(HeaderError),
}

/// Filters received gossip: accepted only inside signed encrypted mail, only
/// for To/Cc addresses, never about the sender, one header per address.
pub fn accept(
    ctx: &GossipContext<'_>,
    values: &[impl AsRef<str>],
) -> (Vec<AutocryptHeader>, Vec<GossipRejection>) {
    let mut rejected = Vec::new();
    if values.is_empty() {
        return (Vec::new(), rejected);
    }
    if !(ctx.encrypted && ctx.signature_valid) {
        rejected.push(GossipRejection::NotSignedAndEncrypted);
        return (Vec::new(), rejected);
    }
    let mut by_addr: BTreeMap<String, Option<AutocryptHeader>> = BTreeMap::new();
    for value in values {
        let header = match AutocryptHeader::parse(value.as_ref(), None) {
            Ok(h) => h,
            Err(e) => {
                rejected.push(GossipRejection::Invalid(e));
                continue;
            }
        };
        let addr = normalize_addr(&header.addr);
        if addr_eq(&addr, ctx.from_addr) {
            rejected.push(GossipRejection::AboutSender(addr));
            continue;
        }
        if !ctx.to_cc.iter().any(|r| addr_eq(r, &addr)) {
            rejected.push(GossipRejection::NotARecipient(addr));
            continue;
        }
        match by_addr.get_mut(&addr) {
            None => {
                by_addr.insert(addr, Some(header));
            }
            Some(slot) => {
                if slot.take().is_some() {
                    rejected.push(GossipRejection::Conflicting(addr));
                }
            }
        }
    }
    (by_addr.into_values().flatten().collect(), rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::generate;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn emits_one_minimal_header_per_recipient_without_preference() {
        let bob = generate("bob@example.org", now()).unwrap();
        let carol = generate("carol@example.org", now()).unwrap();
        let headers = headers_to_emit(
            &[
                ("bob@example.org", &bob),
                ("carol@example.org", &carol),
                ("Bob@example.org", &bob),
            ],
            now(),
        )
        .unwrap();
        assert_eq!(headers.len(), 2);
        for h in &headers {
            assert!(!h.cert.is_tsk());
            assert!(!h.render_gossip("\n").contains("prefer-encrypt"));
        }
    }

    #[test]
    fn acceptance_rules() {
        let bob = generate("bob@example.org", now()).unwrap();
        let carol = generate("carol@example.org", now()).unwrap();
        let alice = generate("alice@example.org", now()).unwrap();
        let h = |addr: &str, c: &Cert| {
            AutocryptHeader::new(addr, PreferEncrypt::NoPreference, c.clone()).render_gossip("\n")
        };
        let to_cc = vec![
            "bob@example.org".to_string(),
            "carol@example.org".to_string(),
        ];
        let ctx = GossipContext {
            from_addr: "alice@example.org",
            to_cc: &to_cc,
            encrypted: true,
            signature_valid: true,
        };
        let values = vec![
            h("carol@example.org", &carol),
            h("alice@example.org", &alice),
            h("mallory@example.org", &bob),
        ];
        let (ok, rejected) = accept(&ctx, &values);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].addr, "carol@example.org");
        assert!(rejected.contains(&GossipRejection::AboutSender("alice@example.org".into())));
        assert!(rejected.contains(&GossipRejection::NotARecipient(
            "mallory@example.org".into()
        )));

        let unsigned = GossipContext {
            signature_valid: false,
            ..ctx.clone()
        };
        assert!(accept(&unsigned, &values).0.is_empty());
        let cleartext = GossipContext {
            encrypted: false,
            ..ctx.clone()
        };
        assert!(accept(&cleartext, &values).0.is_empty());

        let twice = vec![h("bob@example.org", &bob), h("bob@example.org", &carol)];
        let (ok, rejected) = accept(&ctx, &twice);
        assert!(ok.is_empty());
        assert_eq!(
            rejected,
            vec![GossipRejection::Conflicting("bob@example.org".into())]
        );
    }
}
