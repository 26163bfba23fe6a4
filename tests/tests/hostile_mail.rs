//! Mail built to break parsers, read through a running `gateway run`
//! process in front of a real Dovecot (issue 17, finding 1, at the level a
//! user meets it): 10,000 nested levels in several shapes, some drawn at
//! random level by level, each also under a multipart/signed top level so
//! that the gateway takes it apart, and 100,000 parts side by side. Every
//! message is
//! served, and afterwards the same process still answers IMAP and SMTP:
//! no input may stop the gateway for everyone (rule 7).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::Gateway;
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const LEVELS: usize = 10_000;
const PARTS: usize = 100_000;

/// How one level wraps the next.
#[derive(Clone, Copy, Debug)]
enum Level {
    /// A message/rfc822 part in a multipart/mixed.
    Attached,
    /// A multipart/mixed as the only part of another.
    Multipart,
    /// A multipart/signed whose first part is the next level.
    Signed,
    /// A multipart/digest (its parts default to message/rfc822).
    Digest,
}

const ALL: [Level; 4] = [
    Level::Attached,
    Level::Multipart,
    Level::Signed,
    Level::Digest,
];

/// A message `levels.len()` levels deep, the innermost a text part.
fn nested(subject: &str, levels: &[Level]) -> Vec<u8> {
    let mut inner = "Content-Type: text/plain\r\n\r\nthe innermost words\r\n".to_string();
    for (i, level) in levels.iter().enumerate().rev() {
        let b = format!("b{i}");
        inner = match level {
            Level::Attached => format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n\
                 Content-Type: message/rfc822\r\n\r\nSubject: level {i}\r\n{inner}\r\n--{b}--\r\n"
            ),
            Level::Multipart => format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n{inner}\r\n--{b}--\r\n"
            ),
            Level::Signed => format!(
                "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; \
                 micalg=pgp-sha256; boundary=\"{b}\"\r\n\r\n--{b}\r\n{inner}\r\n--{b}\r\n\
                 Content-Type: application/pgp-signature\r\n\r\nnot a signature\r\n--{b}--\r\n"
            ),
            Level::Digest => format!(
                "Content-Type: multipart/digest; boundary=\"{b}\"\r\n\r\n--{b}\r\n\r\n\
                 Subject: digest {i}\r\n{inner}\r\n--{b}--\r\n"
            ),
        };
    }
    format!(
        "From: mallory@evil.example\r\nTo: {}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n{inner}",
        ALICE.0
    )
    .into_bytes()
}

/// 100,000 small text parts in one multipart/mixed.
fn wide() -> Vec<u8> {
    let mut m = format!(
        "From: mallory@evil.example\r\nTo: {}\r\nSubject: wide\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"w\"\r\n\r\n",
        ALICE.0
    );
    for i in 0..PARTS {
        m.push_str(&format!(
            "--w\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n"
        ));
    }
    m.push_str("--w--\r\n");
    m.into_bytes()
}

/// A small deterministic generator (xorshift), so a failing shape can be
/// made again from its seed.
fn random_levels(seed: u64) -> Vec<Level> {
    let mut state = seed.max(1);
    (0..LEVELS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALL[(state % 4) as usize]
        })
        .collect()
}

/// argv: port. Fetches every message's structure, then each whole message,
/// then searches; prints one line per step: what it got, in seconds.
const READER: &str = r#"
import imaplib, sys, time
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]), timeout=300)
m.login("alice@example.org", "alicepw")
m.select("INBOX")
t = time.time()
typ, data = m.uid("FETCH", "1:*", "(UID BODYSTRUCTURE)")
print("STRUCTURE", typ, round(time.time() - t, 1))
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
for uid in uids:
    t = time.time()
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    size = sum(len(d[1]) for d in data if isinstance(d, tuple))
    print("BODY", uid.decode(), typ, size, round(time.time() - t, 1))
t = time.time()
typ, data = m.uid("SEARCH", None, "TEXT", "innermost")
print("SEARCH", typ, round(time.time() - t, 1))
m.logout()
"#;

/// The first line the server at `port` says, and how long it took.
fn greeting(port: u16) -> (String, Duration) {
    let started = Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("greeting");
    (line, started.elapsed())
}

#[test]
fn mail_built_to_break_parsers_never_stops_the_gateway() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE]);
    let mut alice = Gateway::new(root.path(), "alice");
    alice.init(ALICE.0, &provider);
    alice.start();

    let mut shapes = vec![
        ("attached", vec![Level::Attached; LEVELS]),
        ("multipart", vec![Level::Multipart; LEVELS]),
        ("digest", vec![Level::Digest; LEVELS]),
    ];
    for seed in [1, 2, 3] {
        shapes.push(("random", random_levels(seed)));
    }
    // Each as it is (passed through) and under a multipart/signed top
    // level (taken apart by the gateway, as the mail that stopped it was).
    let mut messages = vec![wide(), nested("signed", &[Level::Signed; LEVELS])];
    for (name, levels) in &shapes {
        messages.push(nested(name, levels));
        messages.push(nested(name, &[&[Level::Signed], &levels[..]].concat()));
    }
    for message in &messages {
        provider.dovecot.save(ALICE.0, "INBOX", message);
    }

    // Twice: the second read is served from what the first one archived.
    for round in ["first", "second"] {
        let out = Command::new("python3")
            .args(["-c", READER, &alice.imap_port.to_string()])
            .output()
            .expect("python3");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{round} read: {said}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            alice.log_text()
        );
        println!("{round} read (step, status, bytes, seconds):\n{said}");
        let bodies: Vec<&str> = said.lines().filter(|l| l.starts_with("BODY ")).collect();
        assert_eq!(bodies.len(), messages.len(), "{round} read: {said}");
        for line in &bodies {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let size: usize = fields[3].parse().expect("size");
            assert!(fields[2] == "OK" && size > 0, "{round} read: {line}");
        }
        assert!(said.contains("STRUCTURE OK"), "{round} read: {said}");
        assert!(said.contains("SEARCH OK"), "{round} read: {said}");
        assert!(
            alice.is_running(),
            "the gateway stopped:\n{}",
            alice.log_text()
        );
    }

    // The same process still answers both protocols, and logs in.
    let (imap, took) = greeting(alice.imap_port);
    assert!(imap.starts_with("* OK"), "{imap}");
    assert!(
        took < Duration::from_secs(30),
        "IMAP answered after {took:?}"
    );
    let (smtp, took) = greeting(alice.smtp_port);
    assert!(smtp.starts_with("220"), "{smtp}");
    assert!(
        took < Duration::from_secs(30),
        "SMTP answered after {took:?}"
    );
    let mut stream = TcpStream::connect(("127.0.0.1", alice.imap_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("greeting");
    write!(stream, "l LOGIN {} {}\r\nn NOOP\r\n", ALICE.0, ALICE.1).expect("write");
    let mut said = String::new();
    while !said.contains("n OK") {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        said.push_str(&line);
    }
    assert!(said.contains("l OK") && said.contains("n OK"), "{said}");
    assert!(alice.is_running(), "{}", alice.log_text());
}
