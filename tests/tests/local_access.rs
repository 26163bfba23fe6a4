//! Local access to a running gateway: nothing is served before a login,
//! failed logins slow down (counted across IMAP and SMTP, since both proxies
//! pass passwords to the same provider, and counted when they start, so that
//! parallel guesses wait in line) without keeping the owner out, and what
//! the gateway keeps on disk is readable by its user only.

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

/// Runs `through_gateway` while the same owner logs in at the provider
/// directly (port `direct`), both started at once: its result, and how long
/// the direct login took.
fn beside_direct<T>(direct: u16, through_gateway: impl FnOnce() -> T) -> (T, Duration) {
    let beside = std::thread::spawn(move || imap_login(direct, ALICE.0, ALICE.1));
    let result = through_gateway();
    let (said, took) = beside.join().expect("direct login");
    assert!(said.contains("l OK"), "directly: {said}");
    (result, took)
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

    // Issue 17, finding 9: guesses in parallel are counted when they start
    // and go on one after another (the old throttle let 14 run within 25 s),
    // at most 8 wait at once, and meanwhile the owner's client, with the
    // password the provider accepted, logs in and sends at once.
    let port = alice.imap_port;
    let guesses: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || imap_login(port, ALICE.0, &format!("wr0ng-canary-{i}")))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Dovecot delays every login from an IP with recent failures (its auth
    // penalty, up to 15 s), and the gateway's logins all come from one: the
    // owner waits what the provider makes the same login wait directly, and
    // nothing more.
    let direct = provider.dovecot.imap_port;
    let ((said, took), provider_took) =
        beside_direct(direct, || imap_login(alice.imap_port, ALICE.0, ALICE.1));
    assert!(said.contains("l OK"), "{said}");
    assert!(
        took < provider_took + Duration::from_secs(1),
        "the owner waited {took:?}, the provider {provider_took:?}"
    );
    let during = format!(
        "From: {0}\nTo: {0}\nSubject: during\nMessage-ID: <during@example.org>\n\nhi\n",
        ALICE.0
    );
    let started = Instant::now();
    let (sent, provider_took) = beside_direct(direct, || send(&alice, ALICE, &during, &[ALICE.0]));
    assert_eq!(sent, "OK");
    assert!(
        started.elapsed() < provider_took + Duration::from_secs(4),
        "the owner's mail waited {:?}, a login at the provider {provider_took:?}",
        started.elapsed()
    );
    let mut waited = Vec::new();
    let mut turned_away = 0;
    for guess in guesses {
        let (said, took) = guess.join().expect("guess");
        assert!(said.contains("l NO"), "{said}");
        if said.contains("already waiting") {
            turned_away += 1;
            assert!(took < Duration::from_secs(2), "turned away after {took:?}");
        } else {
            waited.push(took);
        }
    }
    assert_eq!(turned_away, 2, "more than 8 at once are turned away");
    waited.sort();
    let floors = [0, 0, 0, 1, 3, 7, 15, 31];
    for (took, floor) in waited.iter().zip(floors) {
        assert!(
            *took >= Duration::from_secs(floor),
            "guesses answered after {waited:?}, not one after another"
        );
    }
    let ((said, took), provider_took) =
        beside_direct(direct, || imap_login(alice.imap_port, ALICE.0, ALICE.1));
    assert!(
        said.contains("l OK") && took < provider_took + Duration::from_secs(1),
        "{said} after {took:?}, at the provider {provider_took:?}"
    );
    let log = alice.log_text();
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
