//! Local access to a running gateway: nothing is served before a login,
//! failed logins slow down (counted across IMAP and SMTP, since both proxies
//! pass passwords to the same provider), and what the gateway keeps on disk
//! is readable by its user only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::{send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");

/// Sends `lines` on a fresh connection and returns everything the server
/// said until it answered the last one (a line starting with `until`).
fn converse(port: u16, lines: &[&str], until: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut said = String::new();
    reader.read_line(&mut said).expect("greeting");
    for line in lines {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        said.push_str(&line);
        if line.starts_with(until) {
            break;
        }
    }
    said
}

fn imap_login(port: u16, user: &str, password: &str) -> (String, Duration) {
    let started = Instant::now();
    let said = converse(port, &[&format!("l LOGIN {user} {password}")], "l ");
    (said, started.elapsed())
}

fn smtp_auth(port: u16, user: &str, password: &str) -> (String, Duration) {
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let started = Instant::now();
    let said = converse(
        port,
        &["EHLO client", &format!("AUTH PLAIN {plain}")],
        // The EHLO answer's last line is "250 …"; AUTH's is 235 or 5xx.
        "5",
    );
    (said, started.elapsed())
}

#[test]
fn local_access_is_guarded() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE]);
    let mut alice = Gateway::new(root.path(), "alice");
    alice.init(ALICE.0, &provider);
    alice.start();

    // Nothing before a login: IMAP commands that need one are refused, and
    // SMTP will not take mail.
    let imap = converse(
        alice.imap_port,
        &["a SELECT INBOX", "b LIST \"\" *", "c LOGOUT"],
        "c ",
    );
    for tag in ["a", "b"] {
        assert!(
            imap.lines().any(
                |l| l.starts_with(&format!("{tag} BAD")) || l.starts_with(&format!("{tag} NO"))
            ),
            "{imap}"
        );
    }
    assert!(!imap.contains("* LIST"), "{imap}");
    let smtp = converse(
        alice.smtp_port,
        &["EHLO client", "MAIL FROM:<alice@example.org>"],
        "5",
    );
    assert!(smtp.lines().any(|l| l.starts_with("530")), "{smtp}");

    // Three failures are answered at once; then each attempt waits longer,
    // whichever proxy it comes through. (A name the gateway does not know:
    // the provider, which delays failures itself, is not asked.)
    const NOBODY: &str = "mallory@example.org";
    for _ in 0..3 {
        let (said, took) = imap_login(alice.imap_port, NOBODY, "wr0ng-canary");
        assert!(said.contains("l NO"), "{said}");
        assert!(
            took < Duration::from_secs(1),
            "early failures wait {took:?}"
        );
    }
    let (said, took) = smtp_auth(alice.smtp_port, NOBODY, "wr0ng-canary");
    assert!(said.contains("535"), "{said}");
    assert!(
        took >= Duration::from_secs(1),
        "4th failure answered in {took:?}"
    );
    let (said, took) = imap_login(alice.imap_port, NOBODY, "wr0ng-canary");
    assert!(said.contains("l NO"), "{said}");
    assert!(
        took >= Duration::from_secs(2),
        "5th failure answered in {took:?}"
    );

    // Wrong passwords for a real account count the same way; the right one
    // still works (after its wait) and forgets the failures.
    for _ in 0..4 {
        let (said, _) = imap_login(alice.imap_port, ALICE.0, "wr0ng-canary");
        assert!(said.contains("l NO"), "{said}");
    }
    let log = alice.log_text();
    let delayed = |who: &str| {
        log.lines()
            .any(|l| l.contains("login delayed after failed attempts") && l.contains(who))
    };
    assert!(
        delayed(NOBODY) && delayed(ALICE.0),
        "the log says why logins wait"
    );
    let hello = format!(
        "From: {0}\nTo: {0}\nSubject: hello\nMessage-ID: <hello@example.org>\n\nhi\n",
        ALICE.0
    );
    assert_eq!(send(&alice, ALICE, &hello, &[ALICE.0]), "OK");
    let (said, took) = imap_login(alice.imap_port, ALICE.0, ALICE.1);
    assert!(said.contains("l OK"), "{said}");
    assert!(took < Duration::from_secs(1), "a success resets the count");
    assert!(
        !log.contains("wr0ng-canary") && !log.contains(ALICE.1),
        "no password in the log"
    );

    // Files the gateway writes are its user's alone.
    alice.stop();
    use std::os::unix::fs::PermissionsExt;
    let data = alice.dir.join("data");
    let mode = std::fs::metadata(&data)
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the data directory is open to others ({mode:o})"
    );
    let mut checked = 0;
    let mut dirs = vec![data];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("data dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                dirs.push(entry.path());
            }
            assert_eq!(
                mode & 0o077,
                0,
                "{} is open to others ({mode:o})",
                entry.path().display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the vault and the archive at least");
}
