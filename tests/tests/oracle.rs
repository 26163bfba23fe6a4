//! Decryption oracles ("Re: What's up Johnny?", 2019) through real gateway
//! processes and a real provider: a reply to, or a forward of, a message the
//! gateway decrypted never reaches the provider in the clear — not to a
//! third party without a key, not with `[plain]` in the subject, not as an
//! attachment, not when the attacker re-sent someone else's ciphertext as
//! his own message to have it answered, not when that ciphertext has no
//! Message-ID to refer to (the quote links the reply), and not encrypted to
//! the attacker once he has a key.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{header, read, send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const BOB: (&str, &str) = ("bob@example.org", "bobpw");
const MALLORY: (&str, &str) = ("mallory@example.org", "mallorypw");
const SECRET: &str = "The merger closes on Friday";
const LATER_SECRET: &str = "The second merger closes on Monday, keep it quiet";

fn message(from: &str, to: &[&str], extra: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {}\nSubject: {subject}\nMessage-ID: <{}@example.org>\n{extra}\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
        to.join(", "),
        subject.replace(' ', "-").to_lowercase(),
    )
}

/// Mallory has no gateway: he hands a message to the provider's MTA.
fn deliver_directly(provider: &Provider, to: &str, message: &[u8]) {
    const SENDER: &str = r#"
import smtplib, sys
port, to = sys.argv[1:3]
with smtplib.SMTP("127.0.0.1", int(port), timeout=60) as s:
    s.sendmail("mallory@example.org", [to], sys.stdin.buffer.read())
"#;
    testbed::python::run(SENDER, [&provider.relay_port.to_string(), to], message);
}

/// Bob's encrypted message as Mallory would re-send it: his From, Reply-To
/// and Message-ID (`message_id`, the whole field value), Bob's Autocrypt
/// header gone, the ciphertext untouched.
fn resent_as_mallory(original: &[u8], message_id: &str) -> Vec<u8> {
    // The provider stores LF; the wire wants CRLF.
    let text = String::from_utf8_lossy(original)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let (head, body) = text.split_once("\r\n\r\n").expect("header and body");
    let mut out = String::new();
    let mut skipping = false;
    for line in head.split("\r\n") {
        let continuation = line.starts_with(' ') || line.starts_with('\t');
        if !continuation {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            skipping = matches!(
                name.as_str(),
                "autocrypt" | "from" | "message-id" | "received" | "delivered-to" | "return-path"
            );
        }
        if !skipping {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "From: mallory@example.org\r\nReply-To: mallory@example.org\r\n\
         Message-ID: {message_id}\r\n\r\n"
    ));
    out.push_str(body);
    out.into_bytes()
}

/// The key in the first `Autocrypt:` header of a message, as bytes.
fn autocrypt_keydata(message: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    let (head, _) = text.split_once("\n\n").expect("header");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let value = unfolded
        .lines()
        .find_map(|l| l.strip_prefix("Autocrypt:"))
        .expect("an Autocrypt header");
    let keydata = value
        .split(';')
        .find_map(|a| a.trim().strip_prefix("keydata="))
        .expect("keydata");
    let clean: String = keydata.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .expect("base64 key")
}

/// `text` encrypted by `sq` to the certificate in `cert_file`, armored, no
/// signature and no headers inside: what `gpg -ea` makes.
fn sq_encrypt(cert_file: &std::path::Path, text: &str) -> String {
    let mut child = Command::new("sq")
        .arg("encrypt")
        .arg("--recipient-cert")
        .arg(cert_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sq");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("plaintext");
    let out = child.wait_with_output().expect("sq");
    assert!(out.status.success(), "sq encrypt failed");
    String::from_utf8(out.stdout).expect("armored")
}

fn refused_for_conversation(answer: &str) {
    assert!(
        answer.starts_with("REFUSED")
            && answer.contains("answers or forwards an encrypted message")
            && answer.contains("mallory@example.org"),
        "{answer}"
    );
}

#[test]
fn answers_to_encrypted_mail_never_go_out_in_the_clear() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB, MALLORY]);
    let mut alice = Gateway::running(root.path(), "alice", ALICE.0, &provider);
    let bob = Gateway::running(root.path(), "bob", BOB.0, &provider);
    let wait = Duration::from_secs(60);

    // Bob learns Alice's key from her first (cleartext) message, then
    // writes to her encrypted; Alice reads it through her gateway.
    let hello = message(ALICE.0, &[BOB.0], "", "Hello", "First contact.");
    assert_eq!(send(&alice, ALICE, &hello, &[BOB.0]), "OK");
    let hello_at_bob = provider.wait_for_messages(BOB.0, "INBOX", 1, wait)[0].clone();
    read(&bob, BOB, "INBOX");
    let secret = message(BOB.0, &[ALICE.0], "", "Plans", SECRET);
    assert_eq!(send(&bob, BOB, &secret, &[ALICE.0]), "OK");
    let stored = provider.wait_for_messages(ALICE.0, "INBOX", 1, wait);
    let ciphertext = stored.last().expect("Bob's message").clone();
    assert!(!String::from_utf8_lossy(&ciphertext).contains(SECRET));
    let inbox = read(&alice, ALICE, "INBOX");
    assert!(inbox[0].contains(SECRET), "Alice reads it decrypted");

    let to_mallory = |extra: &str, subject: &str, body: &str| {
        message(ALICE.0, &[MALLORY.0], extra, subject, body)
    };
    let quoting = format!("Sure.\n\n> {SECRET}");
    let in_reply = "In-Reply-To: <plans@example.org>\nReferences: <plans@example.org>\n";

    // 1. Reply-all with a third party who has no key: refused whole.
    let reply_all = message(
        ALICE.0,
        &[BOB.0, MALLORY.0],
        in_reply,
        "Re: Plans",
        &quoting,
    );
    refused_for_conversation(&send(&alice, ALICE, &reply_all, &[BOB.0, MALLORY.0]));

    // 2. The writer's [plain] does not open an encrypted conversation.
    let plain = to_mallory(in_reply, "[plain] Re: Plans", &quoting);
    refused_for_conversation(&send(&alice, ALICE, &plain, &[MALLORY.0]));

    // 3. Forwarded as an attachment (Thunderbird's default), without any
    //    reference to the original: the attached message says what it is.
    let forward = format!(
        "From: {}\nTo: {}\nSubject: Fwd: Plans\nMessage-ID: <fwd@example.org>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"f\"\n\n--f\nContent-Type: text/plain\n\nFYI\n\
         --f\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n{}\n--f--\n",
        ALICE.0,
        MALLORY.0,
        inbox[0].replace("\r\n", "\n")
    );
    refused_for_conversation(&send(&alice, ALICE, &forward, &[MALLORY.0]));

    // 4. Thunderbird's inline forward names the original in
    //    X-Forwarded-Message-Id.
    let inline_forward = to_mallory(
        "X-Forwarded-Message-Id: <plans@example.org>\n",
        "Fwd: Plans",
        &format!("-------- Forwarded Message --------\n{SECRET}"),
    );
    refused_for_conversation(&send(&alice, ALICE, &inline_forward, &[MALLORY.0]));

    // 5. "What's up Johnny?": Mallory re-sends Bob's ciphertext as his own
    //    message, with a Reply-To of his, hoping Alice answers him quoting
    //    it. Alice's gateway opens it (it is for her), shows the header Bob
    //    protected inside (Mallory's Reply-To is not shown), and does not
    //    call it signed by its sender...
    deliver_directly(
        &provider,
        ALICE.0,
        &resent_as_mallory(&ciphertext, "<johnny@example.org>"),
    );
    provider.wait_for_messages(ALICE.0, "INBOX", 2, wait);
    let inbox = read(&alice, ALICE, "INBOX");
    let johnny = &inbox[1];
    let status = header(johnny, "Letterlock-Security").expect("status");
    assert!(
        status.starts_with("encrypted") && !status.contains("signature=valid"),
        "{status}"
    );
    let (johnny_header, _) = johnny.split_once("\r\n\r\n").expect("header");
    assert!(
        !johnny_header.contains("Reply-To") && johnny.contains(SECRET),
        "{johnny_header}"
    );
    // ... and an answer to Mallory, the outer sender, is refused.
    let answer = to_mallory(
        &format!(
            "In-Reply-To: {}\n",
            header(johnny, "Message-ID").expect("Message-ID")
        ),
        "Re: Plans",
        &quoting,
    );
    refused_for_conversation(&send(&alice, ALICE, &answer, &[MALLORY.0]));
    let outer_reply = to_mallory("In-Reply-To: <johnny@example.org>\n", "Re: Plans", &quoting);
    refused_for_conversation(&send(&alice, ALICE, &outer_reply, &[MALLORY.0]));
    // The same with the outer Message-ID spelled with a comment and folded
    // (RFC 5322 allows both): it was recorded as `id>(comment)`, and the
    // answer by the plain id went out in the clear.
    deliver_directly(
        &provider,
        ALICE.0,
        &resent_as_mallory(&ciphertext, "<johnny2@example.org>\r\n (a comment)"),
    );
    provider.wait_for_messages(ALICE.0, "INBOX", 3, wait);
    read(&alice, ALICE, "INBOX");
    let spelled_reply = to_mallory(
        "In-Reply-To: <johnny2@example.org>\n",
        "Re: Plans",
        &quoting,
    );
    refused_for_conversation(&send(&alice, ALICE, &spelled_reply, &[MALLORY.0]));

    // 6. Ciphertext with no Message-ID outside or in (gpg, Enigmail: no
    //    protected headers): Bob's words encrypted by sq to Alice's key
    //    (from her Autocrypt header), planted bare. A reply has nothing to
    //    refer to, but it quotes the text, and that links it; rewrapped as
    //    a client quotes, in HTML, and after a restart of Alice's gateway.
    let alice_key = autocrypt_keydata(&hello_at_bob);
    let key_file = root.path().join("alice.pgp");
    std::fs::write(&key_file, alice_key).expect("key file");
    let armored = sq_encrypt(&key_file, &format!("Bob here. {LATER_SECRET}.\n"));
    let bare = format!(
        "From: {}\r\nTo: {}\r\nSubject: Plans again\r\nContent-Type: text/plain\r\n\r\n{}",
        MALLORY.0,
        ALICE.0,
        armored.replace("\r\n", "\n").replace('\n', "\r\n")
    );
    provider.dovecot.save(ALICE.0, "INBOX", bare.as_bytes());
    let inbox = read(&alice, ALICE, "INBOX");
    let opened = inbox.last().expect("the bare message");
    assert!(
        opened.contains(LATER_SECRET) && header(opened, "Message-ID").is_none(),
        "decrypted, with no Message-ID: {opened}"
    );
    // Neither encrypted to Mallory nor signed by him: he could not read
    // what he sent, and the reader is told so.
    let status = header(opened, "Letterlock-Security").expect("status");
    assert!(status.contains("warning=not-a-recipient"), "{status}");
    assert!(
        opened.contains("this message was not encrypted to its sender, mallory@example.org"),
        "{opened}"
    );
    let rewrapped = LATER_SECRET.replacen(" on ", "\n> on ", 1);
    let quoting_bare = to_mallory(
        "",
        "Re: Plans again",
        &format!("Really?\n\nMallory wrote:\n> Bob here. {rewrapped}.\n"),
    );
    refused_for_conversation(&send(&alice, ALICE, &quoting_bare, &[MALLORY.0]));
    alice.stop();
    alice.start();
    let html_quote = to_mallory(
        "",
        "Re: Plans again",
        &format!("<p>Really?</p><blockquote>{LATER_SECRET}</blockquote>"),
    )
    .replace("text/plain", "text/html");
    refused_for_conversation(&send(&alice, ALICE, &html_quote, &[MALLORY.0]));

    // What may go: the reply to Bob alone (encrypted), and a new message to
    // Mallory that answers nothing (opportunistic: in the clear).
    let to_bob = message(ALICE.0, &[BOB.0], in_reply, "Re: Plans", &quoting);
    assert_eq!(send(&alice, ALICE, &to_bob, &[BOB.0]), "OK");
    let new = to_mallory("", "Lunch", "Lunch on Monday?");
    assert_eq!(send(&alice, ALICE, &new, &[MALLORY.0]), "OK");

    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 1, wait);
    let reply = String::from_utf8_lossy(at_bob.last().expect("reply"));
    assert!(reply.contains("multipart/encrypted") && !reply.contains(SECRET));
    provider.wait_for_messages(MALLORY.0, "INBOX", 1, wait);
    // Everything refused was refused before the provider saw it, and the
    // lunch message was sent after all of it: nothing else can still come.
    let at_mallory = provider.messages(MALLORY.0, "INBOX");
    assert_eq!(
        at_mallory.len(),
        1,
        "only the lunch message reached Mallory"
    );
    let lunch = String::from_utf8_lossy(&at_mallory[0]);
    assert!(lunch.contains("Lunch on Monday") && !lunch.contains("merger"));

    // 7. Mallory with a key (Alice learns it from his first mail): an
    //    answer to what he sent on is refused all the same, since encrypted
    //    to him it shows him what he could not read. New mail still goes.
    let mut mallory = Gateway::new(root.path(), "mallory");
    mallory.init(MALLORY.0, &provider);
    mallory.start();
    let intro = message(MALLORY.0, &[ALICE.0], "", "Hi", "Hi Alice, here is my key.");
    assert_eq!(send(&mallory, MALLORY, &intro, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 5, wait);
    read(&alice, ALICE, "INBOX");
    let keyed_reply = to_mallory(
        "",
        "Re: Plans again",
        &format!("Really?\n\n> Bob here. {LATER_SECRET}.\n"),
    );
    let refused = send(&alice, ALICE, &keyed_reply, &[MALLORY.0]);
    refused_for_conversation(&refused);
    assert!(refused.contains("could not read it"), "{refused}");
    let later = to_mallory("", "Tuesday", "Or Tuesday?");
    assert_eq!(send(&alice, ALICE, &later, &[MALLORY.0]), "OK");
    let at_mallory = provider.wait_for_messages(MALLORY.0, "INBOX", 2, wait);
    assert_eq!(
        at_mallory.len(),
        2,
        "only the two new messages reached Mallory"
    );
    let tuesday = String::from_utf8_lossy(&at_mallory[1]);
    assert!(
        tuesday.contains("multipart/encrypted") && !tuesday.contains("merger"),
        "{tuesday}"
    );
    for (g, who) in [(&alice, "alice"), (&bob, "bob")] {
        let log = g.log_text();
        assert!(
            !log.contains(SECRET) && !log.contains(LATER_SECRET),
            "{who}'s log holds the plaintext"
        );
    }
}
