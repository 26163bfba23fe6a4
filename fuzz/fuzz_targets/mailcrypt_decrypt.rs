//! Whole messages from the provider through the decryptor and the fact
//! reader (Autocrypt learning), and through the SMTP side's conversation
//! checks. Bob's and Alice's keys are the Autocrypt specification's
//! (../shared/testdata), so the specification's encrypted examples in the
//! seed corpus decrypt and mutations reach every layer.
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::parse::Parse as _;
use sequoia_openpgp::Cert;

/// (Bob's secret key, Alice's certificate).
fn keys() -> &'static (Cert, Cert) {
    static KEYS: OnceLock<(Cert, Cert)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let spec = |bytes: &[u8]| Cert::from_bytes(bytes).expect("the specification's key");
        (
            spec(include_bytes!(
                "../../../shared/testdata/autocrypt-spec/bob@autocrypt.example.sec.asc"
            )),
            spec(include_bytes!(
                "../../../shared/testdata/autocrypt-spec/alice@autocrypt.example.pub.asc"
            )),
        )
    })
}

fuzz_target!(|data: &[u8]| letterlock_fuzz::run(|| {
    let (bob, alice) = keys();
    let ctx = mailcrypt::DecryptContext {
        secret_keys: std::slice::from_ref(bob),
        verifier_certs: std::slice::from_ref(alice),
        signers: &mailcrypt::HeldKeys::from_user_ids(std::slice::from_ref(alice)),
        autocrypt_key_verifies: true,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    };
    let outcome = mailcrypt::decrypt(data, &ctx);
    // Rule 4: nothing decrypted comes back next to a refusal.
    assert!(!(outcome.decrypted && outcome.refusal.is_some()));
    let _ = mailcrypt::message_facts(data, SystemTime::UNIX_EPOCH);
    // What the SMTP proxy reads of a client's message to tell an encrypted
    // conversation.
    let _ = mailcrypt::outgoing::referenced_message_ids(data);
    let _ = mailcrypt::outgoing::carries_decrypted_message(data);
}));
