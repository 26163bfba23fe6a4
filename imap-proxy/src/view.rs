//! What the user is shown for a message from the provider: decrypted where
//! possible, with the `Letterlock-Security` status header in front.
//!
//! This is the one place that turns provider bytes into what a client reads,
//! so the IMAP proxy and `gateway archive sync` archive exactly the same
//! bytes for the same message.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::learn::Lessons;
use mailcrypt::{DecryptContext, Outcome, Refusal, SignatureStatus};
use sequoia_openpgp::Cert;

use keystore::{Keystore, KeystoreError, TrustLevel};

/// The keys one account reads its mail with, loaded once for many messages.
#[derive(Debug, Clone)]
pub struct Keys {
    secret: Vec<Cert>,
    verifiers: Vec<Cert>,
    own: HashSet<String>,
    /// Explicit decisions by (address, fingerprint); absent means TOFU.
    trust: HashMap<(String, String), TrustLevel>,
}

impl Keys {
    /// The account's secret key and every peer key the user has not rejected.
    pub async fn load(store: &Keystore, account: &str) -> Result<Self, KeystoreError> {
        let identity = store.identity(account).await?;
        let own = HashSet::from([identity.cert.fingerprint().to_hex()]);
        let trust = store
            .trust_decisions()
            .await?
            .into_iter()
            .map(|(address, fpr, level)| ((address, fpr), level))
            .collect();
        Ok(Keys {
            secret: vec![identity.cert],
            verifiers: store.verifier_certs().await?,
            own,
            trust,
        })
    }

    fn key_word(&self, signer: &str, fpr: &str) -> &'static str {
        if self.own.contains(fpr) {
            return "own";
        }
        let signer = autocrypt::normalize_addr(signer);
        match self.trust.get(&(signer, fpr.to_string())) {
            Some(TrustLevel::Verified) => "verified",
            Some(TrustLevel::Rejected) => "rejected",
            _ => "tofu",
        }
    }
}

/// A message as the user sees it.
#[derive(Debug)]
pub struct View {
    /// The bytes to show (and to archive).
    pub message: Vec<u8>,
    /// The provider's copy was encrypted (whether or not it could be opened).
    pub encrypted: bool,
    /// The status header value, if the gateway decrypted or verified anything.
    pub status: Option<String>,
    /// Why an encrypted message stayed closed, in technical terms for the log.
    pub detail: Option<String>,
    /// What it teaches about keys (apply with [`crate::learn::learn`]).
    pub lessons: Lessons,
}

/// Decrypts and verifies one message from the provider.
pub fn view(provider_bytes: &[u8], keys: &Keys, now: SystemTime) -> View {
    let ctx = DecryptContext {
        secret_keys: &keys.secret,
        verifier_certs: &keys.verifiers,
        now,
    };
    let outcome = mailcrypt::decrypt(provider_bytes, &ctx);
    let status = status_value(&outcome, keys);
    // Every refusal is about encrypted content (or content too large to
    // look at), so the message counts as encrypted either way.
    let encrypted = outcome.decrypted || outcome.refusal.is_some();
    let detail = match (&outcome.refusal, &outcome.detail) {
        (Some(r), Some(d)) => Some(format!("{r} ({d})")),
        (Some(r), None) => Some(r.to_string()),
        _ => None,
    };
    let lessons = Lessons::of(provider_bytes, outcome.gossip, now);
    let message = match &status {
        Some(value) => mailcrypt::add_status_header(&outcome.message, value),
        None => outcome.message,
    };
    View {
        message,
        encrypted,
        status,
        detail,
        lessons,
    }
}

fn refusal_word(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::NoKey => "no-key",
        Refusal::Integrity => "integrity",
        Refusal::Nested => "nested",
        Refusal::PartialInline => "partial-inline",
        Refusal::Malformed(_) => "malformed",
        Refusal::TooLarge(..) => "too-large",
    }
}

/// The `Letterlock-Security` value: `encrypted; signature=valid;
/// signer=bob@example.org; key=verified; fpr=…` (SPEC.md).
fn status_value(outcome: &Outcome, keys: &Keys) -> Option<String> {
    let mut fields = Vec::new();
    if outcome.decrypted {
        fields.push("encrypted".to_string());
    } else if let Some(refusal) = &outcome.refusal {
        fields.push("encrypted".to_string());
        fields.push("decryption=failed".to_string());
        fields.push(format!("reason={}", refusal_word(refusal)));
        return Some(fields.join("; "));
    } else if outcome.signature == SignatureStatus::Unsigned {
        // Neither decrypted nor verified: nothing to say.
        return None;
    } else {
        fields.push("unencrypted".to_string());
    }
    fields.push(format!("signature={}", outcome.signature.as_str()));
    match &outcome.signature {
        SignatureStatus::Valid {
            fingerprint,
            signer,
        } => {
            let fpr = fingerprint.to_hex();
            fields.push(format!("signer={signer}"));
            fields.push(format!("key={}", keys.key_word(signer, &fpr)));
            fields.push(format!("fpr={fpr}"));
        }
        SignatureStatus::SignerMismatch { fingerprint } => {
            fields.push(format!("fpr={}", fingerprint.to_hex()));
        }
        _ => {}
    }
    Some(fields.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            secret: Vec::new(),
            verifiers: Vec::new(),
            own: HashSet::new(),
            trust: HashMap::new(),
        }
    }

    #[test]
    fn plain_unsigned_mail_gets_no_header_and_loses_forged_ones() {
        let msg = b"Letterlock-Security: encrypted; signature=valid\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let v = view(msg, &keys(), SystemTime::now());
        assert!(v.status.is_none());
        assert!(!v.encrypted);
        assert_eq!(
            v.message,
            b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
        );
    }
}
