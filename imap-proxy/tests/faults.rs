//! A provider that misbehaves after login — a malformed response, a literal
//! announced as 4 GB that stalls after 190 MiB, a dropped connection — ends
//! that client's session with a BYE that says why, within bounded memory, while another client's session
//! (to a real Dovecot) goes on undisturbed.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::PreferEncrypt;
use imap_proxy::proxy::{AccountConfig, Config, Proxy};
use imap_proxy::upstream::{Endpoint, Security};
use keystore::{Keystore, Unlock};
use testbed::Dovecot;

/// argv: port. A plain IMAP server whose LOGIN name picks the fault it
/// shows at SELECT. Prints READY once listening.
const HOSTILE: &str = r#"
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(16)
print("READY", flush=True)
def serve(c):
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
            if verb == b"LOGIN":
                mode = words[2].strip(b'"').decode()
                c.sendall(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
            elif verb == b"CAPABILITY":
                c.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
            elif verb == b"SELECT" and mode == "malformed":
                c.sendall(b"* 1 FETCH (((( \x00\xff not IMAP at all\r\n")
            elif verb == b"SELECT" and mode == "huge":
                c.sendall(b"* 1 FETCH (BODY[] {4000000000}\r\n")
                junk = b"x" * 65536
                for _ in range(3000):  # at most ~190 MiB, then give up
                    c.sendall(junk)
            elif verb == b"SELECT" and mode == "drop":
                c.close()
                return
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
    print("FETCH", typ, b" ".join(d[1] for d in data if isinstance(d, tuple)).decode().strip())
    m.logout()
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
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let now = SystemTime::now() - Duration::from_secs(60);
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");
    dovecot.save(
        "alice",
        "INBOX",
        b"From: bob@example.org\r\nSubject: still here\r\n\r\nhello\r\n",
    );

    let hostile_port = testbed::free_port();
    let mut hostile = KilledOnDrop(
        Command::new("python3")
            .args(["-c", HOSTILE, &hostile_port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    {
        use std::io::BufRead;
        let mut ready = String::new();
        std::io::BufReader::new(hostile.0.stdout.as_mut().expect("stdout"))
            .read_line(&mut ready)
            .expect("ready");
        assert_eq!(ready.trim(), "READY");
    }

    let mut accounts = vec![AccountConfig {
        address: "alice@example.org".into(),
        username: "alice".into(),
        provider: Endpoint {
            host: "localhost".into(),
            port: dovecot.imaps_port,
            security: Security::Tls,
            ca_file: Some(dovecot.ca_file.clone()),
        },
    }];
    for fault in ["malformed", "huge", "drop"] {
        accounts.push(AccountConfig {
            address: format!("{fault}@example.net"),
            username: fault.into(),
            provider: Endpoint {
                host: "127.0.0.1".into(),
                port: hostile_port,
                security: Security::Plain,
                ca_file: None,
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
    let archive = Archive::open(&store).await.expect("archive");
    let proxy = Proxy::bind(
        Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: None,
            provider_timeout: Duration::from_secs(3),
            accounts,
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
        assert!(out.contains("ENDED"), "{fault}: the session went on: {out}");
        assert!(!out.contains("Traceback"), "{fault}: {out}");
    }
    let said = |fault: &str| {
        faults
            .iter()
            .find(|(f, _)| *f == fault)
            .map(|(_, o)| o.clone())
    };
    let malformed = said("malformed").unwrap_or_default();
    assert!(malformed.contains("cannot read"), "{malformed}");
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

    let _ = stop.send(());
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
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let now = SystemTime::now() - Duration::from_secs(60);
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");
    let key = autocrypt::key::generate("alice@example.org", now).expect("key");
    store
        .put_identity("alice@example.org", &key, PreferEncrypt::Mutual, now)
        .await
        .expect("identity");
    let archive = Archive::open(&store).await.expect("archive");
    let proxy = Proxy::bind(
        Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: None,
            provider_timeout: Duration::from_secs(3),
            accounts: vec![AccountConfig {
                address: "alice@example.org".into(),
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
    let _ = stop.send(());
}
