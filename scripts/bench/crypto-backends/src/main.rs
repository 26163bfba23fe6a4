//! One Sequoia crypto backend, measured on the operations the gateway does
//! per message: sign+encrypt 10 KB the way `mailcrypt` does (Ed25519 signer,
//! Cv25519 recipient plus the sender's own copy, armored), and
//! decrypt+verify the result with the gateway's decryptor buffer. Prints one
//! tab-separated line per figure; `scripts/bench-crypto` builds this once per
//! backend and runs `gpg -se` in the same run for the ratio.
//!
//!   crypto-backends ROUNDS MESSAGES

use std::io::{Read, Write};
use std::time::{Instant, SystemTime};

use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::serialize::SerializeInto;
use std::ops::Not;

use openpgp::types::{Curve, Features, KeyFlags, PublicKeyAlgorithm, SymmetricAlgorithm};
use openpgp::{Cert, KeyHandle, Profile};
use sequoia_openpgp as openpgp;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let messages: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let now = SystemTime::now();
    let alice = generate("alice@example.org")?;
    let bob = generate("bob@example.net")?;
    let plaintext = ten_kb();

    let mut encrypt_ms = Vec::new();
    let mut decrypt_ms = Vec::new();
    let mut ciphertext = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..messages {
            ciphertext = sign_and_encrypt(&plaintext, &alice, &[&bob, &alice], now)?;
        }
        encrypt_ms.push(start.elapsed().as_secs_f64() * 1000.0 / messages as f64);
        let start = Instant::now();
        for _ in 0..messages {
            let out = decrypt_and_verify(&ciphertext, &bob, &alice, now)?;
            if out != plaintext {
                return Err("decrypted text differs".into());
            }
        }
        decrypt_ms.push(start.elapsed().as_secs_f64() * 1000.0 / messages as f64);
    }
    println!("encrypt+sign 10 KB\tms={:.3}", median(encrypt_ms));
    println!("decrypt+verify 10 KB\tms={:.3}", median(decrypt_ms));

    // What old and unusual mail this backend can still read.
    let mut unsupported: Vec<String> = (0..=12u8)
        .map(SymmetricAlgorithm::from)
        .chain([SymmetricAlgorithm::Unencrypted])
        .filter(|a| {
            !matches!(
                a,
                SymmetricAlgorithm::Unencrypted
                    | SymmetricAlgorithm::Unknown(_)
                    | SymmetricAlgorithm::Private(_)
            )
        })
        .filter(|a| !a.is_supported())
        .map(|a| a.to_string())
        .chain(
            (1..=27u8)
                .map(PublicKeyAlgorithm::from)
                .filter(|a| matches!(a, PublicKeyAlgorithm::Unknown(_)).not())
                .filter(|a| !a.is_supported())
                .map(|a| a.to_string()),
        )
        .chain(
            [
                Curve::NistP256,
                Curve::NistP384,
                Curve::NistP521,
                Curve::BrainpoolP256,
                Curve::BrainpoolP384,
                Curve::BrainpoolP512,
                Curve::Ed25519,
                Curve::Cv25519,
            ]
            .into_iter()
            .filter(|c| !c.is_supported())
            .map(|c| c.to_string()),
        )
        .collect();
    unsupported.dedup();
    println!("unsupported\t{}", unsupported.join(", "));

    // The keys for the gpg comparison in the same run (scripts/bench-crypto).
    if let Some(dir) = std::env::var_os("EXPORT_KEYS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("alice.key"), alice.as_tsk().armored().to_vec()?)?;
        std::fs::write(dir.join("bob.cert"), bob.armored().to_vec()?)?;
        std::fs::write(dir.join("plain.txt"), &plaintext)?;
    }
    Ok(())
}

/// As `autocrypt::key::generate` makes the gateway's keys.
fn generate(addr: &str) -> Result<Cert> {
    let (cert, _) = CertBuilder::new()
        .set_profile(Profile::RFC4880)?
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_validity_period(None)
        .set_features(Features::empty().set_seipdv1())?
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .add_userid(format!("<{addr}>"))
        .add_subkey(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
            None,
            None,
        )
        .generate()?;
    Ok(cert)
}

fn ten_kb() -> Vec<u8> {
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    line.iter().copied().cycle().take(10 * 1024).collect()
}

fn signing_keypair(cert: &Cert, now: SystemTime) -> Result<KeyPair> {
    let policy = StandardPolicy::new();
    let key = cert
        .keys()
        .with_policy(&policy, now)
        .secret()
        .for_signing()
        .next()
        .ok_or("no signing key")?;
    Ok(key.key().clone().into_keypair()?)
}

/// `mailcrypt::openpgp::sign_and_encrypt` without the line-end rewriting.
fn sign_and_encrypt(
    plaintext: &[u8],
    signer: &Cert,
    recipients: &[&Cert],
    now: SystemTime,
) -> Result<Vec<u8>> {
    let policy = StandardPolicy::new();
    let mut keys = Vec::new();
    for cert in recipients {
        for ka in cert
            .keys()
            .with_policy(&policy, now)
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
        {
            keys.push(Recipient::new(
                ka.valid_cert().features(),
                Some(ka.key().key_handle()),
                ka.key(),
            ));
        }
    }
    let mut out = Vec::with_capacity(plaintext.len() * 2);
    let message = Message::new(&mut out);
    let message = Armorer::new(message).build()?;
    let message = Encryptor::for_recipients(message, keys)
        .symmetric_algo(SymmetricAlgorithm::AES256)
        .build()?;
    let message = Signer::new(message, signing_keypair(signer, now)?)?
        .creation_time(now)
        .build()?;
    let mut literal = LiteralWriter::new(message).date(now)?.build()?;
    literal.write_all(plaintext)?;
    literal.finalize()?;
    Ok(out)
}

struct Helper<'a> {
    secret: &'a Cert,
    signer: &'a Cert,
    good: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.signer.clone()])
    }
    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                self.good |= results.iter().any(|r| r.is_ok());
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[openpgp::packet::PKESK],
        _skesks: &[openpgp::packet::SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &openpgp::crypto::SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let policy = StandardPolicy::new();
        for ka in self
            .secret
            .keys()
            .with_policy(&policy, None)
            .secret()
            .for_transport_encryption()
        {
            let mut pair = ka.key().clone().into_keypair()?;
            for pkesk in pkesks {
                if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo) {
                    if decrypt(algo, &sk) {
                        return Ok(None);
                    }
                }
            }
        }
        Err(openpgp::anyhow::anyhow!("no key"))
    }
}

/// As the gateway decrypts: 256 KiB buffer, the whole plaintext read, and a
/// good signature required.
fn decrypt_and_verify(
    ciphertext: &[u8],
    secret: &Cert,
    signer: &Cert,
    now: SystemTime,
) -> Result<Vec<u8>> {
    let policy = StandardPolicy::new();
    let helper = Helper {
        secret,
        signer,
        good: false,
    };
    let mut decryptor = DecryptorBuilder::from_bytes(ciphertext)?
        .buffer_size(256 * 1024)
        .with_policy(&policy, now, helper)?;
    let mut plaintext = Vec::new();
    decryptor.read_to_end(&mut plaintext)?;
    if !decryptor.message_processed() || !decryptor.into_helper().good {
        return Err("not verified".into());
    }
    Ok(plaintext)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
