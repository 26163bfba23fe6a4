//! `gateway archive sync` against a real Dovecot: an interrupted sync
//! resumes and indexes every message exactly once; what it archives is
//! searchable and invisible in the data directory's files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use autocrypt::{key, AutocryptHeader, PreferEncrypt};
use keystore::{Keystore, Unlock};
use mailcrypt::EncryptRequest;
use testbed::Dovecot;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
// Enough that the kill after 30 lands long before the end, even on a slow machine.
const MESSAGES: u32 = 480;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Every tenth message is encrypted; each carries one word of its own.
fn message(n: u32, alice: &sequoia_openpgp::Cert, bob: &sequoia_openpgp::Cert) -> Vec<u8> {
    let text = format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: report {n}\r\n\
         Date: Tue, 3 Nov 2026 09:00:00 +0000\r\nMessage-ID: <m{n}@example.org>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe code word is zq{n}x.\r\n"
    );
    if !n.is_multiple_of(10) {
        return text.into_bytes();
    }
    let header = AutocryptHeader::new(BOB, PreferEncrypt::Mutual, bob.clone());
    mailcrypt::encrypt(
        text.as_bytes(),
        &EncryptRequest {
            autocrypt: Some(&header),
            ..EncryptRequest::new(bob, std::slice::from_ref(alice))
        },
    )
    .expect("encrypt")
}

fn setup(dovecot: &Dovecot, dir: &Path, messages: u32) -> PathBuf {
    let data = dir.join("data");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n\
             [[account]]\n\
             address = \"{ALICE}\"\n\
             username = \"alice\"\n\
             imap = {{ host = \"localhost\", port = {port}, security = \"tls\" }}\n\
             smtp = {{ host = \"localhost\", port = 1, security = \"tls\" }}\n\
             ca_file = {ca:?}\n",
            data = data.display().to_string(),
            port = dovecot.imaps_port,
            ca = dovecot.ca_file.display().to_string(),
        ),
    )
    .expect("config");
    let alice = key::generate(ALICE, SystemTime::now()).expect("key");
    let bob = key::generate(BOB, SystemTime::now()).expect("key");
    block_on(async {
        let store = Keystore::create(&data, Unlock::KeyFile)
            .await
            .expect("vault");
        store
            .put_identity(ALICE, &alice, PreferEncrypt::Mutual, SystemTime::now())
            .await
            .expect("identity");
        store.close().await;
    });
    for n in 1..=messages {
        dovecot.save("alice", "INBOX", &message(n, &alice, &bob));
    }
    config
}

fn gateway(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.args(args)
        .env("LETTERLOCK_CONFIG", config)
        .env("LETTERLOCK_UPSTREAM_PASSWORD", "alicepw")
        .env_remove("LETTERLOCK_PASSPHRASE")
        .stdin(Stdio::null());
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn new_count(summary: &str) -> u32 {
    summary
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("INBOX: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no INBOX line in {summary}"))
}

#[test]
fn interrupted_sync_resumes_and_indexes_each_message_once() {
    let dovecot = Dovecot::start(&[("alice", "alicepw")]);
    let dir = tempfile::tempdir().expect("dir");
    let config = setup(&dovecot, dir.path(), MESSAGES);

    // Kill the first run (SIGKILL, no chance to tidy up) part-way.
    let mut first = gateway(&config, &["archive", "sync"])
        .env("LETTERLOCK_LOG", "info,imap_proxy=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway runs");
    let stderr = first.stderr.take().expect("stderr");
    let mut archived = 0;
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        log.push_str(&line);
        log.push('\n');
        if line.contains("archived") && line.contains("uid=") {
            archived += 1;
            if archived == 30 {
                first.kill().expect("kill");
                break;
            }
        }
    }
    let _ = first.wait();
    assert_eq!(archived, 30, "the first run did not get far enough:\n{log}");

    // The second run fetches only what is missing.
    let second = gateway(&config, &["archive", "sync"])
        .output()
        .expect("runs");
    assert!(second.status.success(), "{}", text(&second));
    let fetched = new_count(&String::from_utf8_lossy(&second.stdout));
    assert!(
        fetched > 0 && fetched <= MESSAGES - 30,
        "second run fetched {fetched}: {}",
        text(&second)
    );

    // A third run has nothing to do.
    let third = gateway(&config, &["archive", "sync", "--mailbox", "INBOX"])
        .output()
        .expect("runs");
    assert!(third.status.success(), "{}", text(&third));
    assert_eq!(new_count(&String::from_utf8_lossy(&third.stdout)), 0);

    // Every message exactly once: each code word has one hit.
    for n in [1, 10, 29, 30, 31, 120, 350, MESSAGES] {
        let out = gateway(&config, &["search", "--json", &format!("zq{n}x")])
            .output()
            .expect("search");
        assert!(out.status.success(), "{}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let hits = json["hits"].as_array().expect("hits");
        assert_eq!(hits.len(), 1, "zq{n}x: {json}");
        assert_eq!(hits[0]["mailbox"], "INBOX");
    }
    let all = gateway(
        &config,
        &["search", "--json", "--limit", "1000", "subject:report"],
    )
    .output()
    .expect("search");
    let json: serde_json::Value = serde_json::from_slice(&all.stdout).expect("json");
    assert_eq!(
        json["hits"].as_array().map(Vec::len),
        Some(MESSAGES as usize)
    );

    // Nothing readable in the data directory: no code word, subject or address.
    for entry in std::fs::read_dir(dir.path().join("data")).expect("data dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        for needle in [
            "zq10x",
            "zq11x",
            "report 1",
            "bob@example.org",
            "The code word",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} readable in {}",
                path.display()
            );
        }
    }
}

#[test]
fn sync_explains_a_missing_password_and_a_wrong_one() {
    let dovecot = Dovecot::start(&[("alice", "alicepw")]);
    let dir = tempfile::tempdir().expect("dir");
    let config = setup(&dovecot, dir.path(), 1);
    let out = gateway(&config, &["archive", "sync"])
        .env_remove("LETTERLOCK_UPSTREAM_PASSWORD")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("LETTERLOCK_UPSTREAM_PASSWORD"),
        "{}",
        text(&out)
    );
    let out = gateway(&config, &["archive", "sync"])
        .env("LETTERLOCK_UPSTREAM_PASSWORD", "wrong")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("rejected the login"), "{}", text(&out));
    let out = gateway(&config, &["archive", "sync", "--mailbox", "Nowhere"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
}
