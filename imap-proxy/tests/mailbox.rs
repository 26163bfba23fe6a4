//! A mixed mailbox read through the proxy with Python's imaplib: PGP/MIME
//! made by `gpg` (signed and encrypted, with a non-ASCII text part and an
//! attachment), inline PGP made by `gpg`, a PGP/MIME message signed but not
//! encrypted, and one from our own engine with protected headers.
//!
//! The reference for every FETCH item is Dovecot itself: the bytes the
//! proxy serves for each encrypted message are stored as a cleartext
//! message in a second mailbox, and every item (RFC822, RFC822.HEADER,
//! RFC822.TEXT, RFC822.SIZE, BODY[] with each kind of section and a
//! partial range, BODY, BODYSTRUCTURE, ENVELOPE) fetched through the proxy
//! for the encrypted message must equal Dovecot's answer for that copy.
//! Also: APPEND with a non-synchronizing literal (LITERAL+) to Sent.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::{AutocryptHeader, PreferEncrypt};
use keystore::KeySource;
use mailcrypt::EncryptRequest;
use sequoia_openpgp::serialize::SerializeInto as _;
use testbed::Dovecot;

mod common;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

/// argv: port [ca-file for implicit TLS]; stdin: one request per line, `MAILBOX UID ITEM`. Prints, per
/// request, base64 of the FETCH response with the sequence number, UID and
/// FLAGS taken out (they differ between the two mailboxes by design).
const FETCHER: &str = r#"
import base64, imaplib, re, ssl, sys
if len(sys.argv) > 2:
    context = ssl.create_default_context(cafile=sys.argv[2])
    m = imaplib.IMAP4_SSL("localhost", int(sys.argv[1]), ssl_context=context)
else:
    m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("alice", "alicepw")
selected = None
for line in sys.stdin.read().splitlines():
    mailbox, uid, item = line.split(" ", 2)
    if mailbox != selected:
        m.select(mailbox)
        selected = mailbox
    typ, data = m.uid("FETCH", uid, "(%s)" % item)
    raw = b""
    for d in data:
        if isinstance(d, tuple):
            raw += d[0] + b"\r\n" + d[1]
        elif d is not None:
            raw += d
    raw = re.sub(rb"^\d+ \(", b"(", raw)
    raw = re.sub(rb"UID \d+ ?", b"", raw)
    raw = re.sub(rb"FLAGS \([^)]*\) ?", b"", raw)
    print(base64.b64encode(typ.encode() + b" " + raw).decode())
m.logout()
"#;

/// argv: port message-file. APPEND to Sent with a LITERAL+ literal over a
/// raw socket (imaplib only writes synchronizing literals); prints the
/// tagged answer.
const APPENDER: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
message = open(sys.argv[2], "rb").read()
def until(tag):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("closed")
        if line.startswith(tag.encode()):
            return line.decode().strip()
until("* OK")
s.sendall(b"a LOGIN alice alicepw\r\n"); until("a ")
s.sendall(b"b APPEND Sent (\\Seen) {%d+}\r\n" % len(message) + message + b"\r\n")
print(until("b "))
s.sendall(b"c LOGOUT\r\n"); until("c ")
"#;

fn run(command: &mut Command) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/setup installs it)"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// gpg in a throw-away home holding Bob's secret key and Alice's public key.
fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args([
        "--batch",
        "--no-tty",
        "--trust-model",
        "always",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    c
}

fn gpg_home(
    dir: &Path,
    bob: &sequoia_openpgp::Cert,
    alice: &sequoia_openpgp::Cert,
) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let home = dir.join("gnupg");
    std::fs::create_dir(&home).expect("gnupg home");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let keys = dir.join("keys.asc");
    let mut armored = bob.as_tsk().armored().to_vec().expect("bob");
    armored.extend(alice.armored().to_vec().expect("alice"));
    std::fs::write(&keys, armored).expect("keys");
    run(gpg(&home).arg("--import").arg(&keys));
    home
}

/// `gpg` run over `input` with these arguments, its output returned.
fn gpg_over(home: &Path, dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let inp = dir.join("gpg-in");
    let out = dir.join("gpg-out");
    let _ = std::fs::remove_file(&out);
    std::fs::write(&inp, input).expect("input");
    run(gpg(home).args(args).arg("-o").arg(&out).arg(&inp));
    std::fs::read(&out).expect("gpg output")
}

const OUTER: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n\
Date: Tue, 3 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n";

/// A signed and encrypted multipart with text and a PDF, non-ASCII in the
/// subject, the text and the file name.
const INNER_MIXED: &str = "Content-Type: multipart/mixed; boundary=\"inner\"; protected-headers=\"v1\"\r\n\
From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n\r\n\
--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Gr=C3=BC=C3=9Fe, Alice: der Bericht h=C3=A4ngt an. canary-gpg-mime\r\n\
--inner\r\nContent-Type: application/pdf; name=\"bericht.pdf\"\r\n\
Content-Disposition: attachment; filename*=utf-8''bericht-%C3%BC.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n\
--inner--\r\n";

fn pgp_mime(armored: &[u8], subject: &str) -> Vec<u8> {
    let mut m = format!(
        "{OUTER}Subject: {subject}\r\nContent-Type: multipart/encrypted; \
         protocol=\"application/pgp-encrypted\"; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --outer\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(&crlf(armored));
    m.extend_from_slice(b"\r\n--outer--\r\n");
    m
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 20);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// What the mailbox holds, by name.
fn messages(
    dir: &Path,
    alice: &sequoia_openpgp::Cert,
    bob: &sequoia_openpgp::Cert,
) -> Vec<(&'static str, Vec<u8>)> {
    let home = gpg_home(dir, bob, alice);
    let encrypt = ["--armor", "--sign", "--encrypt", "-u", BOB, "-r", ALICE];

    let gpg_mime = pgp_mime(
        &gpg_over(&home, dir, &encrypt, INNER_MIXED.as_bytes()),
        "...",
    );

    let mut inline =
        format!("{OUTER}Subject: inline\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
            .into_bytes();
    inline.extend(crlf(&gpg_over(
        &home,
        dir,
        &encrypt,
        "Inline: Grüße, canary-inline\n".as_bytes(),
    )));

    let signed_part =
        "Content-Type: text/plain; charset=utf-8\r\n\r\nonly signed, canary-signed\r\n";
    let signature = gpg_over(
        &home,
        dir,
        &[
            "--armor",
            "--detach-sign",
            "--digest-algo",
            "SHA256",
            "-u",
            BOB,
        ],
        signed_part.as_bytes(),
    );
    let mut signed = format!(
        "{OUTER}Subject: signed only\r\nContent-Type: multipart/signed; micalg=pgp-sha256; \
         protocol=\"application/pgp-signature\"; boundary=\"sig\"\r\n\r\n--sig\r\n{signed_part}\r\n\
         --sig\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n"
    )
    .into_bytes();
    signed.extend(crlf(&signature));
    signed.extend_from_slice(b"\r\n--sig--\r\n");

    let ours = mailcrypt::encrypt(
        format!(
            "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: =?utf-8?q?Tr=C3=A9sor?=\r\n\
             Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
             Très secret, canary-ours\r\n--b\r\nContent-Type: text/csv; name=\"liste.csv\"\r\n\
             Content-Disposition: attachment; filename=\"liste.csv\"\r\n\r\na,b\r\n1,2\r\n--b--\r\n"
        )
        .as_bytes(),
        &EncryptRequest {
            autocrypt: Some(&AutocryptHeader::new(
                BOB,
                PreferEncrypt::Mutual,
                bob.clone(),
            )),
            ..EncryptRequest::new(bob, std::slice::from_ref(alice))
        },
    )
    .expect("encrypt");
    vec![
        ("gpg-pgp-mime", gpg_mime),
        ("gpg-inline", inline),
        ("gpg-signed", signed),
        ("mailcrypt", ours),
    ]
}

/// Every FETCH item a client may ask for; sections by number are asked
/// only of the multipart messages.
const ITEMS: &[&str] = &[
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
    "RFC822.SIZE",
    "BODY.PEEK[]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[HEADER.FIELDS (From Subject Letterlock-Security)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (Subject Letterlock-Security)]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[TEXT]<7.40>",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY",
    "BODYSTRUCTURE",
    "ENVELOPE",
];
const PART_ITEMS: &[&str] = &["BODY.PEEK[2]", "BODY.PEEK[2.MIME]", "BODY.PEEK[2]<0.10>"];

fn fetch(port: u16, requests: &[String]) -> Vec<String> {
    fetch_from(port, None, requests)
}

/// With `ca_file`, over implicit TLS (Dovecot's own port).
fn fetch_from(port: u16, ca_file: Option<&Path>, requests: &[String]) -> Vec<String> {
    let mut args = vec![port.to_string()];
    args.extend(ca_file.map(|ca| ca.display().to_string()));
    let out = testbed::python::run(FETCHER, &args, requests.join("\n").as_bytes());
    testbed::python::base64_text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_item_of_a_mixed_mailbox_matches_dovecot_on_the_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now() - Duration::from_secs(60);
    let (store, alice) = common::vault_with_identity(dir.path(), ALICE, now).await;
    let bob = autocrypt::key::generate(BOB, now).expect("bob");
    // Bob's key is known (as after `keytool import`), so his signatures count.
    store
        .record_key(&bob, KeySource::Import, now)
        .await
        .expect("bob's key");
    let archive = Archive::open(&store).await.expect("archive");
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");
    let alice_public = alice.clone().strip_secret_key_material();
    let mailbox = messages(dir.path(), &alice_public, &bob);
    for (_, m) in &mailbox {
        dovecot.save("alice", "INBOX", m);
    }
    let uids = dovecot.uids("alice", "INBOX");
    assert_eq!(uids.len(), mailbox.len());

    let proxy = common::start(
        vec![common::account_at(&dovecot, ALICE, "alice")],
        imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT,
        &store,
        &archive,
    )
    .await;
    let port = proxy.port;

    // What the proxy serves, once per message; then stored as cleartext in
    // "Expected", in the same order, for Dovecot to answer from.
    let served: Vec<String> = tokio::task::spawn_blocking({
        let requests: Vec<String> = uids
            .iter()
            .map(|u| format!("INBOX {u} BODY.PEEK[]"))
            .collect();
        move || fetch(port, &requests)
    })
    .await
    .expect("fetch");
    let mut plain = Vec::new();
    for ((name, _), answer) in mailbox.iter().zip(&served) {
        let literal = answer
            .split_once("}\r\n")
            .map(|(_, rest)| rest.strip_suffix(')').unwrap_or(rest))
            .unwrap_or_else(|| panic!("{name}: {answer}"));
        plain.push(literal.to_string());
    }
    let expect_in = |name: &str, words: &[&str]| {
        let i = mailbox.iter().position(|(n, _)| *n == name).expect("name");
        for w in words {
            assert!(plain[i].contains(w), "{name} lacks {w:?}:\n{}", plain[i]);
        }
    };
    expect_in(
        "gpg-pgp-mime",
        &[
            "Letterlock-Security: encrypted; signature=valid; signer=bob@example.org",
            "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
            "canary-gpg-mime",
            "filename*=utf-8''bericht-%C3%BC.pdf",
        ],
    );
    expect_in(
        "gpg-inline",
        &[
            "Letterlock-Security: encrypted; signature=valid",
            "Inline: Grüße, canary-inline",
        ],
    );
    expect_in(
        "gpg-signed",
        &[
            "Letterlock-Security: unencrypted; signature=valid; signer=bob@example.org",
            "canary-signed",
        ],
    );
    expect_in(
        "mailcrypt",
        &[
            "Subject: =?utf-8?q?Tr=C3=A9sor?=",
            "Très secret, canary-ours",
            "liste.csv",
        ],
    );
    for p in &plain {
        dovecot.save("alice", "Expected", p.as_bytes());
    }
    let expected_uids = dovecot.uids("alice", "Expected");

    // Through the proxy for the encrypted messages; from Dovecot itself
    // for the cleartext copies of what the proxy served (the proxy would
    // strip their status header, rightly: rule 6).
    let mut requests = Vec::new();
    let mut reference = Vec::new();
    for (i, (name, _)) in mailbox.iter().enumerate() {
        let multipart = *name != "gpg-inline";
        for item in ITEMS.iter().chain(if multipart { PART_ITEMS } else { &[] }) {
            requests.push(format!("INBOX {} {item}", uids[i]));
            reference.push(format!("Expected {} {item}", expected_uids[i]));
        }
    }
    let answers = tokio::task::spawn_blocking({
        let requests = requests.clone();
        move || fetch(port, &requests)
    })
    .await
    .expect("fetch");
    let (imaps, ca) = (dovecot.imaps_port, dovecot.ca_file.clone());
    let expected = tokio::task::spawn_blocking({
        let reference = reference.clone();
        move || fetch_from(imaps, Some(&ca), &reference)
    })
    .await
    .expect("fetch");
    assert_eq!(answers.len(), requests.len());
    assert_eq!(expected.len(), requests.len());
    for (i, asked) in requests.iter().enumerate() {
        assert!(
            expected[i].starts_with("OK"),
            "{}: {}",
            reference[i],
            expected[i]
        );
        // imap-codec writes the "TEXT" media type in capitals where
        // Dovecot repeats the message's spelling; both are the same
        // (media types are case-insensitive), so structures are compared
        // without regard to case and everything else byte for byte.
        let same = if asked.ends_with(" BODY") || asked.ends_with("BODYSTRUCTURE") {
            answers[i].eq_ignore_ascii_case(&expected[i])
        } else {
            answers[i] == expected[i]
        };
        assert!(
            same,
            "{asked} differs from Dovecot's {}:\n{}\n{}",
            reference[i], answers[i], expected[i]
        );
    }

    // A second session gets the same structure and size.
    let again = tokio::task::spawn_blocking({
        let requests: Vec<String> = uids
            .iter()
            .flat_map(|u| {
                [
                    format!("INBOX {u} BODYSTRUCTURE"),
                    format!("INBOX {u} RFC822.SIZE"),
                ]
            })
            .collect();
        move || fetch(port, &requests)
    })
    .await
    .expect("fetch");
    for (i, u) in uids.iter().enumerate() {
        let first = |item: &str| {
            let at = requests
                .iter()
                .position(|r| *r == format!("INBOX {u} {item}"))
                .expect("asked");
            answers[at].clone()
        };
        assert_eq!(again[2 * i], first("BODYSTRUCTURE"));
        assert_eq!(again[2 * i + 1], first("RFC822.SIZE"));
    }

    // The provider still has only ciphertext for the encrypted three.
    for (i, (name, _)) in mailbox.iter().enumerate() {
        let stored = dovecot.doveadm(&[
            "fetch",
            "-u",
            "alice",
            "text",
            "mailbox",
            "INBOX",
            "uid",
            &uids[i].to_string(),
        ]);
        if *name != "gpg-signed" {
            assert!(!stored.contains("canary"), "{name}: {stored}");
        }
    }

    // APPEND to Sent with a non-synchronizing literal: stored encrypted,
    // read back in the clear.
    let sent = dir.path().join("sent.eml");
    std::fs::write(
        &sent,
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: sent copy\r\n\r\ncanary-sent\r\n",
    )
    .expect("sent");
    let appended = tokio::task::spawn_blocking(move || {
        run(Command::new("python3")
            .args(["-c", APPENDER])
            .arg(port.to_string())
            .arg(&sent))
    })
    .await
    .expect("append");
    let appended = String::from_utf8_lossy(&appended).into_owned();
    assert!(appended.starts_with("b OK"), "{appended}");
    let sent_uids = dovecot.uids("alice", "Sent");
    assert_eq!(sent_uids.len(), 1);
    let stored = dovecot.doveadm(&[
        "fetch",
        "-u",
        "alice",
        "text",
        "mailbox",
        "Sent",
        "uid",
        &sent_uids[0].to_string(),
    ]);
    assert!(stored.contains("-----BEGIN PGP MESSAGE-----"), "{stored}");
    assert!(
        !stored.contains("canary-sent") && !stored.contains("sent copy"),
        "{stored}"
    );
    let read = tokio::task::spawn_blocking(move || {
        fetch(port, &[format!("Sent {} BODY.PEEK[]", sent_uids[0])])
    })
    .await
    .expect("fetch");
    assert!(
        read[0].contains("canary-sent") && read[0].contains("Subject: sent copy"),
        "{}",
        read[0]
    );
    proxy.stop().await;
}
