//! Whether an outgoing message is encrypted, sent in the clear, or refused.
//!
//! Pure logic over what the keystore knows about each recipient (its
//! effective peer state: a verified key first, rejected keys already
//! removed, imported or DNS keys where Autocrypt has none), the account's
//! policy and a per-message override. A refusal is a sentence for the
//! person who wrote the message: who has no key, and what to do.

use std::time::SystemTime;

use autocrypt::{recommend, PeerState, PreferEncrypt, Recommendation};
use sequoia_openpgp::Cert;

/// The account's rule (SPEC.md, config `policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Encrypt when every recipient has a usable key.
    Opportunistic,
    /// Follow Autocrypt's recommendation (both sides prefer encryption).
    Mutual,
    /// Refuse unless every recipient can be encrypted to.
    Required,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "opportunistic" => Ok(Policy::Opportunistic),
            "mutual" => Ok(Policy::Mutual),
            "required" => Ok(Policy::Required),
            other => Err(format!(
                "unknown policy \"{other}\"; use opportunistic, mutual or required"
            )),
        }
    }
}

/// What the writer asked for in this message (subject tag or header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// `[plain]`: send in the clear even if keys are known.
    Plain,
    /// `[encrypt]`: encrypt, or refuse if that is impossible.
    Encrypt,
}

/// One recipient as the keystore sees it.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub address: &'a str,
    /// The effective peer state, if anything is known.
    pub peer: Option<&'a PeerState>,
    /// They once sent an encrypted message that was neither encrypted to
    /// them nor signed by them (the keystore's `outsider` record).
    pub outsider: bool,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    /// Encrypt to these keys, one per recipient, in recipient order.
    Encrypt(Vec<&'a Cert>),
    Plain,
    /// Send nothing; the sentence says why and what to do.
    Refuse(String),
}

/// Decides for one message. `reply_to_encrypted`: the message answers,
/// forwards or carries one that was encrypted (it is then encrypted, or
/// refused).
pub fn decide<'a>(
    recipients: &[Recipient<'a>],
    policy: Policy,
    request: Option<Override>,
    own_preference: PreferEncrypt,
    reply_to_encrypted: bool,
    now: SystemTime,
) -> Decision<'a> {
    if recipients.is_empty() {
        return Decision::Refuse("The message has no recipients.".into());
    }
    let verdicts: Vec<_> = recipients
        .iter()
        .map(|r| recommend(r.peer, own_preference, reply_to_encrypted, now))
        .collect();
    let keys: Vec<&'a Cert> = verdicts.iter().filter_map(|v| v.target_key).collect();
    let missing: Vec<&str> = recipients
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.target_key.is_none())
        .map(|(r, _)| r.address)
        .collect();
    let all_have_keys = missing.is_empty();
    // Nor does it go, even encrypted, to someone who sent on a ciphertext
    // they could not read ("Re: What's up Johnny?"): it may quote it.
    let outsiders: Vec<&str> = recipients
        .iter()
        .filter(|r| r.outsider)
        .map(|r| r.address)
        .collect();
    if reply_to_encrypted && !outsiders.is_empty() {
        return Decision::Refuse(format!(
            "Not sent: this message answers or forwards an encrypted message, and {} sent you \
             an encrypted message that was not encrypted to them and not signed by them, so \
             they could not read it: someone else wrote it. The answer may quote what they \
             cannot read. Leave them out, or write a new message that quotes nothing.",
            list(&outsiders)
        ));
    }
    // An encrypted conversation stays encrypted whatever the policy or the
    // writer's [plain]: the message may quote what the provider must not see.
    if reply_to_encrypted {
        return if all_have_keys {
            Decision::Encrypt(keys)
        } else {
            Decision::Refuse(format!(
                "Not sent: this message answers or forwards an encrypted message, and there is \
                 no usable key for {}, so the conversation would reach the provider in the \
                 clear. Import their key (keytool import, or keytool discover), leave them out, \
                 or write a new message that quotes nothing.",
                list(&missing)
            ))
        };
    }
    match (policy, request) {
        (Policy::Required, _) if !all_have_keys => Decision::Refuse(format!(
            "Not sent: this account only sends encrypted mail, and there is no usable key for {}. \
             Import their key (keytool import, or keytool discover) or ask them to write to you \
             from an Autocrypt-capable client first.",
            list(&missing)
        )),
        (Policy::Required, _) => Decision::Encrypt(keys),
        (_, Some(Override::Plain)) => Decision::Plain,
        (_, Some(Override::Encrypt)) if !all_have_keys => Decision::Refuse(format!(
            "Not sent: you asked for encryption, but there is no usable key for {}. \
             Import their key (keytool import, or keytool discover), or remove [encrypt] from \
             the subject to send it unencrypted.",
            list(&missing)
        )),
        (_, Some(Override::Encrypt)) => Decision::Encrypt(keys),
        (Policy::Opportunistic, None) if all_have_keys => Decision::Encrypt(keys),
        (Policy::Mutual, None) if combine(&verdicts) == Recommendation::Encrypt => {
            Decision::Encrypt(keys)
        }
        _ => Decision::Plain,
    }
}

fn combine(verdicts: &[autocrypt::RecipientRecommendation<'_>]) -> Recommendation {
    autocrypt::combine(verdicts.iter().map(|v| v.recommendation))
}

fn list(addresses: &[&str]) -> String {
    match addresses {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn peer(addr: &str, prefer: PreferEncrypt) -> PeerState {
        let cert = autocrypt::key::generate(addr, now() - Duration::from_secs(3600)).expect("key");
        PeerState {
            last_seen: Some(now()),
            autocrypt_timestamp: Some(now()),
            public_key: Some(cert),
            prefer_encrypt: prefer,
            ..PeerState::default()
        }
    }

    #[test]
    fn policies_and_overrides() {
        let bob = peer("bob@example.org", PreferEncrypt::Mutual);
        let carol = peer("carol@example.org", PreferEncrypt::NoPreference);
        let with_bob = [to("bob@example.org", Some(&bob), false)];
        let with_carol = [to("carol@example.org", Some(&carol), false)];
        let mixed = [
            to("bob@example.org", Some(&bob), false),
            to("dave@example.net", None, false),
            to("erin@example.net", None, false),
        ];
        let d = |r: &[Recipient<'_>], p, o| {
            verdict(decide(r, p, o, PreferEncrypt::Mutual, false, now()))
        };
        use Policy::*;
        assert_eq!(d(&with_bob, Opportunistic, None), "encrypt 1");
        assert_eq!(d(&with_carol, Opportunistic, None), "encrypt 1");
        assert_eq!(
            d(&with_carol, Mutual, None),
            "plain",
            "carol has no preference"
        );
        assert_eq!(d(&with_bob, Mutual, None), "encrypt 1");
        assert_eq!(d(&mixed, Opportunistic, None), "plain");
        assert_eq!(d(&with_bob, Opportunistic, Some(Override::Plain)), "plain");
        assert_eq!(d(&with_carol, Mutual, Some(Override::Encrypt)), "encrypt 1");
        let refused = d(&mixed, Opportunistic, Some(Override::Encrypt));
        assert!(
            refused.contains("dave@example.net and erin@example.net")
                && refused.contains("remove [encrypt]"),
            "{refused}"
        );
        let refused = d(&mixed, Required, Some(Override::Plain));
        assert!(
            refused.starts_with("refuse: Not sent: this account only sends encrypted mail")
                && refused.contains("dave@example.net and erin@example.net")
                && !refused.contains("bob@"),
            "{refused}"
        );
        assert_eq!(d(&with_bob, Required, Some(Override::Plain)), "encrypt 1");
        assert!(d(&[], Opportunistic, None).starts_with("refuse"));
    }

    fn to<'a>(address: &'a str, peer: Option<&'a PeerState>, outsider: bool) -> Recipient<'a> {
        Recipient {
            address,
            peer,
            outsider,
        }
    }

    fn verdict(d: Decision<'_>) -> String {
        match d {
            Decision::Encrypt(k) => format!("encrypt {}", k.len()),
            Decision::Plain => "plain".into(),
            Decision::Refuse(why) => format!("refuse: {why}"),
        }
    }

    /// "Re: What's up Johnny?": an answer to an encrypted message is never
    /// sent in the clear, whatever the policy or the writer's [plain].
    #[test]
    fn encrypted_conversations_stay_encrypted() {
        let bob = peer("bob@example.org", PreferEncrypt::NoPreference);
        let with_bob = [to("bob@example.org", Some(&bob), false)];
        let with_mallory = [
            to("bob@example.org", Some(&bob), false),
            to("mallory@example.net", None, false),
        ];
        let reply = |r: &[Recipient<'_>], p, o| {
            verdict(decide(r, p, o, PreferEncrypt::NoPreference, true, now()))
        };
        use Policy::*;
        for policy in [Opportunistic, Mutual, Required] {
            for request in [None, Some(Override::Plain), Some(Override::Encrypt)] {
                assert_eq!(reply(&with_bob, policy, request), "encrypt 1");
                let refused = reply(&with_mallory, policy, request);
                assert!(
                    refused.starts_with(
                        "refuse: Not sent: this message answers or forwards an encrypted message"
                    ) && refused.contains("mallory@example.net")
                        && !refused.contains("bob@"),
                    "{policy:?} {request:?}: {refused}"
                );
            }
        }
    }

    /// Someone who sent on a ciphertext they could not read gets no answer
    /// in that conversation, even with a key; new mail to them is not held.
    #[test]
    fn outsiders_get_no_answer_even_encrypted() {
        let bob = peer("bob@example.org", PreferEncrypt::Mutual);
        let mallory = peer("mallory@example.net", PreferEncrypt::Mutual);
        let recipients = [
            to("bob@example.org", Some(&bob), false),
            to("mallory@example.net", Some(&mallory), true),
        ];
        for policy in [Policy::Opportunistic, Policy::Mutual, Policy::Required] {
            let answer = decide(
                &recipients,
                policy,
                None,
                PreferEncrypt::Mutual,
                true,
                now(),
            );
            let refused = verdict(answer);
            assert!(
                refused.starts_with("refuse: Not sent")
                    && refused.contains("mallory@example.net")
                    && !refused.contains("bob@")
                    && refused.contains("could not read it"),
                "{policy:?}: {refused}"
            );
            let new = decide(
                &recipients,
                policy,
                None,
                PreferEncrypt::Mutual,
                false,
                now(),
            );
            assert_eq!(verdict(new), "encrypt 2", "{policy:?}");
            let to_bob = decide(
                &recipients[..1],
                policy,
                None,
                PreferEncrypt::Mutual,
                true,
                now(),
            );
            assert_eq!(verdict(to_bob), "encrypt 1", "{policy:?}");
        }
    }

    #[test]
    fn policy_names() {
        assert_eq!("required".parse::<Policy>(), Ok(Policy::Required));
        assert!("always"
            .parse::<Policy>()
            .unwrap_err()
            .contains("opportunistic"));
    }
}
