//! The IMAP proxy between Python's imaplib and a real Dovecot: login
//! pass-through, capabilities, encrypted messages served decrypted for
//! every FETCH item, cleartext passed through byte for byte, a forged
//! status header removed, the same bytes in a second session, APPEND
//! stored encrypted and read back in the clear, unread mail fetched by many
//! sessions at once, sizes of a known mailbox without detection.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::{AutocryptHeader, PreferEncrypt};
use imap_proxy::proxy::{AccountConfig, Config, Proxy};
use imap_proxy::upstream::{Endpoint, Security};
use keystore::{Keystore, Unlock};
use mailcrypt::EncryptRequest;
use testbed::Dovecot;

mod common;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

/// argv: port user password [starttls-ca]; stdin: a script of steps, one per line:
/// `uid_fetch UID ITEMS`, `append MAILBOX`, `capability`, `select MAILBOX`.
/// Prints one line per step: base64 of the raw response (literals inline).
const CLIENT: &str = r#"
import base64, imaplib, os, ssl, sys
port, user, password = sys.argv[1:4]
m = imaplib.IMAP4("127.0.0.1", int(port))
def out(b):
    print(base64.b64encode(b).decode())
ca = sys.argv[4] if len(sys.argv) > 4 else None
if ca:
    try:
        m.login(user, password)
        out(b"PRETLS LOGIN OK")
    except imaplib.IMAP4.error as e:
        out(("PRETLS LOGIN NO " + str(e)).encode())
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    m.starttls(context)
def raw(data):
    r = b""
    for d in data:
        if isinstance(d, tuple):
            r += d[0] + b"\r\n" + d[1]
        elif d is not None:
            r += d
    return r
try:
    if password.startswith("plain:"):
        secret = password[len("plain:"):]
        typ, data = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, secret)).encode())
    elif password.startswith("onbehalf:"):
        secret = password[len("onbehalf:"):]
        typ, data = m.authenticate("PLAIN", lambda _: ("bob@example.org\0%s\0%s" % (user, secret)).encode())
    else:
        typ, data = m.login(user, password)
    out(("LOGIN " + typ).encode())
except imaplib.IMAP4.error as e:
    out(("LOGIN NO " + str(e)).encode())
    sys.exit(0)
for line in sys.stdin.read().splitlines():
    step, _, rest = line.partition(" ")
    try:
        if step == "capability":
            typ, data = m.capability()
            out(raw(data))
        elif step == "select":
            typ, data = m.select(rest)
            out(typ.encode())
        elif step == "uid_fetch":
            uid, items = rest.split(" ", 1)
            typ, data = m.uid("FETCH", uid, items)
            out(raw(data))
        elif step == "fetch":
            seq, items = rest.split(" ", 1)
            typ, data = m.fetch(seq, items)
            out(raw(data))
        elif step == "search":
            typ, data = m.uid("SEARCH", None, rest)
            out(raw(data))
        elif step == "search_seq":
            typ, data = m.search(None, rest)
            out(raw(data))
        elif step == "search_told":
            m.response("OK")
            typ, data = m.uid("SEARCH", None, rest)
            typ, notes = m.response("OK")
            out(raw(data) + b" | " + b" | ".join(n for n in notes if n))
        elif step == "append":
            typ, data = m.append(rest, None, None, b"From: alice@example.org\r\nSubject: draft\r\n\r\ncanary-draft\r\n")
            out((typ + " " + raw(data).decode()).encode())
        elif step == "append_large":
            mailbox, kib = rest.split(" ")
            body = base64.encodebytes(os.urandom(int(kib) * 768)).replace(b"\n", b"\r\n")
            message = b"From: alice@example.org\r\nSubject: large\r\n\r\ncanary-large\r\n" + body
            typ, data = m.append(mailbox, None, None, message)
            out((typ + " " + raw(data).decode()).encode())
    except imaplib.IMAP4.error as e:
        out(("ERROR " + str(e)).encode())
try:
    m.logout()
except imaplib.IMAP4.error:
    pass
"#;

struct Setup {
    _dir: tempfile::TempDir,
    store: Keystore,
    dovecot: Dovecot,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    plain: Vec<u8>,
    known_plain: imap_proxy::plain::PlainMessages,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn setup() -> Setup {
    setup_with(None, None).await
}

/// With `cut_after`, the proxy reaches Dovecot through a link that breaks
/// each connection after that many bytes from the proxy.
async fn setup_with(
    cut_after: Option<usize>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> Setup {
    // LETTERLOCK_LOG=debug shows the proxy's side when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LETTERLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now() - Duration::from_secs(60);
    let (store, alice) = common::vault_with_identity(dir.path(), ALICE, now).await;
    let bob = autocrypt::key::generate(BOB, now).expect("bob");
    let archive = Archive::open(&store).await.expect("archive");
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");

    let inner = format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: the real subject\r\n\
         Date: Mon, 2 Nov 2026 11:00:00 +0000\r\nMessage-ID: <enc@example.org>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\ncanary-inside the ciphertext\r\n"
    );
    let header = AutocryptHeader::new(BOB, PreferEncrypt::Mutual, bob.clone());
    let encrypted = mailcrypt::encrypt(
        inner.as_bytes(),
        &EncryptRequest {
            autocrypt: Some(&header),
            ..EncryptRequest::new(&bob, std::slice::from_ref(&alice))
        },
    )
    .expect("encrypt");
    // Cleartext with Carol's Autocrypt header: passing through, it teaches
    // her key.
    let carol = autocrypt::key::generate("carol@example.net", now).expect("carol");
    let plain = mailcrypt::add_autocrypt_header(
        b"From: carol@example.net\r\nTo: alice@example.org\r\nSubject: plain one\r\n\
Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nnothing secret\r\n",
        &AutocryptHeader::new("carol@example.net", PreferEncrypt::Mutual, carol.clone()),
    );
    let forged = b"From: mallory@example.net\r\nTo: alice@example.org\r\nSubject: trust me\r\n\
Letterlock-Security: encrypted; signature=valid; signer=bob@example.org; key=verified\r\n\r\nforged\r\n"
        .to_vec();
    for m in [&encrypted, &plain, &forged] {
        dovecot.save("alice", "INBOX", m);
    }

    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        tls,
        provider_timeout: imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT,
        accounts: vec![AccountConfig {
            address: ALICE.into(),
            username: "alice".into(),
            provider: Endpoint {
                host: "localhost".into(),
                port: match cut_after {
                    Some(bytes) => testbed::BreakingLink::start(dovecot.imaps_port, bytes).port,
                    None => dovecot.imaps_port,
                },
                security: Security::Tls,
                ca_file: Some(dovecot.ca_file.clone()),
                pinned: None,
            },
        }],
    };
    let proxy = Proxy::bind(config, store.clone(), archive)
        .await
        .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let known_plain = proxy.plain_messages();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.run(
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(1),
    ));
    Setup {
        _dir: dir,
        store: store.clone(),
        dovecot,
        port,
        stop: Some(stop),
        plain,
        known_plain,
    }
}

async fn client(port: u16, password: &str, steps: &[&str]) -> Vec<Vec<u8>> {
    client_over(port, password, None, steps).await
}

/// With `starttls_ca`, the client first tries to log in on the plain
/// connection (one output line), then upgrades, trusting that certificate.
async fn client_over(
    port: u16,
    password: &str,
    starttls_ca: Option<&std::path::Path>,
    steps: &[&str],
) -> Vec<Vec<u8>> {
    let input = steps.join("\n");
    let mut args = vec![port.to_string(), "alice".into(), password.to_string()];
    args.extend(starttls_ca.map(|ca| ca.display().to_string()));
    let out =
        tokio::task::spawn_blocking(move || testbed::python::run(CLIENT, &args, input.as_bytes()))
            .await
            .expect("client task");
    testbed::python::base64_lines(&out)
}

/// Runs a Python `script` given the proxy's `port`; its standard output,
/// once it has succeeded within `limit`.
async fn script_against(script: &str, port: u16, limit: Duration) -> String {
    let out = tokio::time::timeout(
        limit,
        tokio::process::Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .output(),
    )
    .await
    .expect("the script finished in time")
    .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The literal following `marker` (e.g. `BODY[] {123}`) in a raw response.
fn literal_after(raw: &[u8], marker: &str) -> Vec<u8> {
    let t = text(raw);
    let at = t
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {t}"));
    let rest = &raw[at + marker.len()..];
    let open = rest.iter().position(|&b| b == b'{').expect("literal");
    let close = rest.iter().position(|&b| b == b'}').expect("literal end");
    let n: usize = text(&rest[open + 1..close]).parse().expect("length");
    rest[close + 3..close + 3 + n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_decrypted_messages_to_imaplib() {
    let s = setup().await;
    let uids = s.dovecot.uids("alice", "INBOX");
    assert_eq!(uids.len(), 3);
    let (enc, plain, forged) = (uids[0], uids[1], uids[2]);

    // A wrong password is the provider's NO.
    let refused = client(s.port, "plain:wrong", &[]).await;
    assert!(
        text(&refused[0]).starts_with("LOGIN NO"),
        "{}",
        text(&refused[0])
    );
    let refused = client(s.port, "wrong", &[]).await;
    assert!(
        text(&refused[0]).starts_with("LOGIN NO"),
        "{}",
        text(&refused[0])
    );

    let steps = [
        "capability".to_string(),
        "select INBOX".to_string(),
        format!("uid_fetch {enc} (BODY.PEEK[])"),
        format!("uid_fetch {enc} (RFC822.SIZE BODYSTRUCTURE ENVELOPE)"),
        concat!(
            "uid_fetch 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc ",
            "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To ",
            "Content-Type Reply-To)])"
        )
        .to_string(),
        format!("uid_fetch {plain} (BODY.PEEK[])"),
        format!("uid_fetch {forged} (BODY.PEEK[])"),
        format!("uid_fetch {enc} (BODY.PEEK[TEXT]<0.10> BODY.PEEK[1.MIME])"),
        "append Drafts".to_string(),
        "search BODY canary-inside".to_string(),
        "search SUBJECT \"real subject\"".to_string(),
        "search OR BODY canary-inside BODY \"nothing secret\"".to_string(),
        "search SEEN BODY canary-inside".to_string(),
        "fetch 1:3 (BODY.PEEK[HEADER.FIELDS (Subject)])".to_string(),
        "search TEXT \"CANARY-ins\"".to_string(),
        "search HEADER Subject \"real subj\"".to_string(),
        "search BODY \"nary-inside\"".to_string(),
        "search SUBJECT \"\"".to_string(),
        // Told apart by now: sent without detection items (FetchCommand's
        // "deferred"), answered from what is known.
        "uid_fetch 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject Letterlock-Security)])"
            .to_string(),
        // Told apart, a whole-mailbox read asks the provider for metadata
        // only: the encrypted message from the archive, the others by a
        // second FETCH of their content.
        "uid_fetch 1:* (FLAGS BODY.PEEK[] RFC822.SIZE)".to_string(),
    ];
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let out = client(s.port, "alicepw", &steps).await;
    assert_eq!(text(&out[0]), "LOGIN OK");

    let caps = text(&out[1]).to_ascii_uppercase();
    assert!(
        caps.contains("IMAP4REV1") && caps.contains("IDLE"),
        "{caps}"
    );
    for gone in ["COMPRESS", "BINARY", "SORT", "ESEARCH", "LIST-EXTENDED"] {
        assert!(!caps.contains(gone), "{gone} advertised: {caps}");
    }
    assert_eq!(text(&out[2]), "OK");

    // The encrypted message, decrypted, with the status header.
    let served = literal_after(&out[3], "BODY[]");
    let served_text = text(&served);
    assert!(
        served_text.contains("canary-inside the ciphertext"),
        "{served_text}"
    );
    assert!(served_text.contains("Subject: the real subject"));
    assert!(
        served_text.contains("Letterlock-Security: encrypted;"),
        "{served_text}"
    );

    // Its size and structure describe the same bytes.
    let described = text(&out[4]);
    assert!(
        described.contains(&format!("RFC822.SIZE {}", served.len())),
        "{described}"
    );
    assert!(described.contains("\"the real subject\""), "{described}");
    assert!(described.contains("(\"TEXT\" \"plain\""), "{described}");

    // Carol's key was learned from her cleartext message on the way.
    let carol_state = s
        .store
        .peer_state("carol@example.net")
        .await
        .expect("peer state")
        .expect("carol is known");
    assert!(carol_state.public_key.is_some());

    // Thunderbird's header sync sees the real subject.
    let headers = text(&out[5]);
    assert!(headers.contains("Subject: the real subject"), "{headers}");
    assert!(headers.contains("Subject: plain one"), "{headers}");
    assert!(!headers.contains("Subject: [...]"), "{headers}");

    // Cleartext passes through byte for byte.
    assert_eq!(literal_after(&out[6], "BODY[]"), s.plain);

    // A forged status header is removed.
    let cleaned = text(&literal_after(&out[7], "BODY[]"));
    assert!(!cleaned.contains("signature=valid"), "{cleaned}");
    assert!(cleaned.contains("forged"));

    // Sections and partials of the decrypted message.
    let partial = literal_after(&out[8], "BODY[TEXT]<0>");
    assert_eq!(partial, b"canary-ins");

    // APPEND stores ciphertext; through the proxy it reads as written.
    assert!(text(&out[9]).starts_with("OK"), "{}", text(&out[9]));
    let drafts = s.dovecot.uids("alice", "Drafts");
    assert_eq!(drafts.len(), 1);
    let stored = s.dovecot.doveadm(&[
        "fetch",
        "-u",
        "alice",
        "text",
        "mailbox",
        "Drafts",
        "uid",
        &drafts[0].to_string(),
    ]);
    assert!(stored.contains("-----BEGIN PGP MESSAGE-----"), "{stored}");
    assert!(!stored.contains("canary-draft"), "{stored}");
    // Not read through the gateway yet: a SEARCH cannot see inside it,
    // and says so instead of silently missing it.
    let draft_search = ["select Drafts", "search_told BODY canary-draft"];
    let unread = text(&client(s.port, "alicepw", &draft_search).await[2]);
    assert!(
        unread.starts_with(" |") && unread.contains("1 message in this folder has not been read"),
        "{unread}"
    );
    let draft = client(
        s.port,
        "alicepw",
        &[
            "select Drafts",
            &format!("uid_fetch {} (BODY.PEEK[])", drafts[0]),
        ],
    )
    .await;
    let draft = text(&literal_after(&draft[2], "BODY[]"));
    assert!(draft.contains("canary-draft"), "{draft}");
    assert!(draft.contains("Subject: draft"), "{draft}");
    // Read once, it is found, in any later session, without the notice.
    let read = text(&client(s.port, "alicepw", &draft_search).await[2]);
    assert_eq!(read.trim(), format!("{} |", drafts[0]), "{read}");

    // SEARCH finds words that exist only inside the ciphertext, merged
    // with the provider's answer for the rest; flags still count.
    let found = |i: usize| -> Vec<u32> {
        text(&out[i])
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    assert_eq!(found(10), vec![enc], "{}", text(&out[10]));
    assert_eq!(found(11), vec![enc], "{}", text(&out[11]));
    assert_eq!(found(12), vec![enc, plain], "{}", text(&out[12]));
    assert!(found(13).is_empty(), "{}", text(&out[13]));
    // The index answers with word semantics: the last word a prefix, case
    // folded; the inside of a word is not a match (imap::search). HEADER,
    // which the index does not hold, is a substring of the served header;
    // the empty string is in every message.
    assert_eq!(found(15), vec![enc], "{}", text(&out[15]));
    assert_eq!(found(16), vec![enc], "{}", text(&out[16]));
    assert!(found(17).is_empty(), "{}", text(&out[17]));
    assert_eq!(found(18), vec![enc, plain, forged], "{}", text(&out[18]));

    // A header sync of the mailbox told apart: the same answers, the
    // forged status header still gone.
    let synced = text(&out[19]);
    assert!(synced.contains("Subject: the real subject"), "{synced}");
    assert!(synced.contains("Subject: plain one"), "{synced}");
    let forged_answer = synced
        .split("\r\n)")
        .find(|answer| answer.contains(&format!("UID {forged} ")))
        .unwrap_or_else(|| panic!("no answer for UID {forged}: {synced}"));
    assert!(
        !forged_answer.contains("Letterlock-Security"),
        "{forged_answer}"
    );
    assert!(
        synced.contains("Letterlock-Security: encrypted;"),
        "{synced}"
    );
    assert!(
        synced.contains(&format!("RFC822.SIZE {}", served.len())),
        "{synced}"
    );

    // The whole mailbox, told apart: each message as read one by one.
    let whole = &out[20];
    let answer_for = |uid: u32| -> Vec<u8> {
        let t = text(whole);
        let at = t
            .find(&format!("UID {uid}"))
            .unwrap_or_else(|| panic!("no answer for UID {uid}: {t}"));
        // Both the provider and the gateway put the UID before the body.
        literal_after(&whole[at..], "BODY[]")
    };
    assert_eq!(answer_for(enc), served);
    assert_eq!(answer_for(plain), s.plain);
    assert_eq!(answer_for(forged), literal_after(&out[7], "BODY[]"));
    assert!(
        text(whole).contains(&format!("RFC822.SIZE {}", served.len())),
        "{}",
        text(whole)
    );
    assert_eq!(text(whole).matches("FLAGS (").count(), 3, "{}", text(whole));

    // A FETCH by sequence number (no UID asked for) is rewritten just the
    // same, and carries no UID the client did not ask for.
    let by_seq = text(&out[14]);
    assert!(by_seq.contains("Subject: the real subject"), "{by_seq}");
    assert!(by_seq.contains("Subject: plain one"), "{by_seq}");
    assert!(!by_seq.contains("UID"), "{by_seq}");

    // A second session (AUTHENTICATE PLAIN this time) gets the same bytes.
    let again = client(
        s.port,
        "plain:alicepw",
        &["select INBOX", &format!("uid_fetch {enc} (BODY.PEEK[])")],
    )
    .await;
    assert_eq!(literal_after(&again[2], "BODY[]"), served);
    // PLAIN on behalf of another user is refused, as SMTP refuses it: the
    // provider would be asked for one user and the mail served for another.
    let on_behalf = client(s.port, "onbehalf:alicepw", &["select INBOX"]).await;
    assert!(
        text(&on_behalf[0]).contains("LOGIN NO") && text(&on_behalf[0]).contains("behalf"),
        "{}",
        text(&on_behalf[0])
    );

    // The provider still holds only the ciphertext.
    let stored = s.dovecot.doveadm(&[
        "fetch",
        "-u",
        "alice",
        "text",
        "mailbox",
        "INBOX",
        "uid",
        &enc.to_string(),
    ]);
    assert!(!stored.contains("canary-inside"), "{stored}");
    assert_eq!(s.dovecot.uids("alice", "INBOX").len(), 3);
}

/// Raw IMAP (imaplib has no IDLE): log in, select, IDLE, print IDLING,
/// wait for an EXISTS, DONE. Prints the lines it received.
const IDLER: &str = r#"
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
f = s.makefile("rb")
def until(prefix):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("closed while waiting for " + prefix)
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()
        if line.startswith(prefix.encode()):
            return line
until("* OK")
s.sendall(b"a LOGIN alice alicepw\r\n"); until("a ")
s.sendall(b"b SELECT INBOX\r\n"); until("b ")
s.sendall(b"c IDLE\r\n"); until("+")
print("IDLING", flush=True)
while True:
    line = f.readline()
    sys.stdout.write(line.decode(errors="replace")); sys.stdout.flush()
    if b"EXISTS" in line:
        break
s.sendall(b"DONE\r\n"); until("c ")
s.sendall(b"d LOGOUT\r\n"); until("d ")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_announces_new_mail() {
    let s = setup().await;
    let port = s.port;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", IDLER])
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let wait = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let idling = line == "IDLING";
            seen.push(line);
            if idling {
                s.dovecot.save(
                    "alice",
                    "INBOX",
                    b"From: dave@example.net\r\nSubject: while idle\r\n\r\nnew\r\n",
                );
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), wait)
        .await
        .expect("the IDLE session finished");
    let status = child.wait().await.expect("idler");
    let all = seen.join("\n");
    assert!(status.success(), "{all}");
    assert!(all.contains("* 4 EXISTS"), "{all}");
    assert!(all.contains("c OK"), "{all}");
    assert!(all.contains("d OK"), "{all}");
}

/// mbsync (isync) pulls the mailbox through the proxy into a Maildir, then
/// pushes a flag change and a deletion back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_syncs_through_the_proxy() {
    let s = setup().await;
    let work = tempfile::tempdir().expect("tempdir");
    let maildir = work.path().join("mail");
    std::fs::create_dir_all(&maildir).expect("maildir");
    let config = work.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount gw\nHost 127.0.0.1\nPort {port}\nUser alice\nPass alicepw\nSSLType None\nAuthMechs LOGIN\n\n\
IMAPStore remote\nAccount gw\n\n\
MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\n\n\
Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nCreate Near\nSync All\nExpunge Both\nSyncState *\n",
            port = s.port,
            dir = maildir.display()
        ),
    )
    .expect("mbsyncrc");
    let run = |config: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            Command::new("mbsync")
                .arg("-c")
                .arg(&config)
                .arg("-a")
                .output()
                .expect("mbsync (run scripts/setup)")
        })
        .await
        .expect("mbsync task")
    };
    let out = run(config.clone()).await;
    assert!(
        out.status.success(),
        "mbsync: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let local: Vec<std::path::PathBuf> = ["cur", "new"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(maildir.join("INBOX").join(sub))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(local.len(), 3, "{local:?}");
    let contents: Vec<Vec<u8>> = local
        .iter()
        .map(|p| std::fs::read(p).expect("local message"))
        .collect();
    // The encrypted one arrives decrypted; the cleartext one byte for byte
    // (mbsync writes Maildir files with LF line ends and its own X-TUID).
    let lf = |m: &[u8]| {
        text(m)
            .replace("\r\n", "\n")
            .lines()
            .filter(|l| !l.starts_with("X-TUID: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(contents
        .iter()
        .any(|m| text(m).contains("canary-inside the ciphertext")));
    assert!(
        contents.iter().any(|m| lf(m) == lf(&s.plain)),
        "{:?}",
        contents.iter().map(|m| text(m)).collect::<Vec<_>>()
    );
    assert!(!contents
        .iter()
        .any(|m| text(m).contains("-----BEGIN PGP MESSAGE-----")));

    // Flag the plain one and delete the forged one locally; sync again.
    for path in &local {
        let body = std::fs::read(path).expect("read");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let base = name.split(":2,").next().unwrap_or(&name).to_string();
        let cur = maildir.join("INBOX").join("cur");
        if lf(&body) == lf(&s.plain) {
            std::fs::rename(path, cur.join(format!("{base}:2,F"))).expect("flag");
        } else if text(&body).contains("forged") {
            std::fs::remove_file(path).expect("delete");
        }
    }
    let out = run(config).await;
    assert!(
        out.status.success(),
        "second mbsync: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let uids = s.dovecot.uids("alice", "INBOX");
    assert_eq!(uids.len(), 2, "the deletion reached the provider");
    let flags = s.dovecot.doveadm(&[
        "-f", "flow", "fetch", "-u", "alice", "flags", "mailbox", "INBOX", "all",
    ]);
    assert!(flags.contains("\\Flagged"), "{flags}");
}

/// The provider connection of one session breaks: that client is told and
/// disconnected; a new session works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_provider_connection_ends_only_that_session() {
    let s = setup_with(Some(4000), None).await;
    let uid = s.dovecot.uids("alice", "INBOX")[1];
    let mut steps = vec!["select INBOX".to_string()];
    for _ in 0..80 {
        steps.push(format!("uid_fetch {uid} (BODY.PEEK[HEADER] FLAGS)"));
    }
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let broken = client(s.port, "alicepw", &steps).await;
    let all: Vec<String> = broken.iter().map(|b| text(b)).collect();
    assert_eq!(all[0], "LOGIN OK");
    assert!(
        all.iter().any(|l| l.starts_with("ERROR")),
        "the cut was not noticed: {all:?}"
    );
    // A fresh session (its own provider connection) is served.
    let fine = client(
        s.port,
        "alicepw",
        &["select INBOX", &format!("uid_fetch {uid} (BODY.PEEK[])")],
    )
    .await;
    assert_eq!(literal_after(&fine[2], "BODY[]"), s.plain);
}

/// Two accounts in one proxy, used at the same time: the login name picks
/// the account, and each reads its own mail with its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_at_once() {
    const CAROL: &str = "carol@example.org";
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let now = SystemTime::now() - Duration::from_secs(60);
    let alice = autocrypt::key::generate(ALICE, now).expect("alice");
    let carol = autocrypt::key::generate(CAROL, now).expect("carol");
    let bob = autocrypt::key::generate(BOB, now).expect("bob");
    for (address, cert) in [(ALICE, &alice), (CAROL, &carol)] {
        store
            .put_identity(address, cert, PreferEncrypt::Mutual, now)
            .await
            .expect("identity");
    }
    let archive = Archive::open(&store).await.expect("archive");
    let dovecot = tokio::task::spawn_blocking(|| {
        Dovecot::start(&[("alice", "alicepw"), ("carol", "carolpw")])
    })
    .await
    .expect("dovecot");
    for (user, to, cert) in [("alice", ALICE, &alice), ("carol", CAROL, &carol)] {
        let inner =
            format!("From: {BOB}\r\nTo: {to}\r\nSubject: for {user}\r\n\r\nonly for {user}\r\n");
        let message = mailcrypt::encrypt(
            inner.as_bytes(),
            &EncryptRequest::new(&bob, std::slice::from_ref(cert)),
        )
        .expect("encrypt");
        dovecot.save(user, "INBOX", &message);
    }
    let endpoint = Endpoint {
        host: "localhost".into(),
        port: dovecot.imaps_port,
        security: Security::Tls,
        ca_file: Some(dovecot.ca_file.clone()),
        pinned: None,
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        tls: None,
        provider_timeout: imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT,
        accounts: vec![
            AccountConfig {
                address: ALICE.into(),
                username: "alice".into(),
                provider: endpoint.clone(),
            },
            AccountConfig {
                address: CAROL.into(),
                username: "carol".into(),
                provider: endpoint,
            },
        ],
    };
    let proxy = Proxy::bind(config, store, archive).await.expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    tokio::spawn(proxy.run(std::future::pending(), std::time::Duration::from_secs(1)));

    let read = |user: &'static str, password: &'static str| async move {
        let script = format!(
            "import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',{port})\nm.login('{user}','{password}')\n\
             m.select('INBOX')\nt,d=m.uid('FETCH','1','(BODY.PEEK[])')\nsys.stdout.buffer.write(d[0][1])\nm.logout()\n"
        );
        tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .args(["-c", &script])
                .output()
                .expect("python3")
        })
        .await
        .expect("client")
    };
    let (a, c) = tokio::join!(read("alice", "alicepw"), read("carol", "carolpw"));
    let (a, c) = (text(&a.stdout), text(&c.stdout));
    assert!(
        a.contains("only for alice") && !a.contains("decryption=failed"),
        "{a}"
    );
    assert!(c.contains("only for carol"), "{c}");
    assert!(!a.contains("carol") && !c.contains("only for alice"));
}

/// A proxy whose client side offers STARTTLS with a local certificate, and
/// the PEM file a client trusts it by.
async fn setup_with_local_tls() -> (Setup, std::path::PathBuf) {
    let certificate =
        net_edge::LocalCertificate::generate(&["localhost", "127.0.0.1"]).expect("cert");
    let s = setup_with(None, Some(certificate.server_config().expect("tls"))).await;
    let ca = s._dir.path().join("local.pem");
    std::fs::write(&ca, certificate.cert_pem()).expect("pem");
    (s, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_starttls_is_required_before_the_password() {
    let (s, ca) = setup_with_local_tls().await;
    let enc = s.dovecot.uids("alice", "INBOX")[0];
    let out = client_over(
        s.port,
        "alicepw",
        Some(&ca),
        &[
            "select INBOX",
            &format!("uid_fetch {enc} (BODY.PEEK[TEXT])"),
        ],
    )
    .await;
    // The password was refused on the plain connection, with the fix.
    let refused = text(&out[0]);
    assert!(
        refused.starts_with("PRETLS LOGIN NO") && refused.contains("STARTTLS"),
        "{refused}"
    );
    // Over TLS: logged in, and the message reads decrypted.
    assert_eq!(text(&out[1]), "LOGIN OK");
    assert_eq!(text(&out[2]), "OK");
    assert!(
        text(&out[3]).contains("canary-inside the ciphertext"),
        "{}",
        text(&out[3])
    );
}

/// Messages larger than the TLS send buffer (64 KiB) cross both TLS links
/// whole: a 1 MiB draft saved over local STARTTLS reaches the provider over
/// TLS (encrypted) and reads back decrypted. imap-next hands rustls each
/// message in one piece, which failed past 64 KiB ("The connection to your
/// provider was lost" for every Sent copy with an attachment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_64_kib_cross_both_tls_links() {
    let (s, ca) = setup_with_local_tls().await;
    let out = client_over(
        s.port,
        "alicepw",
        Some(&ca),
        &[
            "append_large Drafts 1024",
            "select Drafts",
            "fetch 1 (BODY.PEEK[])",
        ],
    )
    .await;
    assert_eq!(text(&out[1]), "LOGIN OK");
    assert!(text(&out[2]).starts_with("OK"), "{}", text(&out[2]));
    assert_eq!(text(&out[3]), "OK");
    let body = literal_after(&out[4], "BODY[]");
    assert!(
        body.len() > 1024 * 1024 && text(&body).contains("canary-large"),
        "{} bytes served: {}",
        body.len(),
        text(&out[4]).chars().take(300).collect::<String>()
    );
    let stored = s
        .dovecot
        .doveadm(&["fetch", "-u", "alice", "text", "mailbox", "Drafts", "all"]);
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("canary-large"),
        "the provider holds plaintext"
    );
}

/// Mail nobody has read yet, fetched by many sessions of one account at
/// once (Thunderbird keeps several; new mail reaches all of them): every
/// session gets every size and the decrypted message, sizes agree with the
/// bytes served, and the archive holds each message once at one location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_mail_fetched_by_many_sessions_at_once() {
    const SESSIONS: usize = 8;
    let s = setup().await;
    const STEPS: &[&str] = &[
        "select INBOX",
        "fetch 1:* (UID RFC822.SIZE)",
        "uid_fetch 1 (BODY.PEEK[])",
    ];
    let sessions = (0..SESSIONS).map(|_| client(s.port, "alicepw", STEPS));
    let answers = futures_join_all(sessions).await;
    for out in &answers {
        let sizes = text(&out[2]);
        assert_eq!(sizes.matches("RFC822.SIZE").count(), 3, "{sizes}");
        let body = literal_after(&out[3], "BODY[]");
        assert!(text(&body).contains("canary-inside"), "{}", text(&body));
        let uid1 = sizes
            .split(')')
            .find(|answer| answer.contains("UID 1 "))
            .unwrap_or_else(|| panic!("no answer for UID 1 in {sizes}"));
        assert!(
            uid1.contains(&format!("RFC822.SIZE {}", body.len())),
            "{uid1} but BODY[] has {} bytes",
            body.len()
        );
    }
    let archive = Archive::open(&s.store).await.expect("archive");
    // The encrypted message and the one cleaned of a forged status header.
    assert_eq!(archive.counts().await.expect("counts"), (2, 2));
}

/// A mailbox told apart once: later FETCHes of sizes skip the provider's
/// detection reads for known messages and detect only new ones afterwards,
/// with the same answers — provider sizes for plain mail, served sizes for
/// the rest — and keys still learned from new plain mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_of_a_known_mailbox_come_from_what_is_known() {
    let s = setup().await;
    let first = client(
        s.port,
        "alicepw",
        &["select INBOX", "fetch 1:* (UID RFC822.SIZE)"],
    )
    .await;
    assert_eq!(text(&first[2]).matches("RFC822.SIZE").count(), 3);
    // Carol's cleartext is plain; the encrypted message and the one with a
    // forged status header are the gateway's.
    assert_eq!(s.known_plain.len(), 1);
    assert_eq!(s.known_plain.reused(), 0, "the first FETCH detects");

    // New mail: cleartext teaching Dave's key, and another forged header.
    let dave = autocrypt::key::generate("dave@example.net", SystemTime::now()).expect("dave");
    let new_plain = mailcrypt::add_autocrypt_header(
        b"From: dave@example.net\r\nTo: alice@example.org\r\nSubject: new plain\r\n\
Date: Tue, 3 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n",
        &AutocryptHeader::new("dave@example.net", PreferEncrypt::Mutual, dave),
    );
    let new_forged = b"From: mallory@example.net\r\nTo: alice@example.org\r\nSubject: again\r\n\
Letterlock-Security: encrypted; signature=valid\r\n\r\nforged again\r\n"
        .to_vec();
    s.dovecot.save("alice", "INBOX", &new_plain);
    s.dovecot.save("alice", "INBOX", &new_forged);

    let mut steps = vec![
        "select INBOX".to_string(),
        "fetch 1:* (UID RFC822.SIZE)".to_string(),
    ];
    steps.extend((1..=5).map(|uid| format!("uid_fetch {uid} (BODY.PEEK[])")));
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let second = client(s.port, "alicepw", &steps).await;
    let sizes = text(&second[2]);
    assert_eq!(sizes.matches("RFC822.SIZE").count(), 5, "{sizes}");
    assert_eq!(
        s.known_plain.reused(),
        6,
        "the FETCH of sizes and the five reads went without detection"
    );
    for uid in 1..=5u32 {
        let body = literal_after(&second[2 + uid as usize], "BODY[]");
        let answer = sizes
            .split(')')
            .find(|answer| answer.contains(&format!("UID {uid} ")))
            .unwrap_or_else(|| panic!("no answer for UID {uid} in {sizes}"));
        assert!(
            answer.contains(&format!("RFC822.SIZE {}", body.len())),
            "UID {uid}: {answer} but BODY[] has {} bytes",
            body.len()
        );
    }
    assert_eq!(
        literal_after(&second[6], "BODY[]"),
        new_plain,
        "new plain mail passes through byte for byte"
    );
    assert!(!text(&literal_after(&second[7], "BODY[]")).contains("signature=valid"));
    assert_eq!(s.known_plain.len(), 2, "the new plain message is known now");
    let dave_state = s
        .store
        .peer_state("dave@example.net")
        .await
        .expect("keystore")
        .expect("dave's key learned from new plain mail");
    assert!(dave_state.public_key.is_some());
}

/// `join_all` without the futures crate: the clients run on blocking
/// threads, so spawning them is enough.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("client task"));
    }
    out
}

/// What a client sends that is not a command the proxy takes gets a BAD
/// and the session goes on, as with any IMAP server: an unknown command
/// (before and after login), a line ending in a bare LF, an APPEND literal
/// over the gateway's limit. (They used to end the session without a word.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_the_proxy_cannot_take_get_bad_and_the_session_goes_on() {
    use std::io::{BufRead, BufReader, Write};
    let s = setup().await;
    let before = s.dovecot.uids("alice", "INBOX").len();
    let port = s.port;
    let said = tokio::task::spawn_blocking(move || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        let mut greeting = String::new();
        reader.read_line(&mut greeting).expect("greeting");
        let mut answers = Vec::new();
        for (tag, line) in [
            ("a", "a FROBNICATE now\r\n"),
            ("b", "b LOGIN alice alicepw\r\n"),
            ("c", "c XYZZY INBOX\r\n"),
            ("d", "d NOOP\n"),
            ("e", "e APPEND INBOX {70000000}\r\n"),
            ("f", "f NOOP\r\n"),
        ] {
            writer.write_all(line.as_bytes()).expect("write");
            // Untagged lines (capabilities, BYE) are skipped; the tagged
            // answer is kept.
            loop {
                let mut answer = String::new();
                if reader.read_line(&mut answer).expect("read") == 0 {
                    answers.push(format!("{tag}: connection closed"));
                    break;
                }
                if answer.starts_with(&format!("{tag} ")) {
                    answers.push(answer.trim_end().to_string());
                    break;
                }
            }
        }
        answers
    })
    .await
    .expect("client");
    let expected = [
        "a BAD Unknown or malformed command",
        "b OK",
        "c BAD Unknown or malformed command",
        "d BAD Unknown or malformed command",
        "e BAD The message is larger than the gateway takes (64 MiB)",
        "f OK",
    ];
    for (answer, expected) in said.iter().zip(expected) {
        assert!(
            answer.starts_with(expected),
            "{answer:?} is not {expected:?}: {said:#?}"
        );
    }
    assert_eq!(said.len(), expected.len(), "{said:#?}");
    assert_eq!(s.dovecot.uids("alice", "INBOX").len(), before);
}

/// An IDLE pipelined while the proxy drains the answers to a long FETCH is
/// answered after it. The FETCH asks for a section of encrypted messages
/// not archived yet, so the proxy downloads and views them after the
/// provider's completion and writes them out to a client with a small
/// receive window that stops reading once the first arrives and then sends
/// IDLE. (imap-next's server decodes a command only once nothing waits to be
/// sent, so the IDLE is taken after the drain, by the one handler
/// `take_client_event`; a drain that dropped it could not be caught here,
/// and the historic drain never ran at all, since it counted 6 of 27 sends.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pipelined_while_the_proxy_drains_a_long_fetch_is_answered() {
    const PIPELINER: &str = r#"
import socket, sys, time
# A small receive window: the proxy's answers back up after a few,
# so it is still draining them when the IDLE comes.
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(60)
s.connect(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
def until(prefix):
    while True:
        line = f.readline()
        if not line:
            sys.exit("connection closed waiting for %r" % prefix)
        if line.startswith(prefix):
            return line
f.readline()
s.sendall(b"a LOGIN alice alicepw\r\n"); until(b"a ")
s.sendall(b"b SELECT INBOX\r\n"); until(b"b OK")
s.sendall(b"c UID FETCH 1:* (BODY.PEEK[TEXT])\r\n")
# The first bulk message's text: the proxy downloaded and viewed them
# and is now writing them out.
while b"xxxxxxxxxx" not in f.readline():
    pass
# The answer is on its way; the client stops reading (its buffers fill,
# the proxy's answers pile up and it drains) and pipelines IDLE meanwhile.
s.sendall(b"d IDLE\r\n")
time.sleep(4)
until(b"c OK")
print(until(b"+").decode().strip(), flush=True)
s.sendall(b"DONE\r\n")
print(until(b"d ").decode().strip(), flush=True)
"#;
    let s = setup().await;
    let alice = s.store.identity(ALICE).await.expect("alice").cert;
    let dave = autocrypt::key::generate("dave@example.net", SystemTime::now()).expect("dave");
    let filler = "x".repeat(76);
    let body: String = (0..2000).map(|_| format!("{filler}\r\n")).collect();
    for i in 0..100 {
        let inner = format!("From: dave@example.net\r\nSubject: bulk {i}\r\n\r\n{body}");
        let sealed = mailcrypt::encrypt(
            inner.as_bytes(),
            &EncryptRequest {
                pad: false,
                ..EncryptRequest::new(&dave, std::slice::from_ref(&alice))
            },
        )
        .expect("encrypt");
        s.dovecot.save("alice", "INBOX", &sealed);
    }
    let text = script_against(PIPELINER, s.port, Duration::from_secs(120)).await;
    assert!(text.contains("d OK"), "{text}");
}

/// What the provider says unasked (new mail, an expunge, a flag change)
/// while the gateway runs its own commands for a client's FETCH (detecting
/// and downloading encrypted mail) belongs to that client. Dovecot holds an
/// expunge back during a FETCH by sequence number and tells it at the next
/// command that may carry one: here, the gateway's own UID FETCH. Were it
/// swallowed there, the client would count messages that are gone (and
/// take later sequence numbers for the wrong messages), or never see new
/// mail until it reconnects: Thunderbird's new-mail-while-open went missing
/// this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_provider_says_during_the_gateways_own_commands_reaches_the_client() {
    const TWO_SESSIONS: &str = r#"
import imaplib, json, sys
port = int(sys.argv[1])
def session():
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "alicepw")
    m.select("INBOX")
    return m
reader, other = session(), session()
reader.untagged_responses.clear()
# Meanwhile, in another session: one message gone, one flagged, one new.
other.store("3", "+FLAGS", "(\\Deleted)")
other.expunge()
other.store("2", "+FLAGS", "(\\Flagged)")
other.append("INBOX", None, None, b"From: dave@example.net\r\nSubject: new\r\n\r\nnew\r\n")
other.logout()
# The encrypted message, never seen before: the gateway detects and
# downloads it with its own UID FETCH before it answers.
typ, data = reader.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
heard = {k: [v.decode() if isinstance(v, bytes) else str(v) for v in vs]
         for k, vs in reader.untagged_responses.items()}
reader.untagged_responses.clear()
reader.noop()
after = {k: [v.decode() if isinstance(v, bytes) else str(v) for v in vs]
         for k, vs in reader.untagged_responses.items()}
# imaplib hands every FETCH response of the command back as its data,
# the unasked ones too.
subject = b"".join(d[1] for d in data if isinstance(d, tuple)).decode()
fetched = [(d[0] if isinstance(d, tuple) else d).decode() for d in data if d]
heard.setdefault("FETCH", []).extend(f for f in fetched if "BODY" not in f)
print(json.dumps({"fetch": typ, "subject": subject, "during": heard, "after": after}))
reader.logout()
"#;
    let s = setup().await;
    let text = script_against(TWO_SESSIONS, s.port, Duration::from_secs(60)).await;
    let seen: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON");
    assert_eq!(seen["fetch"], "OK", "{seen}");
    assert!(
        seen["subject"]
            .as_str()
            .unwrap_or_default()
            .contains("the real subject"),
        "{seen}"
    );
    // Told once, in the FETCH or at the NOOP after it: never lost.
    let told = |name: &str| -> Vec<String> {
        ["during", "after"]
            .iter()
            .flat_map(|when| seen[when][name].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(told("EXPUNGE"), ["3"], "{seen}");
    // Three, one gone, one new: told as four, then the expunge.
    assert!(told("EXISTS").contains(&"4".to_string()), "{seen}");
    assert!(
        told("FETCH").iter().any(|f| f.contains("Flagged")),
        "{seen}"
    );
}

/// A UID SEARCH in a mailbox where encrypted and plain messages alternate:
/// the set of encrypted UIDs is as long as the mailbox, and a provider caps
/// command lines (Dovecot at 64 KiB by default, here at 4 KiB, with 2,000
/// messages, to meet the same cap at a test's size). The answer never puts
/// such a set on a line: each criterion goes to the provider on its own and
/// the sets come back as responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_in_a_large_mixed_mailbox_stays_under_the_providers_line_cap() {
    const MESSAGES: u32 = 2_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now() - Duration::from_secs(60);
    let (store, _alice) = common::vault_with_identity(dir.path(), ALICE, now).await;
    let archive = Archive::open(&store).await.expect("archive");
    let dovecot = tokio::task::spawn_blocking(|| {
        Dovecot::start_with_config(&[("alice", "alicepw")], "imap_max_line_length = 4k\n")
    })
    .await
    .expect("dovecot");
    // One message through doveadm makes the maildir with the mail user's
    // ownership; the rest are written straight into it (a doveadm per
    // message would take minutes).
    let plain = |n: u32| {
        format!(
            "From: carol@example.net\r\nTo: {ALICE}\r\nSubject: note {n}\r\n\
             Message-ID: <n{n}@example.net>\r\n\r\nan ordinary message\r\n"
        )
    };
    dovecot.save("alice", "INBOX", plain(1).as_bytes());
    let maildir = dovecot.mail_dir("alice");
    let owner = std::fs::metadata(&maildir).expect("maildir");
    use std::os::unix::fs::MetadataExt;
    for n in 2..=MESSAGES {
        let path = maildir.join("new").join(format!("{n}.M{n}P1.test"));
        std::fs::write(&path, plain(n)).expect("message");
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("chown");
    }
    let uids = dovecot.uids("alice", "INBOX");
    assert_eq!(uids.len(), MESSAGES as usize);
    let uidvalidity = dovecot.uidvalidity("alice", "INBOX");
    // Every odd UID stands for an encrypted message the gateway has read:
    // what it says is in the archive, and a quarter of them say "zanzibar".
    let mut stores = tokio::task::JoinSet::new();
    for uid in uids.iter().copied().filter(|u| u % 2 == 1) {
        let archive = archive.clone();
        stores.spawn(async move {
            let word = if uid % 4 == 1 { "zanzibar" } else { "nothing" };
            let served = format!(
                "From: bob@example.org\r\nTo: {ALICE}\r\nSubject: trip {uid}\r\n\r\n\
                 the plan for {word}\r\n"
            );
            let location = archive::Location {
                account: ALICE.into(),
                mailbox: "INBOX".into(),
                uidvalidity,
                uid,
            };
            let hash = archive::content_hash(format!("ciphertext {uid}").as_bytes());
            archive
                .store(&location, &hash, served.as_bytes(), true)
                .await
                .expect("store");
        });
    }
    while let Some(done) = stores.join_next().await {
        done.expect("store task");
    }
    let proxy = common::start(
        vec![common::account_at(&dovecot, ALICE, "alice")],
        imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT,
        &store,
        &archive,
    )
    .await;
    let port = proxy.port;

    let too_many = (1..=65)
        .map(|n| format!("SUBJECT w{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let too_many = format!("search {too_many}");
    let out = client(
        port,
        "alicepw",
        &[
            "select INBOX",
            "search TEXT zanzibar",
            "search OR TEXT zanzibar BODY ordinary",
            "search NOT TEXT zanzibar",
            "search UID 1:100 SUBJECT trip",
            "search_seq TEXT zanzibar",
            &too_many,
            "search SUBJECT trip UID 1:9",
        ],
    )
    .await;
    let found = |i: usize| -> Vec<u32> {
        let said = text(&out[i]);
        assert!(!said.starts_with("ERROR"), "{said}");
        said.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let zanzibar: Vec<u32> = uids.iter().copied().filter(|u| u % 4 == 1).collect();
    assert_eq!(found(2), zanzibar);
    let either: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| u % 2 == 0 || u % 4 == 1)
        .collect();
    assert_eq!(found(3), either);
    let not: Vec<u32> = uids.iter().copied().filter(|u| u % 4 != 1).collect();
    assert_eq!(found(4), not);
    let trips: Vec<u32> = (1..=100).filter(|u| u % 2 == 1).collect();
    assert_eq!(found(5), trips);
    // By sequence number too (here UID n is message n).
    assert_eq!(uids, (1..=MESSAGES).collect::<Vec<_>>());
    assert_eq!(found(6), zanzibar);
    // A search with more criteria than the gateway takes is refused (NO) in
    // a sentence, and the session goes on.
    let refused = text(&out[7]);
    assert!(refused.contains("at most 64"), "{refused}");
    assert_eq!(found(8), vec![1, 3, 5, 7, 9]);
    // What the rewrite used to send is over this provider's cap.
    let encrypted: Vec<String> = uids
        .iter()
        .filter(|u| *u % 2 == 1)
        .map(u32::to_string)
        .collect();
    assert!(encrypted.join(",").len() > 4096);
    proxy.stop().await;
}
