//! Every message of Thunderbird's OpenPGP test-suite through `decrypt` with
//! Alice's secret key, with the outcome its name and content call for.
//!
//! Alice knows Bob's and Carol's public keys. Where a verdict may surprise,
//! the reason is noted; "bad" outer signatures were confirmed with gpg.

mod common;

use common::*;
use mailcrypt::{decrypt, DecryptContext, HeldKeys, Refusal};

/// (file, decrypted, signature word, refusal)
const EXPECTED: &[(&str, bool, &str, Option<Refusal>)] = &[
    // Exchange's multipart/mixed rewrite of PGP/MIME, repaired like Thunderbird does.
    ("alice-broken-exchange.eml", true, "none", None),
    ("alice-signed.eml", false, "valid", None),
    ("alice-utf.eml", false, "valid", None),
    // Armored text inside an HTML part beside other parts: EFAIL shape.
    (
        "bob-enc-html-nbsp.eml",
        false,
        "none",
        Some(Refusal::Nested),
    ),
    ("bob-enc-inline-nbsp-qp.eml", true, "none", None),
    (
        "bob-to-alice-signed-damaged-signature.eml",
        false,
        "bad",
        None,
    ),
    // The PGP signature inside the S/MIME one does not verify (gpg agrees).
    ("dual-signed-uncommon-content-type.eml", false, "bad", None),
    (
        "enc-to-carol@pgp.icu-revoked.eml",
        false,
        "none",
        Some(Refusal::NoKey),
    ),
    (
        "encrypted-and-signed-alice-to-bob-nonascii.eml",
        true,
        "valid",
        None,
    ),
    (
        "encrypted-to-alice-as-hidden-recipient.eml",
        true,
        "none",
        None,
    ),
    ("eve-duplicate.eml", false, "none", None),
    // A forwarded signed message is not a signature on this message.
    ("forwarded-eml-signed-by-alice.eml", false, "partial", None),
    ("fwd-signed.eml", false, "partial", None),
    (
        "fwd-unsigned-encrypted.eml",
        false,
        "none",
        Some(Refusal::Nested),
    ),
    // Signed by a key nobody here has.
    ("inline-signed-latin1.eml", false, "unknown-key", None),
    ("inline-signed-utf8.eml", false, "unknown-key", None),
    ("inner-smime-sig-in-pgp-encrypted.eml", true, "none", None),
    ("multiple-signatures.eml", false, "partial", None),
    (
        "openpgp__stripped_sig.eml",
        false,
        "none",
        Some(Refusal::Malformed(String::new())),
    ),
    ("outer-pgp-sig-inner-pgp-enc-sig.eml", true, "valid", None),
    (
        "outer-pgp-sig-inner-pgp-enc-with-mixed.eml",
        false,
        "bad",
        Some(Refusal::Nested),
    ),
    ("outer-pgp-sig-inner-pgp-enc.eml", true, "bad", None),
    (
        "outer-smime-bad-sig-inner-pgp-enc-sig-with-mixed.eml",
        false,
        "none",
        Some(Refusal::Nested),
    ),
    (
        "outer-smime-bad-sig-inner-pgp-enc-sig.eml",
        true,
        "valid",
        None,
    ),
    ("outer-smime-bad-sig-inner-pgp-enc.eml", true, "none", None),
    (
        "partial-encrypt-for-alice-html.eml",
        false,
        "none",
        Some(Refusal::Nested),
    ),
    (
        "partial-encrypt-for-alice-plaintext.eml",
        false,
        "none",
        Some(Refusal::PartialInline),
    ),
    (
        "partial-encrypt-for-carol-html.eml",
        false,
        "none",
        Some(Refusal::Nested),
    ),
    (
        "partial-encrypt-for-carol-plaintext.eml",
        false,
        "none",
        Some(Refusal::PartialInline),
    ),
    (
        "signed-by-0x3099ff1238852b9f-encrypted-to-0xf231550c4f47e38e-with-key.eml",
        true,
        "valid",
        None,
    ),
    (
        "signed-by-0x3099ff1238852b9f-encrypted-to-0xf231550c4f47e38e.eml",
        true,
        "valid",
        None,
    ),
    (
        "signed-by-0x3099ff1238852b9f-to-0xf231550c4f47e38e-unencrypted-with-key.eml",
        false,
        "valid",
        None,
    ),
    (
        "signed-by-0x3099ff1238852b9f-to-0xf231550c4f47e38e-unencrypted.eml",
        false,
        "valid",
        None,
    ),
    // Two From addresses: no signature can match "the" sender.
    (
        "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e-multi-from.eml",
        true,
        "mismatch",
        None,
    ),
    (
        "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e-with-key.eml",
        true,
        "valid",
        None,
    ),
    (
        "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e.eml",
        true,
        "valid",
        None,
    ),
    (
        "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted-in-mixed.eml",
        false,
        "partial",
        None,
    ),
    (
        "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted-with-key.eml",
        false,
        "valid",
        None,
    ),
    (
        "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted.eml",
        false,
        "valid",
        None,
    ),
    ("signed-encrypted-autocrypt-gossip.eml", true, "valid", None),
    ("signed-inline-indented.eml", false, "valid", None),
    // Only the Date differs from the signature time: still valid.
    ("signed-mismatch-email-date.eml", false, "valid", None),
    // The list appended a footer part: the signature covers only a part.
    ("signed-with-mailman-footer.eml", false, "partial", None),
    // A cleartext-signed git commit posing as ciphertext: not encrypted, not valid.
    (
        "sigspoof-git-commit.eml",
        false,
        "none",
        Some(Refusal::Integrity),
    ),
    // Unobtrusive signatures (draft) are not supported: no verdict.
    (
        "unob-signed-by-0x3099ff1238852b9f-to-0xf231550c4f47e38e.eml",
        false,
        "none",
        None,
    ),
    ("unrelated-and-fake-keys-attached.eml", false, "none", None),
    (
        "unsigned-encrypted-to-0xf231550c4f47e38e-from-0x3099ff1238852b9f-with-key.eml",
        true,
        "none",
        None,
    ),
    (
        "unsigned-encrypted-to-0xf231550c4f47e38e-from-0x3099ff1238852b9f.eml",
        true,
        "none",
        None,
    ),
    (
        "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330-with-key.eml",
        true,
        "none",
        None,
    ),
    (
        "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330.eml",
        true,
        "none",
        None,
    ),
    (
        "unsigned-unencrypted-0x3099ff1238852b9f-autocrypt.eml",
        false,
        "none",
        None,
    ),
    (
        "unsigned-unencrypted-from-bob-to-alice.eml",
        false,
        "none",
        None,
    ),
    (
        "unsigned-unencrypted-key-0x1f10171bfb881b1c-attached.eml",
        false,
        "none",
        None,
    ),
];

#[test]
fn every_thunderbird_message_gets_its_expected_outcome() {
    let keys = "thunderbird-openpgp/keys/";
    let secret = vec![cert(&format!(
        "{keys}alice@openpgp.example-0xf231550c4f47e38e-secret.asc"
    ))];
    let verifiers = vec![
        cert(&format!(
            "{keys}bob@openpgp.example-0xfbfcc82a015e7330-pub.asc"
        )),
        cert(&format!(
            "{keys}carol@example.com-0x3099ff1238852b9f-pub.asc"
        )),
    ];
    // The keystore holds Alice's own key for her address, and the
    // contacts' keys for theirs.
    let held = HeldKeys::from_user_ids(&[&verifiers[..], &secret[..]].concat());
    let ctx = DecryptContext {
        secret_keys: &secret,
        verifier_certs: &verifiers,
        signers: &held,
        autocrypt_key_verifies: true,
        now: std::time::SystemTime::now(),
    };

    let mut on_disk: Vec<String> = std::fs::read_dir(testdata("thunderbird-openpgp/eml"))
        .expect("the Thunderbird corpus")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    assert_eq!(
        on_disk, listed,
        "every file in the corpus has an expected outcome"
    );

    let mut failures = Vec::new();
    for (name, decrypted, signature, refusal) in EXPECTED {
        let input = read(&format!("thunderbird-openpgp/eml/{name}"));
        let out = decrypt(&input, &ctx);
        let refusal_matches = match (refusal, &out.refusal) {
            (Some(Refusal::Malformed(_)), Some(Refusal::Malformed(_))) => true,
            (a, b) => a.as_ref() == b.as_ref(),
        };
        if out.decrypted != *decrypted || out.signature.as_str() != *signature || !refusal_matches {
            failures.push(format!(
                "{name}: got decrypted={} signature={} refusal={:?}",
                out.decrypted,
                out.signature.as_str(),
                out.refusal
            ));
        }
        if out.decrypted {
            let text = String::from_utf8_lossy(&out.message);
            assert!(
                !text.contains("-----BEGIN PGP MESSAGE-----"),
                "{name}: ciphertext left in the result"
            );
            assert!(
                text.contains("From:"),
                "{name}: restored message lost its From"
            );
        } else {
            assert_eq!(
                out.message, input,
                "{name}: a message that was not decrypted must be served as it came"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected outcomes:\n{}",
        failures.join("\n")
    );
}

#[test]
fn gossip_in_thunderbird_message_is_accepted_for_recipients_only() {
    let keys = "thunderbird-openpgp/keys/";
    let secret = vec![cert(&format!(
        "{keys}alice@openpgp.example-0xf231550c4f47e38e-secret.asc"
    ))];
    let verifiers = vec![cert(&format!(
        "{keys}bob@openpgp.example-0xfbfcc82a015e7330-pub.asc"
    ))];
    // The keystore holds Alice's own key for her address, and the
    // contacts' keys for theirs.
    let held = HeldKeys::from_user_ids(&[&verifiers[..], &secret[..]].concat());
    let ctx = DecryptContext {
        secret_keys: &secret,
        verifier_certs: &verifiers,
        signers: &held,
        autocrypt_key_verifies: true,
        now: std::time::SystemTime::now(),
    };
    let out = decrypt(
        &read("thunderbird-openpgp/eml/signed-encrypted-autocrypt-gossip.eml"),
        &ctx,
    );
    assert!(out.signature.is_valid());
    let restored = String::from_utf8_lossy(&out.message);
    assert!(
        !out.gossip.is_empty(),
        "the message carries gossip for its recipients"
    );
    for g in &out.gossip {
        assert!(
            restored.contains(&g.addr),
            "gossip for {} names a recipient",
            g.addr
        );
    }
    assert!(
        !restored.contains("Autocrypt-Gossip"),
        "gossip headers are consumed"
    );
}
