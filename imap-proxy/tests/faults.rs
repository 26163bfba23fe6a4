//! Faults at the provider and at the client, with another client's session
//! (to a real Dovecot) going on undisturbed:
//! - a provider that answers with something no parser reads has that
//!   answer left out: the command ends NO saying so (a SELECT stays OK,
//!   with an untagged NO) and the session goes on;
//! - a provider that misbehaves after login — a literal announced as 4 GB
//!   that stalls after 190 MiB, a dropped connection — ends that session
//!   with a BYE that says why, within bounded memory;
//! - a provider that fails at each step (greeting, LOGIN, inside a FETCH
//!   literal, APPEND out of space, its literal refused, dropped or stalled
//!   around it) is never taken for success, and only ciphertext reached it;
//! - a real Dovecot out of space refuses a large draft, and the session
//!   goes on;
//! - a client gone inside an APPEND literal stores nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::PreferEncrypt;
use imap_proxy::proxy::AccountConfig;
use imap_proxy::upstream::{Endpoint, Security};
use keystore::{Keystore, Unlock};
use testbed::Dovecot;

mod common;

/// argv: port [greeting [dir]]. A plain IMAP server whose LOGIN name picks
/// the fault it shows later; `greeting` (ok, drop, stall, garbage) is what
/// every connection gets first. The literal of every APPEND it receives is
/// written to a file in `dir`. Prints READY once listening.
const HOSTILE: &str = r#"
import os, re, socket, sys, threading, time
port = int(sys.argv[1])
greeting = sys.argv[2] if len(sys.argv) > 2 else "ok"
stored = sys.argv[3] if len(sys.argv) > 3 else None
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
print("READY", flush=True)
appends = [0]
def record(data):
    if stored:
        appends[0] += 1
        with open(os.path.join(stored, "%d-%d" % (port, appends[0])), "wb") as out:
            out.write(data)
def serve(c):
    if greeting == "drop":
        c.close()
        return
    if greeting == "stall":
        time.sleep(3600)
        return
    if greeting == "garbage":
        c.sendall(b"\x00\xff\xfe not an IMAP greeting\r\n")
        time.sleep(3600)
        return
    f = c.makefile("rb")
    c.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE] hostile ready\r\n")
    mode = ""
    try:
        while True:
            line = f.readline()
            if not line:
                return
            words = line.split()
            if len(words) < 2:
                continue
            tag, verb = words[0], words[1].upper()
            if verb == b"UID" and len(words) > 2:
                verb = words[2].upper()
            if verb == b"LOGIN":
                mode = words[2].strip(b'"').decode()
                if mode == "login-drop":
                    c.close()
                    return
                if mode == "login-stall":
                    time.sleep(3600)
                    return
                c.sendall(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
            elif verb == b"CAPABILITY":
                c.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
            elif verb in (b"SELECT", b"FETCH") and mode == "malformed":
                # An answer no parser reads, then the completion.
                c.sendall(b"* 1 FETCH (((( \x00\xff not IMAP at all\r\n"
                          + tag + b" OK [READ-WRITE] done\r\n")
            elif verb == b"SELECT" and mode == "huge":
                c.sendall(b"* 1 FETCH (BODY[] {4000000000}\r\n")
                junk = b"x" * 65536
                for _ in range(3000):  # at most ~190 MiB, then give up
                    c.sendall(junk)
            elif verb == b"SELECT" and mode == "drop":
                c.close()
                return
            elif verb == b"SELECT" and mode == "select-literal-refused" and line.endswith(b"}\r\n"):
                c.sendall(tag + b" NO [CANNOT] No such mailbox\r\n")
            elif verb == b"SELECT" and mode == "fetch-cut":
                c.sendall(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                          + tag + b" OK [READ-WRITE] selected\r\n")
            elif verb == b"FETCH" and mode == "fetch-cut":
                # A message announced as 200 bytes, cut after 80.
                c.sendall(b"* 1 FETCH (UID 1 BODY[] {200}\r\nFrom: bob@example.org\r\n"
                          + b"Subject: cut\r\n\r\nthe first part of the body, then")
                c.close()
                return
            elif verb == b"APPEND":
                m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
                if not m:
                    c.sendall(tag + b" BAD no literal\r\n")
                    continue
                size = int(m.group(1))
                if mode == "append-refused" and not m.group(2):
                    # A refusal instead of the go-ahead (RFC 7889's TOOBIG).
                    c.sendall(tag + b" NO [TOOBIG] The message is too large for this mailbox\r\n")
                    continue
                if not m.group(2):
                    c.sendall(b"+ go ahead\r\n")
                if mode == "append-mid":
                    record(f.read(size // 2))
                    c.close()
                    return
                record(f.read(size))
                f.readline()  # the end of the command line
                if mode == "append-quota":
                    c.sendall(tag + b" NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n")
                elif mode == "append-drop":
                    c.close()
                    return
                elif mode == "append-stall":
                    time.sleep(3600)
                    return
                else:
                    c.sendall(tag + b" OK [APPENDUID 7 1] stored\r\n")
            else:
                c.sendall(tag + b" OK done\r\n")
    except OSError:
        pass
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// argv: port user password [pause]. Logs in, selects INBOX, waits `pause`
/// seconds, fetches the subjects; prints what happened, one line each.
const CLIENT: &str = r#"
import imaplib, sys, time
port, user, password = sys.argv[1:4]
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0
m = imaplib.IMAP4("127.0.0.1", int(port), timeout=60)
try:
    print("LOGIN", m.login(user, password)[0])
    print("SELECT", m.select("INBOX")[0])
    time.sleep(pause)
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    said = [d[1] if isinstance(d, tuple) else d for d in data if d]
    print("FETCH", typ, b" ".join(said).decode().strip())
    print("LOGOUT", m.logout()[0])
except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError, TimeoutError) as e:
    print("ENDED", e)
"#;

fn client(port: u16, user: &str, password: &str, pause: u32) -> std::process::Child {
    Command::new("python3")
        .args(["-c", CLIENT])
        .args([
            port.to_string(),
            user.into(),
            password.into(),
            pause.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3")
}

fn output(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A new keystore in `dir`, and a Dovecot where Alice has one message.
async fn alice_at_dovecot(dir: &Path) -> (Keystore, Dovecot) {
    let store = Keystore::create(dir, Unlock::KeyFile).await.expect("vault");
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");
    dovecot.save(
        "alice",
        "INBOX",
        b"From: bob@example.org\r\nSubject: still here\r\n\r\nhello\r\n",
    );
    (store, dovecot)
}

/// A running proxy (provider timeout 3 s) for Alice at `dovecot` and for
/// one account per (login name, hostile server port), each with its own
/// key: the proxy and its archive.
async fn proxy_for(
    store: &Keystore,
    dovecot: &Dovecot,
    hostile: &[(&str, u16)],
) -> (common::Running, Archive) {
    let now = SystemTime::now() - Duration::from_secs(60);
    let mut accounts = vec![common::account_at(dovecot, "alice@example.org", "alice")];
    for &(name, port) in hostile {
        accounts.push(AccountConfig {
            address: format!("{name}@example.net"),
            username: name.into(),
            provider: Endpoint {
                host: "127.0.0.1".into(),
                port,
                security: Security::Plain,
                ca_file: None,
                pinned: None,
            },
        });
    }
    for account in &accounts {
        let key = autocrypt::key::generate(&account.address, now).expect("key");
        store
            .put_identity(&account.address, &key, PreferEncrypt::Mutual, now)
            .await
            .expect("identity");
    }
    let archive = Archive::open(store).await.expect("archive");
    let proxy = common::start(accounts, Duration::from_secs(3), store, &archive).await;
    (proxy, archive)
}

/// Starts the hostile server with `greeting`, recording APPENDs in `dir`;
/// its port, and the process (stopped when dropped).
fn hostile(greeting: &str, dir: &Path) -> (u16, KilledOnDrop) {
    use std::io::BufRead;
    let port = testbed::free_port();
    let mut server = KilledOnDrop(
        Command::new("python3")
            .args(["-c", HOSTILE, &port.to_string(), greeting])
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut ready = String::new();
    std::io::BufReader::new(server.0.stdout.as_mut().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready");
    assert_eq!(ready.trim(), "READY");
    (port, server)
}

/// The resident set of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_provider_ends_only_its_own_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, dovecot) = alice_at_dovecot(dir.path()).await;

    let (hostile_port, _hostile) = hostile("ok", dir.path());

    let hostile_accounts = ["malformed", "huge", "drop"].map(|fault| (fault, hostile_port));
    let (proxy, _) = proxy_for(&store, &dovecot, &hostile_accounts).await;
    let port = proxy.port;

    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LETTERLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let before = rss_kib();
    let alice = tokio::task::spawn_blocking(move || output(client(port, "alice", "alicepw", 4)));
    let faults = tokio::task::spawn_blocking(move || {
        ["malformed", "huge", "drop"].map(|fault| (fault, output(client(port, fault, "pw", 0))))
    });
    let faults = faults.await.expect("faults");
    let peak = rss_kib();
    for (fault, out) in &faults {
        assert!(out.contains("LOGIN OK"), "{fault}: {out}");
        assert!(!out.contains("Traceback"), "{fault}: {out}");
        if *fault != "malformed" {
            assert!(out.contains("ENDED"), "{fault}: the session went on: {out}");
        }
    }
    let said = |fault: &str| {
        faults
            .iter()
            .find(|(f, _)| *f == fault)
            .map(|(_, o)| o.clone())
    };
    // The unreadable answer was left out and said so; the session went on.
    let malformed = said("malformed").unwrap_or_default();
    assert!(malformed.contains("SELECT OK"), "{malformed}");
    assert!(
        malformed.contains("FETCH NO") && malformed.contains("could not be read"),
        "{malformed}"
    );
    assert!(
        malformed.contains("LOGOUT") && !malformed.contains("ENDED"),
        "{malformed}"
    );
    let huge = said("huge").unwrap_or_default();
    assert!(huge.contains("stopped answering"), "{huge}");
    assert!(
        said("drop")
            .unwrap_or_default()
            .contains("connection to your provider was lost"),
        "{:?}",
        said("drop")
    );
    // The literal was not buffered beyond the 160 MiB response limit.
    assert!(
        peak.saturating_sub(before) < 240 * 1024,
        "memory grew from {before} to {peak} KiB"
    );

    // Alice's session, open all along, was not disturbed.
    let alice = alice.await.expect("alice");
    assert!(alice.contains("FETCH OK Subject: still here"), "{alice}");

    proxy.stop().await;
}

/// The hostile server, stopped however the test ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client that goes away in the middle of an APPEND literal (a laptop lid
/// closed while Thunderbird saves to Sent), with and without LITERAL+:
/// nothing reaches the provider, neither the partial message nor its
/// plaintext, and the next APPEND works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_literal_stores_nothing() {
    use std::io::{BufRead, BufReader, Write};

    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now() - Duration::from_secs(60);
    let (store, _) = common::vault_with_identity(dir.path(), "alice@example.org", now).await;
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");
    let archive = Archive::open(&store).await.expect("archive");
    let proxy = common::start(
        vec![common::account_at(&dovecot, "alice@example.org", "alice")],
        Duration::from_secs(3),
        &store,
        &archive,
    )
    .await;
    let port = proxy.port;

    let message = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: draft\r\n\r\n\
                   canary-mid-literal: the first half of a draft\r\n"
        .repeat(40);
    for literal_plus in [false, true] {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).expect("greeting");
        writer
            .write_all(b"l LOGIN alice alicepw\r\n")
            .expect("login");
        loop {
            line.clear();
            reader.read_line(&mut line).expect("login reply");
            if line.starts_with("l ") {
                assert!(line.starts_with("l OK"), "{line}");
                break;
            }
        }
        let plus = if literal_plus { "+" } else { "" };
        writer
            .write_all(format!("a APPEND INBOX {{{}{plus}}}\r\n", message.len()).as_bytes())
            .expect("append");
        if !literal_plus {
            line.clear();
            reader.read_line(&mut line).expect("continuation");
            assert!(line.starts_with('+'), "{line}");
        }
        writer
            .write_all(&message.as_bytes()[..message.len() / 2])
            .expect("half");
        drop(writer);
        drop(reader);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        dovecot.uids("alice", "INBOX").is_empty(),
        "a partial message was stored"
    );

    // The proxy serves the next client as usual.
    let appended = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                "-c",
                "import imaplib,sys\n\
                 m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]), timeout=60)\n\
                 m.login('alice', 'alicepw')\n\
                 print(m.append('INBOX', None, None, b'From: alice@example.org\\r\\nSubject: whole\\r\\n\\r\\nall of it\\r\\n')[0])\n",
                &port.to_string(),
            ])
            .output()
            .expect("python3")
    })
    .await
    .expect("client");
    assert_eq!(String::from_utf8_lossy(&appended.stdout).trim(), "OK");
    assert_eq!(dovecot.uids("alice", "INBOX").len(), 1);
    let stored = dovecot.doveadm(&["fetch", "-u", "alice", "text", "mailbox", "INBOX", "all"]);
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("canary-mid-literal"),
        "{stored}"
    );
    proxy.stop().await;
}

/// argv: port user action. Logs in and then `fetch`es message 1 of INBOX or
/// `append`s a draft to Drafts (and asks NOOP); prints each step's result, `NO …` for a
/// refusal and `ENDED …` for a session that ended.
const STEP_CLIENT: &str = r#"
import imaplib, sys
port, user, action = sys.argv[1:4]
draft = (b"From: someone@example.net\r\nTo: bob@example.org\r\nSubject: draft\r\n\r\n"
         + b"canary-provider-fault: words of a draft\r\n" * 20)
try:
    m = imaplib.IMAP4("127.0.0.1", int(port), timeout=60)
    print("LOGIN", m.login(user, "pw")[0])
    if action == "fetch":
        print("SELECT", m.select("INBOX")[0])
        print("FETCH", m.fetch("1", "(BODY.PEEK[])")[0])
    elif action == "select-literal":
        # A mailbox name only a literal can carry (8-bit).
        m.literal = "Entw\u00fcrfe".encode()
        typ, data = m._simple_command("SELECT")
        print("SELECT", typ, b" ".join(d for d in data if d).decode(errors="replace"))
        print("NOOP", m.noop()[0])
    elif action == "select-nonsync":
        name = "Entw\u00fcrfe".encode()
        m.send(b"x1 SELECT {%d+}\r\n" % len(name) + name + b"\r\n")
        line = m.readline()
        while line and not line.startswith(b"x1 "):
            line = m.readline()
        print("SELECT", line.decode(errors="replace").strip())
        print("NOOP", m.noop()[0])
    elif action == "append":
        typ, data = m.append("Drafts", None, None, draft)
        print("APPEND", typ, b" ".join(data).decode(errors="replace"))
        print("NOOP", m.noop()[0])
    m.logout()
except imaplib.IMAP4.abort as e:
    print("ENDED", e)
except imaplib.IMAP4.error as e:
    print("NO", e)
except (OSError, TimeoutError) as e:
    print("ENDED", e)
"#;

/// A provider that fails at each step of a session — at the greeting
/// (drops, stalls, sends garbage), at LOGIN (drops, stalls), inside a FETCH
/// literal (cut short), at APPEND (out of space, drops after the literal,
/// stalls, drops inside the literal). Each client is told in a sentence,
/// within the provider timeout; no APPEND is acknowledged that the provider
/// did not accept; what reached the provider was ciphertext only; and a
/// session to a working provider goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_at_every_step_is_never_taken_for_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let received = dir.path().join("received");
    std::fs::create_dir(&received).expect("dir");
    let (store, dovecot) = alice_at_dovecot(dir.path()).await;
    // (login name = fault, the greeting its server gives, what the client does)
    let faults = [
        ("greeting-drop", "drop", "fetch"),
        ("greeting-stall", "stall", "fetch"),
        ("greeting-garbage", "garbage", "fetch"),
        ("login-drop", "ok", "fetch"),
        ("login-stall", "ok", "fetch"),
        ("fetch-cut", "ok", "fetch"),
        ("append-quota", "ok", "append"),
        ("append-drop", "ok", "append"),
        ("append-stall", "ok", "append"),
        ("append-mid", "ok", "append"),
        ("append-refused", "ok", "append"),
        ("select-literal-refused", "ok", "select-literal"),
        ("select-nonsync", "ok", "select-nonsync"),
    ];
    let mut servers = std::collections::BTreeMap::new();
    for greeting in ["ok", "drop", "stall", "garbage"] {
        servers.insert(greeting, hostile(greeting, &received));
    }
    let hostile_accounts: Vec<_> = faults
        .iter()
        .map(|&(fault, greeting, _)| (fault, servers[greeting].0))
        .collect();
    let (proxy, archive) = proxy_for(&store, &dovecot, &hostile_accounts).await;
    let port = proxy.port;

    let alice = tokio::task::spawn_blocking(move || output(client(port, "alice", "alicepw", 6)));
    let started = std::time::Instant::now();
    let runs: Vec<_> = faults
        .iter()
        .map(|&(fault, _, action)| {
            let child = Command::new("python3")
                .args(["-c", STEP_CLIENT, &port.to_string(), fault, action])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python3");
            (fault, tokio::task::spawn_blocking(move || output(child)))
        })
        .collect();
    let mut failures = Vec::new();
    for (fault, run) in runs {
        let out = run.await.expect("client");
        if out.contains("Traceback") || out.trim().is_empty() {
            failures.push(format!("{fault}: {out:?}"));
        }
        // Never a success for what the provider did not do.
        let wrong = if fault.starts_with("append") {
            "APPEND OK"
        } else if fault.starts_with("select") {
            "SELECT OK"
        } else if fault.starts_with("fetch") {
            "FETCH OK"
        } else {
            "LOGIN OK"
        };
        if out.contains(wrong) {
            failures.push(format!("{fault}: the client was told {wrong}: {out:?}"));
        }
        // A sentence that names the provider (the quota refusal is the
        // provider's own, passed on).
        let told = if fault == "append-quota" {
            // Refused after the message was taken: the session goes on.
            out.contains("APPEND NO [OVERQUOTA]") && out.contains("NOOP OK")
        } else if fault == "select-nonsync" {
            // Refused by the proxy: the provider takes no LITERAL+.
            out.contains("SELECT x1 BAD") && out.contains("LITERAL+") && out.contains("NOOP OK")
        } else if fault == "append-refused" || fault == "select-literal-refused" {
            // The provider's refusal, then the session ends cleanly rather
            // than waiting for a go-ahead that will not come.
            out.contains(" NO [") && out.contains("refused that before taking it")
        } else {
            (out.contains("NO") || out.contains("ENDED")) && out.contains("provider")
        };
        if !told {
            failures.push(format!("{fault}: not told why: {out:?}"));
        }
    }
    // Every stall ended by the provider timeout (3 s), not by the client's
    // (60 s).
    if started.elapsed() > Duration::from_secs(45) {
        failures.push(format!("took {:?}", started.elapsed()));
    }
    // What reached the provider: whole APPEND literals were ciphertext, and
    // no plaintext in any of them, whole or cut.
    let mut whole = 0;
    for entry in std::fs::read_dir(&received).expect("received") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("canary-provider-fault") || text.contains("Subject: draft") {
            failures.push(format!("plaintext reached the provider: {text}"));
        }
        whole += usize::from(text.contains("-----END PGP MESSAGE-----"));
    }
    if whole < 3 {
        failures.push(format!("{whole} whole APPENDs received, expected 3"));
    }
    // Nothing of the cut FETCH was archived for that account.
    let cut = archive::Location {
        account: "fetch-cut@example.net".into(),
        mailbox: "INBOX".into(),
        uidvalidity: 7,
        uid: 1,
    };
    if archive.message_at(&cut).await.expect("archive").is_some() {
        failures.push("a message cut short was archived".into());
    }
    let alice = alice.await.expect("alice");
    if !alice.contains("FETCH OK Subject: still here") {
        failures.push(format!("alice's session was disturbed: {alice}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    proxy.stop().await;
}

/// argv: port. Saves a small and then a large draft; prints each APPEND's
/// result and what Drafts holds afterwards.
const QUOTA_CLIENT: &str = r#"
import base64, imaplib, os, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]), timeout=60)
m.login("alice", "alicepw")
def draft(subject, body):
    return ("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: %s\r\n\r\n%s\r\n"
            % (subject, body)).encode()
small = draft("small", "canary-quota: a short draft")
large = draft("large", "canary-quota\r\n" + base64.encodebytes(os.urandom(200 * 1024)).decode())
for name, message in (("small", small), ("large", large)):
    typ, data = m.append("Drafts", None, None, message)
    print("APPEND", name, typ, b" ".join(data).decode(errors="replace"))
typ, data = m.select("Drafts")
print("SELECT", typ, data[0].decode())
m.logout()
"#;

/// A real provider out of space: Dovecot with a quota refuses the large
/// draft; the client gets Dovecot's own `NO [OVERQUOTA]`, never OK; the
/// small draft before it was stored encrypted, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_out_of_space_refuses_the_append_and_the_session_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let dovecot =
        tokio::task::spawn_blocking(|| Dovecot::start_with_quota(&[("alice", "alicepw")], 64))
            .await
            .expect("dovecot");
    let (proxy, _) = proxy_for(&store, &dovecot, &[]).await;
    let port = proxy.port;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", QUOTA_CLIENT, &port.to_string()])
            .output()
            .expect("python3")
    })
    .await
    .expect("client");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("APPEND small OK"), "{said}");
    assert!(
        said.contains("APPEND large NO") && said.contains("OVERQUOTA"),
        "the provider's refusal was not passed on: {said}"
    );
    assert!(said.contains("SELECT OK 1"), "{said}");
    let stored = dovecot.doveadm(&["fetch", "-u", "alice", "text", "mailbox", "Drafts", "all"]);
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("canary-quota"),
        "{stored}"
    );
    proxy.stop().await;
}
