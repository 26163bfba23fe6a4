//! Keys in the shape Autocrypt wants them.

use std::time::SystemTime;

use sequoia_openpgp::cert::prelude::*;
use sequoia_openpgp::packet::Packet;
use sequoia_openpgp::types::{Features, KeyFlags, RevocationStatus};
use sequoia_openpgp::{Cert, Profile};
use thiserror::Error;

use crate::addr::addr_eq;
use crate::policy;

/// Why a certificate cannot be used (for encryption, or as an own key).
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("the key is not valid under the current OpenPGP policy: {0}")]
    Invalid(String),
    #[error("the key has been revoked by its owner")]
    Revoked,
    #[error("the key has expired")]
    Expired,
    #[error("the key has no valid encryption subkey")]
    NoEncryptionKey,
    #[error("the key has no valid signing key")]
    NoSigningKey,
    #[error("the key has no user ID for {0}")]
    NoMatchingUserId(String),
    #[error("could not generate a key: {0}")]
    Generate(String),
}

/// Generates a new Autocrypt key for `addr`: an Ed25519 primary key (sign and
/// certify) and a Cv25519 encryption subkey, OpenPGP v4 so that GnuPG 2.2,
/// Sequoia and RNP all read it. The key does not expire.
pub fn generate(addr: &str, creation_time: SystemTime) -> Result<Cert, KeyError> {
    let builder = CertBuilder::new()
        .set_profile(Profile::RFC4880)
        .map_err(|e| KeyError::Generate(e.to_string()))?
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(creation_time)
        .set_validity_period(None)
        // Only SEIPD v1 (MDC): GnuPG 2.2 cannot read SEIPD v2, and senders
        // pick v2 when every recipient key advertises it.
        .set_features(Features::empty().set_seipdv1())
        .map_err(|e| KeyError::Generate(e.to_string()))?
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .add_userid(format!("<{}>", addr.trim()))
        .add_subkey(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
            None,
            None,
        );
    let (cert, _revocation) = builder
        .generate()
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(cert)
}

/// Reduces a certificate to what an Autocrypt header carries: the primary
/// key (with its direct-key signature where the user ID binding
/// does not carry the key flags), the user ID that matches
/// `addr` (or the primary one) with its newest self-signature, and the newest
/// valid encryption subkey with its binding — the 5-packet certificate of
/// Level 1. Secret key material is always removed.
pub fn minimize(cert: &Cert, addr: &str, now: SystemTime) -> Result<Cert, KeyError> {
    let public = cert.clone().strip_secret_key_material();
    let vc = public
        .with_policy(policy(), now)
        .map_err(|e| KeyError::Invalid(e.to_string()))?;
    let primary = vc.primary_key();
    let uid = vc
        .userids()
        .find(|ua| userid_matches(ua.userid(), addr))
        .or_else(|| vc.primary_userid().ok())
        .ok_or_else(|| KeyError::NoMatchingUserId(addr.to_string()))?;
    let subkey = newest_encryption_subkey(&vc).ok_or(KeyError::NoEncryptionKey)?;

    let mut packets: Vec<Packet> = vec![primary.key().clone().into()];
    // Sequoia repeats the key's properties in a direct-key signature; keep
    // it only when the user ID binding does not carry them itself.
    if uid.binding_signature().key_flags().is_none() {
        if let Ok(direct) = primary.direct_key_signature() {
            packets.push(direct.clone().into());
        }
    }
    packets.push(uid.userid().clone().into());
    packets.push(uid.binding_signature().clone().into());
    packets.push(subkey.key().clone().into());
    packets.push(subkey.binding_signature().clone().into());
    Cert::from_packets(packets.into_iter()).map_err(|e| KeyError::Invalid(e.to_string()))
}

/// Checks that `cert` can be encrypted to at `now`: valid under the policy,
/// not revoked, not expired, with a live, unrevoked encryption subkey.
pub fn check_encryption_usable(cert: &Cert, now: SystemTime) -> Result<(), KeyError> {
    let vc = cert
        .with_policy(policy(), now)
        .map_err(|e| KeyError::Invalid(e.to_string()))?;
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        return Err(KeyError::Revoked);
    }
    if vc.alive().is_err() {
        return Err(KeyError::Expired);
    }
    newest_encryption_subkey(&vc)
        .map(|_| ())
        .ok_or(KeyError::NoEncryptionKey)
}

/// Whether `cert` can be encrypted to at `now`.
pub fn is_encryption_usable(cert: &Cert, now: SystemTime) -> bool {
    check_encryption_usable(cert, now).is_ok()
}

/// Whether `cert` carries a valid user ID for `addr` at `now`.
pub fn has_userid_for(cert: &Cert, addr: &str, now: SystemTime) -> bool {
    cert.with_policy(policy(), now)
        .map(|vc| vc.userids().any(|ua| userid_matches(ua.userid(), addr)))
        .unwrap_or(false)
}

/// Whether a user ID names `addr` (case-insensitively). A user ID that is a
/// bare address without angle brackets counts too.
pub fn userid_matches(userid: &sequoia_openpgp::packet::UserID, addr: &str) -> bool {
    match userid.email_normalized() {
        Ok(Some(email)) => addr_eq(&email, addr),
        _ => std::str::from_utf8(userid.value())
            .map(|v| addr_eq(v, addr))
            .unwrap_or(false),
    }
}

fn newest_encryption_subkey<'a>(
    vc: &'a ValidCert<'a>,
) -> Option<ValidSubordinateKeyAmalgamation<'a, sequoia_openpgp::packet::key::PublicParts>> {
    vc.keys()
        .subkeys()
        .key_flags(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
        )
        .alive()
        .revoked(false)
        .max_by_key(|ka| ka.key().creation_time())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequoia_openpgp::types::PublicKeyAlgorithm;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn new_keys_are_ed25519_cv25519_v4() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cert = generate("alice@example.org", now).unwrap();
        assert!(cert.is_tsk());
        assert_eq!(cert.primary_key().key().version(), 4);
        let algos: Vec<_> = cert.keys().map(|k| k.key().pk_algo()).collect();
        assert!(matches!(
            algos[0],
            PublicKeyAlgorithm::EdDSA | PublicKeyAlgorithm::Ed25519
        ));
        assert!(matches!(
            algos[1],
            PublicKeyAlgorithm::ECDH | PublicKeyAlgorithm::X25519
        ));
        assert!(is_encryption_usable(
            &cert,
            now + Duration::from_secs(10 * 365 * 86400)
        ));
    }

    #[test]
    fn minimized_key_has_five_packets_and_no_secrets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cert = generate("alice@example.org", now).unwrap();
        let min = minimize(&cert, "ALICE@example.org", now).unwrap();
        assert!(!min.is_tsk());
        assert_eq!(min.clone().into_packets().count(), 5);
        assert_eq!(min.fingerprint(), cert.fingerprint());
        assert!(is_encryption_usable(&min, now));
        assert!(has_userid_for(&min, "alice@example.org", now));
    }
}
