//! Delta Chat as a real peer: the Delta Chat core (deltachat-rpc-server
//! from PyPI, pinned in tests/requirements.txt) with a profile straight at
//! the test provider, with its default settings (encrypted mail only),
//! against Alice behind her gateway. Driven by `tests/deltachat/peer.py`.
//! What Delta Chat shows is asked of Delta Chat (padlock, no error); what
//! the provider stored is looked at directly (ciphertext only).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use e2e::{header, read, send, workspace_root, Conversation, Gateway};
use serde_json::{json, Value};
use testbed::Provider;

const ALICE: (&str, &str) = Conversation::ALICE;
const BOB: (&str, &str) = Conversation::BOB;
const DANA: (&str, &str) = ("dana@example.org", "danapw");
/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x56, 0xc7, 0x2f, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
const WAIT: Duration = Duration::from_secs(90);

/// The Delta Chat user Dana.
struct DeltaChat {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl DeltaChat {
    /// Dana's Delta Chat, configured at `provider` and online, and her own
    /// vCard as Delta Chat shares it.
    fn start(dir: &std::path::Path, provider: &Provider) -> (Self, String) {
        let python = workspace_root().join("target/python/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(workspace_root().join("tests/deltachat/peer.py"))
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Delta Chat driver");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut dana = DeltaChat {
            child,
            stdin,
            stdout,
        };
        let card = dana.setup(provider);
        (dana, card)
    }

    /// One request; its answer, which must not be an error.
    fn ask(&mut self, request: Value) -> Value {
        writeln!(self.stdin, "{request}").expect("request");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("Delta Chat driver said {line:?} to {request}"));
        assert!(
            answer.get("error").is_none(),
            "Delta Chat: {request} → {answer}"
        );
        answer
    }

    fn setup(&mut self, provider: &Provider) -> String {
        let answer = self.ask(json!({
            "do": "setup",
            "addr": DANA.0,
            "password": DANA.1,
            "imap_port": provider.dovecot.imaps_port,
            "smtp_port": provider.submissions_port,
        }));
        answer["vcard"].as_str().expect("vCard").to_string()
    }

    /// The next message Delta Chat receives, asserted to be shown encrypted,
    /// without error, with `text` in it.
    fn receives_encrypted(&mut self, text: &str) -> Value {
        let message = self.ask(json!({"do": "wait_incoming", "timeout": WAIT.as_secs()}));
        assert!(
            message["text"].as_str().unwrap_or_default().contains(text),
            "{message}"
        );
        assert_eq!(
            message["padlock"], true,
            "not shown as encrypted: {message}"
        );
        assert!(
            message["shown_error"].is_null() || message["shown_error"] == "",
            "{message}"
        );
        message
    }
}

impl Drop for DeltaChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alice's newest message in her Inbox, read through her gateway, with a
/// `canary` in it.
fn alice_reads(alice: &Gateway, canary: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = read(alice, ALICE, "INBOX")
            .into_iter()
            .rev()
            .find(|m| m.contains(canary))
        {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{canary} never reached Alice"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// As [`alice_reads`], asserted to be decrypted under a valid signature.
fn alice_reads_signed(alice: &Gateway, canary: &str) -> String {
    let message = alice_reads(alice, canary);
    assert!(
        status(&message).starts_with("encrypted; signature=valid"),
        "{message}"
    );
    message
}

fn status(message: &str) -> String {
    header(message, "Letterlock-Security")
        .unwrap_or_default()
        .to_string()
}

/// Alice writes `body` to Dana from her mail client, through her gateway.
fn alice_writes(alice: &Gateway, subject: &str, body: &str) {
    alice_writes_with(alice, &[DANA.0], subject, body, "", false);
}

/// Alice writes `body` to `to` from her mail client, through her gateway;
/// `extra` header fields (In-Reply-To …) and a PNG attachment if asked.
fn alice_writes_with(
    alice: &Gateway,
    to: &[&str],
    subject: &str,
    body: &str,
    extra: &str,
    png: bool,
) {
    use base64::Engine as _;
    let id = format!("{}@example.org", subject.replace([' ', ':'], "-"));
    let content = if png {
        let image = base64::engine::general_purpose::STANDARD.encode(PNG);
        format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
             Content-Type: text/plain; charset=utf-8\n\n{body}\n--b\n\
             Content-Type: image/png; name=\"dot.png\"\n\
             Content-Disposition: attachment; filename=\"dot.png\"\n\
             Content-Transfer-Encoding: base64\n\n{image}\n--b--\n"
        )
    } else {
        format!("\n{body}\n")
    };
    let message = format!(
        "From: Alice <{}>\nTo: {}\nSubject: {subject}\nMessage-ID: <{id}>\n{extra}{content}",
        ALICE.0,
        to.join(", "),
    );
    assert_eq!(send(alice, ALICE, &message, to), "OK");
}

/// Dana and Alice, after Dana's first mail, written from Alice's vCard
/// with Delta Chat's defaults: ciphertext at the provider, and Alice's
/// gateway holds the key that came inside it (`key=tofu`). Also Alice's
/// vCard, for a Delta Chat profile made later.
fn introduced(root: &std::path::Path, provider: &Provider) -> (Gateway, DeltaChat, String) {
    let alice = Gateway::running(root, "alice", ALICE.0, provider);
    let (mut dana, _) = DeltaChat::start(&root.join("deltachat"), provider);
    // Alice hands Dana her contact as a vCard; Dana writes first, encrypted
    // (Delta Chat's default sends nothing else).
    let card = alice.ok(&["keytool", "export", "--own", ALICE.0, "--vcard"]);
    dana.ask(json!({"do": "import_vcard", "vcard": card}));
    dana.ask(json!({"do": "send", "to": ALICE.0, "text": "Hi Alice, dc-hello"}));
    let stored = provider.wait_for_messages(ALICE.0, "INBOX", 1, WAIT);
    Conversation::assert_ciphertext(&stored[0], "dc-hello", "Dana's first mail");
    let first = alice_reads(&alice, "dc-hello");
    assert!(
        status(&first).starts_with(&format!(
            "encrypted; signature=valid; signer={}; key=tofu",
            DANA.0
        )),
        "{first}"
    );
    (alice, dana, card)
}

#[test]
fn first_contact_by_vcard_with_delta_chat_defaults() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, DANA, BOB]);
    let (alice, mut dana, _) = introduced(root.path(), &provider);

    // Alice answers: encrypted to the key that came inside, and Delta Chat
    // shows it with its padlock.
    dana.ask(json!({"do": "stop_io"}));
    alice_writes(&alice, "Re: Hi", "Hello Dana, ll-canary-1");
    let at_dana = provider.wait_for_messages(DANA.0, "INBOX", 1, WAIT);
    Conversation::assert_ciphertext(at_dana.last().expect("reply"), "ll-canary-1", "the reply");
    dana.ask(json!({"do": "start_io"}));
    let reply = dana.receives_encrypted("ll-canary-1");
    assert_eq!(reply["sender"], ALICE.0, "{reply}");

    // An image each way.
    let png = root.path().join("dot.png");
    std::fs::write(&png, PNG).expect("png");
    dana.ask(
        json!({"do": "send", "to": ALICE.0, "text": "a picture, dc-canary-2",
        "file": png.to_str().expect("path")}),
    );
    let picture = alice_reads_signed(&alice, "dc-canary-2");
    assert!(picture.contains("image/png"), "{picture}");
    alice_writes_with(&alice, &[DANA.0], "A picture back", "ll-canary-2", "", true);
    let image = dana.receives_encrypted("");
    assert_eq!(image["view_type"], "Image", "{image}");
    assert_eq!(image["file_name"], "dot.png", "{image}");

    // A group started in Delta Chat, answered from Alice's mail client.
    let group = dana.ask(
        json!({"do": "group", "name": "Friday", "members": [ALICE.0],
        "text": "Group plans, dc-canary-3"}),
    );
    let in_group = alice_reads_signed(&alice, "dc-canary-3");
    let parent = header(&in_group, "Message-ID")
        .expect("Message-ID")
        .to_string();
    alice_writes_with(
        &alice,
        &[DANA.0],
        "Re: Friday",
        "Count me in, ll-canary-3",
        &format!("In-Reply-To: {parent}\nReferences: {parent}\n"),
        false,
    );
    let answer = dana.receives_encrypted("ll-canary-3");
    println!("Delta Chat filed the answer to its group: {answer} (group {group})");
    assert_eq!(
        answer["chat"], group["chat"],
        "the answer lands in the group: {answer}"
    );

    // A group mail from Alice's mail client to Dana and Bob (a Letterlock
    // user whose key Alice learned from his first mail).
    let mut bob = Gateway::running(root.path(), "bob", BOB.0, &provider);
    let hello = format!(
        "From: {}\nTo: {}\nSubject: Hello\nMessage-ID: <bob-hello@example.org>\n\nHi Alice.\n",
        BOB.0, ALICE.0
    );
    assert_eq!(send(&bob, BOB, &hello, &[ALICE.0]), "OK");
    alice_reads(&alice, "Hi Alice.");
    alice_writes_with(
        &alice,
        &[DANA.0, BOB.0],
        "Planning",
        "To you both, ll-canary-4",
        "",
        false,
    );
    let to_both = dana.receives_encrypted("ll-canary-4");
    println!("Delta Chat filed Alice's group mail: {to_both}");
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 1, WAIT);
    Conversation::assert_ciphertext(
        at_bob.last().expect("group mail"),
        "ll-canary-4",
        "the group mail",
    );
    let bob_reads = read(&bob, BOB, "INBOX");
    let mail = bob_reads
        .iter()
        .find(|m| m.contains("ll-canary-4"))
        .expect("Bob reads the group mail");
    assert!(
        status(mail).starts_with("encrypted; signature=valid"),
        "{mail}"
    );
    bob.stop();
}

#[test]
fn a_new_delta_chat_profile_is_learned_and_answered_with_its_new_key() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, DANA]);
    let (alice, mut dana, card) = introduced(root.path(), &provider);
    let old = status(&alice_reads(&alice, "dc-hello"));

    // Dana reinstalls: a new profile, a new key, Alice's contact again.
    dana.ask(json!({"do": "new_profile"}));
    dana.ask(json!({"do": "import_vcard", "vcard": card}));
    dana.ask(json!({"do": "send", "to": ALICE.0, "text": "New phone, dc-new-key"}));
    let changed = alice_reads(&alice, "dc-new-key");
    let now = status(&changed);
    assert!(
        now.starts_with(&format!(
            "encrypted; signature=valid; signer={}; key=changed",
            DANA.0
        )),
        "{changed}"
    );
    let fpr = |s: &str| s.rsplit("fpr=").next().unwrap_or_default().to_string();
    assert_ne!(fpr(&now), fpr(&old), "{old} / {now}");

    // Alice's answer goes to the new key: Delta Chat decrypts it.
    alice_writes(&alice, "Re: New phone", "Welcome back, ll-new-key");
    dana.receives_encrypted("ll-new-key");
}

#[test]
fn cleartext_first_contact_with_encryption_only_off() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, DANA]);
    let alice = Gateway::running(root.path(), "alice", ALICE.0, &provider);
    let (mut dana, _) = DeltaChat::start(&root.path().join("deltachat"), &provider);
    dana.ask(json!({"do": "set", "key": "force_encryption", "value": "0"}));
    // Dana writes to an address she has no key for: in the clear, with
    // her Autocrypt header outside.
    dana.ask(json!({"do": "send", "to": ALICE.0, "text": "Hello there, dc-clear"}));
    let stored = provider.wait_for_messages(ALICE.0, "INBOX", 1, WAIT);
    assert!(String::from_utf8_lossy(&stored[0]).contains("dc-clear"));
    let first = alice_reads(&alice, "dc-clear");
    assert!(!status(&first).starts_with("encrypted"), "{first}");
    // From then on both ways are encrypted.
    alice_writes(&alice, "Re: Hello", "Hi Dana, ll-after-clear");
    let at_dana = provider.wait_for_messages(DANA.0, "INBOX", 1, WAIT);
    Conversation::assert_ciphertext(
        at_dana.last().expect("answer"),
        "ll-after-clear",
        "the answer",
    );
    let answer = dana.receives_encrypted("ll-after-clear");
    // Delta Chat files mail from a key apart from mail from a bare address:
    // the encrypted answer opens a new chat, a contact request Dana accepts.
    println!("Delta Chat filed the encrypted answer: {answer}");
    dana.ask(
        json!({"do": "reply", "id": answer["id"], "text": "Great, dc-encrypted",
        "accept": true}),
    );
    alice_reads_signed(&alice, "dc-encrypted");
}

#[test]
fn alice_writes_first_with_the_vcard_delta_chat_shares() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, DANA]);
    let alice = Gateway::running(root.path(), "alice", ALICE.0, &provider);
    let (mut dana, card) = DeltaChat::start(&root.path().join("deltachat"), &provider);
    // Dana shares her contact from Delta Chat; Alice imports it.
    let file = root.path().join("dana.vcf");
    std::fs::write(&file, &card).expect("vCard");
    let imported = alice.ok(&["keytool", "import", file.to_str().expect("path")]);
    assert!(imported.contains(DANA.0), "{imported}");
    // Alice writes first: encrypted, and Delta Chat (which reads nothing
    // else with its defaults) shows it with its padlock.
    dana.ask(json!({"do": "stop_io"}));
    alice_writes(&alice, "Hello Dana", "From a vCard, ll-first");
    let at_dana = provider.wait_for_messages(DANA.0, "INBOX", 1, WAIT);
    Conversation::assert_ciphertext(&at_dana[0], "ll-first", "Alice's first mail");
    dana.ask(json!({"do": "start_io"}));
    let first = dana.receives_encrypted("ll-first");
    // Dana answers; her signature is valid with the key from her card.
    dana.ask(
        json!({"do": "reply", "id": first["id"], "text": "Got it, dc-answer",
        "accept": true}),
    );
    alice_reads_signed(&alice, "dc-answer");
}
