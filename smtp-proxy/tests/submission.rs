//! Mail submitted through the proxy by real clients, read back from what
//! the real provider stored.

mod common;

use std::time::Duration;

use common::*;
use smtp_proxy::decision::Policy;
use smtp_proxy::relay::Security;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_mail_is_ciphertext_for_every_recipient() {
    let fx = fixture(Setup::default()).await;

    // One recipient, Python smtplib with STARTTLS.
    let canary = "canary-7b1f lighthouse at midnight";
    let message = format!(
        "From: Alice <{ALICE}>\r\nTo: Bob <bob@example.org>\r\nSubject: The secret plan\r\n\
         Message-ID: <one@example.org>\r\n\r\n{canary}\r\n"
    );
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], message.as_bytes())
        .await;
    assert_eq!(result, "ok");
    let stored = fx
        .provider
        .wait_for_messages("bob@example.org", "INBOX", 1, WAIT);
    let stored = &stored[0];
    assert!(!contains(stored, "canary-7b1f"), "{}", head(stored));
    assert!(!contains(stored, "secret plan"), "{}", head(stored));
    assert!(contains(stored, "multipart/encrypted"));
    assert!(
        contains(stored, "\nAutocrypt: addr=alice@example.org;"),
        "{}",
        head(stored)
    );
    let (plain, status) = fx.gpg_decrypt("bob@example.org", stored);
    assert!(contains(&plain, canary));
    assert!(contains(&plain, "Subject: The secret plan"));
    assert!(status.contains("GOODSIG"), "{status}");
    assert!(status.contains("DECRYPTION_OKAY"), "{status}");
    // Alice can read her own message too.
    let (plain, _) = fx.gpg_decrypt(ALICE, stored);
    assert!(contains(&plain, canary));

    // Five recipients (two To, one Cc, two Bcc), swaks with PIPELINING,
    // a non-ASCII subject and an 8-bit body.
    let canary = "canary-91c2 Grüße aus Köln, ça va?";
    let message = format!(
        "From: Alice <{ALICE}>\r\nTo: bob@example.org, Carol <carol@example.org>\r\n\
         Cc: dave@example.org\r\nBcc: frank@example.org, grace@example.org\r\n\
         Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_und_Pl=C3=A4ne?=\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{canary}\r\n"
    );
    let rcpts = [
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
        "frank@example.org",
        "grace@example.org",
    ];
    let (ok, transcript) = fx.send_swaks(&rcpts, message.as_bytes()).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("PIPELINING"), "{transcript}");
    for user in rcpts {
        let count = if user == "bob@example.org" { 2 } else { 1 };
        let stored = fx.provider.wait_for_messages(user, "INBOX", count, WAIT);
        let stored = stored.last().expect("a message");
        assert!(!contains(stored, "canary-91c2"), "{user}: {}", head(stored));
        assert!(!contains(stored, "Gr=C3=BC"), "{user}: {}", head(stored));
        // The provider's delivery headers name the recipient; nobody else
        // learns of a Bcc recipient.
        for hidden in ["frank@example.org", "grace@example.org"] {
            assert!(
                hidden == user || !contains(stored, hidden),
                "{user}'s copy names the Bcc recipient {hidden}"
            );
        }
        let (plain, status) = fx.gpg_decrypt(user, stored);
        assert!(contains(&plain, canary), "{user}");
        assert!(status.contains("GOODSIG"), "{user}: {status}");
        assert!(!contains(&plain, "\nBcc:"), "{user}: a Bcc header left");
        let bcc = user == "frank@example.org" || user == "grace@example.org";
        let other_bcc = if user == "frank@example.org" {
            "grace@"
        } else {
            "frank@"
        };
        if bcc {
            // Their own copy: no gossip, no other Bcc recipient, and the
            // recipient key IDs hidden.
            assert!(!contains(&plain, "Autocrypt-Gossip"), "{user}");
            assert!(!contains(&plain, other_bcc), "{user}");
            let packets = gpg_list_packets(&fx, user, stored);
            assert!(
                packets.contains("keyid 0000000000000000"),
                "{user}: {packets}"
            );
        } else {
            assert!(contains(&plain, "Autocrypt-Gossip: addr=carol@example.org"));
            assert!(contains(&plain, "Autocrypt-Gossip: addr=dave@example.org"));
            assert!(!contains(&plain, "frank@") && !contains(&plain, "grace@"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_mail_carries_autocrypt_and_hides_bcc() {
    let fx = fixture(Setup::default()).await;
    // Erin has no key: opportunistic sends in the clear, to her and to the
    // Bcc recipient alike, without the Bcc header.
    let message = format!(
        "From: {ALICE}\r\nTo: {ERIN}\r\nBcc: bob@example.org\r\nSubject: lunch?\r\n\r\nnoon at the usual place\r\n"
    );
    let result = fx
        .send_smtplib(ALICE, &[ERIN, "bob@example.org"], message.as_bytes())
        .await;
    assert_eq!(result, "ok");
    for user in [ERIN, "bob@example.org"] {
        let stored = fx.provider.wait_for_messages(user, "INBOX", 1, WAIT);
        let stored = &stored[0];
        assert!(contains(stored, "noon at the usual place"));
        assert!(contains(stored, "\nAutocrypt: addr=alice@example.org;"));
        assert!(!contains(stored, "Bcc:"), "{user}: {}", head(stored));
        assert!(!contains(stored, "bob@example.org") || user == "bob@example.org");
    }

    // [plain] in the subject: sent in the clear although Bob has a key, and
    // the tag is gone.
    let message = format!(
        "From: {ALICE}\r\nTo: bob@example.org\r\nSubject: [plain] newsletter\r\n\r\nopen text\r\n"
    );
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], message.as_bytes())
        .await;
    assert_eq!(result, "ok");
    let stored = fx
        .provider
        .wait_for_messages("bob@example.org", "INBOX", 2, WAIT);
    let stored = &stored[1];
    assert!(
        contains(stored, "\nSubject: newsletter\n"),
        "{}",
        head(stored)
    );
    assert!(contains(stored, "open text"));

    // [encrypt] to someone without a key: refused, naming her.
    let message =
        format!("From: {ALICE}\r\nTo: {ERIN}\r\nSubject: [encrypt] private\r\n\r\nhush\r\n");
    let result = fx.send_smtplib(ALICE, &[ERIN], message.as_bytes()).await;
    assert!(
        result.starts_with("550") && result.contains(ERIN) && result.contains("[encrypt]"),
        "{result}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fx.provider.messages(ERIN, "INBOX").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_policy_refuses_and_sends_nothing() {
    let fx = fixture(Setup {
        policy: Policy::Required,
        ..Setup::default()
    })
    .await;
    let message = format!(
        "From: {ALICE}\r\nTo: bob@example.org, {ERIN}\r\nSubject: [plain] minutes\r\n\r\nthe minutes\r\n"
    );
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org", ERIN], message.as_bytes())
        .await;
    assert!(
        result.starts_with("550") && result.contains(ERIN) && !result.contains("bob@"),
        "{result}"
    );
    assert!(result.contains("only sends encrypted mail"), "{result}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(fx.provider.messages("bob@example.org", "INBOX").is_empty());
    assert!(fx.provider.messages(ERIN, "INBOX").is_empty());
    assert!(
        !fx.provider.mta_log().contains("delivery"),
        "{}",
        fx.provider.mta_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_25_mb_attachment_goes_out_encrypted() {
    let fx = fixture(Setup::default()).await;
    let attachment: Vec<u8> = (0..25 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&attachment)
    };
    let mut message = format!(
        "From: {ALICE}\r\nTo: bob@example.org\r\nSubject: the big file\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         canary-25mb see attached\r\n--b\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for line in encoded.as_bytes().chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"--b--\r\n");
    let result = fx.send_smtplib(ALICE, &["bob@example.org"], &message).await;
    assert_eq!(result, "ok");
    let stored = fx
        .provider
        .wait_for_messages("bob@example.org", "INBOX", 1, WAIT);
    let stored = &stored[0];
    assert!(!contains(
        &stored[..stored.len().min(1 << 20)],
        "canary-25mb"
    ));
    let (plain, status) = fx.gpg_decrypt("bob@example.org", stored);
    assert!(status.contains("GOODSIG"), "{status}");
    assert!(contains(&plain, "canary-25mb"));
    let needle = &encoded.as_bytes()[..76];
    assert!(plain.windows(76).any(|w| w == needle));
}

fn gpg_list_packets(fx: &Fixture, user: &str, stored: &[u8]) -> String {
    let home = fx.gpg_home(user);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("gpg --homedir \"$1\" --batch --list-packets 2>&1 < \"$2\"")
        .arg("sh")
        .arg(&home)
        .arg({
            let path = fx.dir.path().join(format!("{user}.asc"));
            std::fs::write(&path, armored_block(stored)).expect("write");
            path
        })
        .output()
        .expect("gpg");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starttls_provider_and_a_rejected_key() {
    let fx = fixture(Setup {
        security: Security::StartTls,
        ..Setup::default()
    })
    .await;
    let message = format!(
        "From: {ALICE}\r\nTo: bob@example.org\r\nSubject: via 587\r\n\r\ncanary-starttls\r\n"
    );
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], message.as_bytes())
        .await;
    assert_eq!(result, "ok");
    let stored = fx
        .provider
        .wait_for_messages("bob@example.org", "INBOX", 1, WAIT);
    assert!(!contains(&stored[0], "canary-starttls"));
    let (plain, _) = fx.gpg_decrypt("bob@example.org", &stored[0]);
    assert!(contains(&plain, "canary-starttls"));

    // Bob's key rejected: never used. [encrypt] is refused, naming him;
    // without it the message goes in the clear (opportunistic).
    fx.keystore
        .reject("bob@example.org", None, std::time::SystemTime::now())
        .await
        .expect("reject");
    let message =
        format!("From: {ALICE}\r\nTo: bob@example.org\r\nSubject: [encrypt] again\r\n\r\nhush\r\n");
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], message.as_bytes())
        .await;
    assert!(
        result.starts_with("550") && result.contains("bob@example.org"),
        "{result}"
    );
    let message =
        format!("From: {ALICE}\r\nTo: bob@example.org\r\nSubject: open\r\n\r\nopen words\r\n");
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], message.as_bytes())
        .await;
    assert_eq!(result, "ok");
    let stored = fx
        .provider
        .wait_for_messages("bob@example.org", "INBOX", 2, WAIT);
    assert!(contains(&stored[1], "open words"));
    assert_eq!(stored.len(), 2);
}
