//! Arbitrary and mutated input into `decrypt` never panics, and a mutated
//! ciphertext never yields altered plaintext.

mod common;

use std::sync::OnceLock;
use std::time::SystemTime;

use autocrypt::key;
use common::*;
use mailcrypt::{decrypt, encrypt, Boundary, DecryptContext, EncryptRequest, HeldKeys};
use proptest::prelude::*;
use sequoia_openpgp::Cert;

const BODY: &[u8] = b"the plaintext that must never be altered\r\n";

struct Keys {
    alice: Cert,
    bob: Cert,
    held: HeldKeys,
    sent: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let t = at(1_700_000_000);
        let alice = key::generate("alice@example.org", t).expect("key");
        let bob = key::generate("bob@example.org", t).expect("key");
        let mut message =
            b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: s\r\n\r\n".to_vec();
        message.extend_from_slice(BODY);
        let recipients = [bob.clone().strip_secret_key_material()];
        let req = EncryptRequest {
            pad: false,
            now: t,
            boundary: Boundary::Fixed("b".into()),
            ..EncryptRequest::new(&alice, &recipients)
        };
        let sent = encrypt(&message, &req).expect("encrypt");
        let held = HeldKeys::from_user_ids(std::slice::from_ref(&alice));
        Keys {
            alice,
            bob,
            held,
            sent,
        }
    })
}

fn ctx(k: &Keys) -> DecryptContext<'_> {
    DecryptContext {
        secret_keys: std::slice::from_ref(&k.bob),
        verifier_certs: std::slice::from_ref(&k.alice),
        signers: &k.held,
        autocrypt_key_verifies: true,
        now: SystemTime::now(),
    }
}

/// Found by `scripts/fuzz`: a message/rfc822 part whose content is an
/// empty message/rfc822 reaches a `debug_assert!` in mail-parser 0.11.9
/// (release builds carry on; the workspace profile turns the assertion off
/// in dev builds so tests see what the gateway does). Looked at in every
/// position the engine parses MIME: nested scan, outgoing checks.
#[test]
fn nested_empty_message_parts_are_handled() {
    let m = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
              Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n\r\n--b--\r\n";
    let out = decrypt(m, &ctx(keys()));
    assert!(!out.decrypted);
    assert_eq!(out.message, m.to_vec());
    assert!(!mailcrypt::outgoing::carries_decrypted_message(m));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let k = keys();
        let _ = decrypt(&data, &ctx(k));
        let _ = decrypt(&pgp_mime("a@b", "c@d", &data), &ctx(k));
    }

    #[test]
    fn arbitrary_structure_never_panics(
        ct in prop_oneof![Just("multipart/encrypted; protocol=\"application/pgp-encrypted\""), Just("multipart/signed; protocol=\"application/pgp-signature\""), Just("multipart/mixed"), Just("text/plain")],
        parts in proptest::collection::vec("[ -~\r\n]{0,200}", 0..5),
    ) {
        let mut m = format!("From: a@b\r\nContent-Type: {ct}; boundary=\"x\"\r\n\r\n");
        for p in &parts {
            m.push_str("--x\r\n");
            m.push_str(p);
            m.push_str("\r\n");
        }
        let _ = decrypt(m.as_bytes(), &ctx(keys()));
    }

    #[test]
    fn mutated_ciphertext_never_yields_altered_plaintext(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = keys();
        let mut m = k.sent.clone();
        let i = pos.index(m.len());
        m[i] ^= 1 << bit;
        let out = decrypt(&m, &ctx(k));
        if out.decrypted {
            prop_assert!(out.message.ends_with(BODY), "decrypted text differs from what was sent");
        } else {
            prop_assert_eq!(out.message, m);
        }
    }
}
