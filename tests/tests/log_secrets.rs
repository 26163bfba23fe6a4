//! Rule 8: no password, key or message text in any log, at any level a
//! user can set. Two gateways at the most verbose filter there is
//! (`LETTERLOCK_LOG=trace`, every target) carry a login, cleartext and
//! encrypted mail both ways, a draft and a search; then neither log holds
//! a password (as typed, or as the base64 of SASL PLAIN or LOGIN), a word
//! of any message, or key material.

use std::time::Duration;

use base64::Engine as _;
use e2e::{append, read, send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alice-Secret-pw-7f3a");
const BOB: (&str, &str) = ("bob@example.org", "bob-Secret-pw-91c2");

fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{}@example.org>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
        subject.replace(' ', "-").to_lowercase()
    )
}

#[test]
fn the_most_verbose_log_holds_no_password_key_or_message_text() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB]);
    let mut alice = Gateway::new(root.path(), "alice");
    let mut bob = Gateway::new(root.path(), "bob");
    for (g, (address, _)) in [(&mut alice, ALICE), (&mut bob, BOB)] {
        g.init(address, &provider);
        g.log_filter = "trace".into();
        g.start();
    }
    let wait = Duration::from_secs(60);

    let hello = message(
        ALICE.0,
        BOB.0,
        "Cleartext canary subject",
        "cleartextcanarybody",
    );
    assert_eq!(send(&alice, ALICE, &hello, &[BOB.0]), "OK");
    provider.wait_for_messages(BOB.0, "INBOX", 1, wait);
    assert!(read(&bob, BOB, "INBOX")[0].contains("cleartextcanarybody"));

    let reply = message(
        BOB.0,
        ALICE.0,
        "Encrypted canary subject",
        "encryptedcanarybody",
    );
    assert_eq!(send(&bob, BOB, &reply, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 1, wait);
    assert!(read(&alice, ALICE, "INBOX")[0].contains("encryptedcanarybody"));

    let draft = message(ALICE.0, BOB.0, "Draft canary subject", "draftcanarybody");
    assert_eq!(append(&alice, ALICE, "Drafts", &draft), "OK");
    let found = alice.ok(&["search", "encryptedcanarybody"]);
    assert!(found.contains("Encrypted canary subject"), "{found}");
    alice.stop();
    bob.stop();

    let plain_b64 = |(user, password): (&str, &str)| {
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    };
    let alice_secret = alice.ok(&["keytool", "export", "--own", ALICE.0]);
    let key_line = alice_secret
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .expect("a line of the armored key")
        .to_string();
    let mut forbidden = vec![
        ALICE.1.to_string(),
        BOB.1.to_string(),
        plain_b64(ALICE),
        plain_b64(BOB),
        base64::engine::general_purpose::STANDARD.encode(ALICE.1),
        base64::engine::general_purpose::STANDARD.encode(BOB.1),
        key_line,
    ];
    for word in [
        "cleartextcanary",
        "encryptedcanary",
        "draftcanary",
        "canary subject",
    ] {
        forbidden.push(word.to_string());
    }
    for g in [&alice, &bob] {
        let log = g.log_text();
        assert!(
            log.contains(" DEBUG "),
            "{}: the log is at its most verbose:\n{log}",
            g.name
        );
        for secret in &forbidden {
            assert!(
                !log.contains(secret.as_str()),
                "{}'s log holds {secret:?}:\n{}",
                g.name,
                log.lines()
                    .filter(|l| l.contains(secret.as_str()))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}
