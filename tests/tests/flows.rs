//! Alice, Bob and Carol, each with a `gateway` process, mailing each other
//! through a real provider (Dovecot + OpenSMTPD) with Python's smtplib and
//! imaplib as their mail clients — the Autocrypt story of issue 7, step by
//! step, with every gateway restarted between steps.

use std::time::Duration;

use e2e::{append, header, read, send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const BOB: (&str, &str) = ("bob@example.org", "bobpw");
const CAROL: (&str, &str) = ("carol@example.org", "carolpw");

fn message(from: &str, to: &[&str], subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {}\nSubject: {subject}\nDate: {}\nMessage-ID: <{}@example.org>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
        to.join(", "),
        httpdate_now(),
        subject.replace(' ', "-").to_lowercase(),
    )
}

/// An RFC 5322 date for now (Autocrypt orders keys by it).
fn httpdate_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-R"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn restart(gateways: &mut [&mut Gateway]) {
    for g in gateways.iter_mut() {
        g.stop();
    }
    for g in gateways.iter_mut() {
        g.start();
    }
}

fn peer<'a>(list: &'a serde_json::Value, address: &str) -> Option<&'a serde_json::Value> {
    list["peers"]
        .as_array()?
        .iter()
        .find(|p| p["address"] == address)
}

fn own_fingerprint(g: &Gateway) -> String {
    g.json(&["status"])["accounts"][0]["fingerprint"]
        .as_str()
        .expect("own key")
        .to_string()
}

#[test]
fn autocrypt_between_three_gateways() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB, CAROL]);
    let mut alice = Gateway::new(root.path(), "alice");
    let mut bob = Gateway::new(root.path(), "bob");
    let mut carol = Gateway::new(root.path(), "carol");
    for (g, (address, _)) in [(&alice, ALICE), (&bob, BOB), (&carol, CAROL)] {
        let said = g.init(address, &provider);
        assert!(said.contains("Configure manually"), "{said}");
        assert!(said.contains(&g.imap_port.to_string()), "{said}");
    }
    for g in [&mut alice, &mut bob, &mut carol] {
        g.start();
    }
    let alice_fpr = own_fingerprint(&alice);
    let wait = Duration::from_secs(60);

    // 1. Alice → Bob in cleartext (she has no key for him): it arrives with
    //    her Autocrypt header, and Bob's gateway learns her key as he reads.
    let hello = message(ALICE.0, &[BOB.0], "Hello Bob", "First contact, no secrets.");
    assert_eq!(send(&alice, ALICE, &hello, &[BOB.0]), "OK");
    let arrived = provider.wait_for_messages(BOB.0, "INBOX", 1, wait);
    let arrived = String::from_utf8_lossy(&arrived[0]).into_owned();
    assert!(arrived.contains("First contact"), "{arrived}");
    assert!(
        arrived.contains("Autocrypt: addr=alice@example.org"),
        "{arrived}"
    );
    let bob_reads = read(&bob, BOB, "INBOX");
    assert!(bob_reads[0].contains("First contact"));
    let bob_knows = bob.json(&["keytool", "list"]);
    let known = peer(&bob_knows, ALICE.0).expect("Bob's gateway knows Alice");
    assert_eq!(known["fingerprint"], alice_fpr.as_str(), "{bob_knows}");
    restart(&mut [&mut alice, &mut bob, &mut carol]);

    // 2. Bob replies: encrypted by Autocrypt, read decrypted by Alice, with
    //    a status header saying so.
    let secret_word = "zebracrossing";
    let reply = message(
        BOB.0,
        &[ALICE.0],
        "Re: Hello Bob",
        &format!("Got it. The password for the archive is {secret_word}."),
    );
    assert_eq!(send(&bob, BOB, &reply, &[ALICE.0]), "OK");
    let stored = provider.wait_for_messages(ALICE.0, "INBOX", 1, wait);
    let stored = String::from_utf8_lossy(&stored[0]).into_owned();
    assert!(stored.contains("-----BEGIN PGP MESSAGE-----"), "{stored}");
    assert!(!stored.contains(secret_word) && !stored.contains("Re: Hello Bob"));
    let alice_reads = read(&alice, ALICE, "INBOX");
    let decrypted = &alice_reads[0];
    assert!(decrypted.contains(secret_word), "{decrypted}");
    assert!(decrypted.contains("Subject: Re: Hello Bob"), "{decrypted}");
    let status = header(decrypted, "Letterlock-Security").expect("status header");
    assert!(
        status.starts_with("encrypted; signature=valid; signer=bob@example.org; key=tofu"),
        "{status}"
    );
    restart(&mut [&mut alice, &mut bob, &mut carol]);

    // 3. Alice's Sent and Drafts copies: ciphertext at the provider, the
    //    plain text through her gateway.
    for (mailbox, canary) in [("Sent", "sent-copy-canary"), ("Drafts", "draft-canary")] {
        let copy = message(ALICE.0, &[BOB.0], &format!("{mailbox} copy"), canary);
        assert_eq!(append(&alice, ALICE, mailbox, &copy), "OK");
        let held = provider.messages(ALICE.0, mailbox);
        let held = String::from_utf8_lossy(&held[0]).into_owned();
        assert!(held.contains("-----BEGIN PGP MESSAGE-----"), "{held}");
        assert!(!held.contains(canary), "{held}");
        assert!(
            !held.contains(&format!("Subject: {mailbox} copy")),
            "{held}"
        );
        let through = read(&alice, ALICE, mailbox);
        assert!(through[0].contains(canary), "{}", through[0]);
        assert!(through[0].contains(&format!("Subject: {mailbox} copy")));
    }

    // 4. Carol introduces herself; Alice writes to Bob and Carol; the gossip
    //    lets Carol reply to all, encrypted to both.
    let intro = message(CAROL.0, &[ALICE.0], "Hi from Carol", "Carol here.");
    assert_eq!(send(&carol, CAROL, &intro, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 2, wait);
    read(&alice, ALICE, "INBOX");
    let group = message(
        ALICE.0,
        &[BOB.0, CAROL.0],
        "Plan",
        "group-canary: meet at noon",
    );
    assert_eq!(send(&alice, ALICE, &group, &[BOB.0, CAROL.0]), "OK");
    let at_carol = provider.wait_for_messages(CAROL.0, "INBOX", 1, wait);
    assert!(!String::from_utf8_lossy(&at_carol[0]).contains("group-canary"));
    let carol_reads = read(&carol, CAROL, "INBOX");
    assert!(
        carol_reads[0].contains("group-canary"),
        "{}",
        carol_reads[0]
    );
    let carol_knows = carol.json(&["keytool", "list"]);
    assert!(
        peer(&carol_knows, BOB.0).is_some_and(|p| p["fingerprint"].is_string()),
        "gossip taught Carol Bob's key: {carol_knows}"
    );
    let reply_all = message(
        CAROL.0,
        &[ALICE.0, BOB.0],
        "Re: Plan",
        "carol-canary: noon is fine",
    );
    assert_eq!(send(&carol, CAROL, &reply_all, &[ALICE.0, BOB.0]), "OK");
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 3, wait);
    let carols = String::from_utf8_lossy(at_bob.last().expect("Carol's reply")).into_owned();
    assert!(carols.contains("-----BEGIN PGP MESSAGE-----"), "{carols}");
    assert!(!carols.contains("carol-canary"));
    let bob_reads = read(&bob, BOB, "INBOX");
    assert!(
        bob_reads.iter().any(|m| m.contains("carol-canary")),
        "Bob reads Carol's reply"
    );
    restart(&mut [&mut alice, &mut bob, &mut carol]);

    // 5. Bob starts over with a new key. He reads his mail (learning
    //    Alice's key again from her headers) and writes to her: Alice's
    //    gateway says key=changed, and `keytool list` shows the new key.
    bob.stop();
    let mut bob2 = Gateway::new(root.path(), "bob-new-key");
    bob2.init(BOB.0, &provider);
    bob2.start();
    let bob_new_fpr = own_fingerprint(&bob2);
    read(&bob2, BOB, "INBOX");
    std::thread::sleep(Duration::from_secs(1)); // a newer Date than anything before
    let news = message(BOB.0, &[ALICE.0], "New key", "newkey-canary");
    assert_eq!(send(&bob2, BOB, &news, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 4, wait);
    let alice_reads = read(&alice, ALICE, "INBOX");
    let from_new = alice_reads
        .iter()
        .find(|m| m.contains("newkey-canary"))
        .expect("decrypted");
    let status = header(from_new, "Letterlock-Security").expect("status");
    assert!(
        status.contains("signature=valid") && status.contains("key=changed"),
        "{status}"
    );
    let alice_knows = alice.json(&["keytool", "list"]);
    assert_eq!(
        peer(&alice_knows, BOB.0).expect("bob")["fingerprint"],
        bob_new_fpr.as_str(),
        "{alice_knows}"
    );
    //    Alice verifies the new key. A forged third key for Bob then is not
    //    used, and the message carrying it is marked.
    alice.ok(&["keytool", "verify", BOB.0, "--fingerprint", &bob_new_fpr]);
    let forged = forged_bob_message(&alice);
    provider.dovecot.save(ALICE.0, "INBOX", forged.as_bytes());
    let alice_reads = read(&alice, ALICE, "INBOX");
    let marked = alice_reads
        .iter()
        .find(|m| m.contains("Subject: urgent"))
        .expect("the forged message");
    let status = header(marked, "Letterlock-Security").expect("status");
    assert!(!status.contains("signature=valid"), "{status}");
    assert!(status.contains("autocrypt=conflict"), "{status}");
    let bob_now = alice.json(&["keytool", "show", BOB.0]);
    assert_eq!(
        bob_now["peer"]["fingerprint"],
        bob_new_fpr.as_str(),
        "{bob_now}"
    );
    assert_eq!(bob_now["peer"]["trust"], "verified", "{bob_now}");

    // 6. Search finds a word that exists only inside Bob's encrypted reply.
    let hits = alice.json(&["search", secret_word]);
    let hits = hits["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["subject"], "Re: Hello Bob");

    // 7. A restart loses nothing and decrypts nothing twice: the same bytes
    //    come back and the archive does not grow.
    let before = alice.json(&["status"]);
    let first = read(&alice, ALICE, "INBOX");
    alice.stop();
    alice.start();
    let again = read(&alice, ALICE, "INBOX");
    assert_eq!(first, again);
    let after = alice.json(&["status"]);
    assert_eq!(before["archive_messages"], after["archive_messages"]);
    let log = alice.log_text();
    assert!(!log.contains("ERROR"), "{log}");

    for g in [&mut alice, &mut bob2, &mut carol] {
        g.stop();
    }
    drop(bob);
}

/// A message "from Bob" signed and encrypted with a key Mallory made, its
/// Autocrypt header offering that key — delivered straight into Alice's
/// mailbox.
fn forged_bob_message(alice: &Gateway) -> String {
    let inner = message(
        BOB.0,
        &[ALICE.0],
        "urgent",
        "Please send the archive password.",
    )
    .replace('\n', "\r\n");
    e2e::sealed_with_forged_key(alice, ALICE.0, BOB.0, &inner)
}
