//! `scripts/load`: 50 concurrent SMTP clients and 100 concurrent IMAP
//! sessions for a bounded time, first straight at the provider (Dovecot
//! submission and IMAP over TLS, OpenSMTPD), then through two gateways
//! (Alice sends encrypted to Bob; Bob's sessions read decrypted mail), each
//! phase from the same 20-message mailbox. It reports errors (the
//! provider's own temporary refusals apart), latency medians and 95th
//! percentiles, and the gateways' peak memory; BENCHMARKS.md and
//! SECURITY.md quote it.
//!
//!   scripts/load [SECONDS [SMTP_CLIENTS [IMAP_SESSIONS]]]   # default 60 50 100

use std::process::Command;
use std::time::Duration;

use e2e::{read, send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const BOB: (&str, &str) = ("bob@example.org", "bobpw");
/// The issue's figures; `scripts/load SECONDS SMTP IMAP` changes them.
const SMTP_CLIENTS: usize = 50;
const IMAP_SESSIONS: usize = 100;
const SEEDED: usize = 20;

/// argv: a JSON job. Threads until the deadline; prints one JSON summary.
const DRIVER: &str = r#"
import imaplib, json, smtplib, ssl, sys, threading, time
job = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=job["cafile"]) if job["tls"] else None
deadline = time.time() + job["seconds"]
body = ("x" * 70 + "\r\n") * (job["message_kb"] * 1024 // 72)
lock = threading.Lock()
results = {"smtp": {"lat": [], "errors": 0, "first_error": None, "provider_busy": 0},
           "imap": {"lat": [], "errors": 0, "first_error": None, "provider_busy": 0}}
# Dovecot submission's temporary 421 when its own relay (OpenSMTPD) takes no
# more connections: the provider's refusal, straight or passed on by the
# gateway, after which a client retries. Counted apart from errors.
PROVIDER_BUSY = "Failed to connect to relay server"
def record(kind, started, error=None):
    with lock:
        r = results[kind]
        if error is None:
            r["lat"].append(time.time() - started)
        elif PROVIDER_BUSY in repr(error):
            r["provider_busy"] += 1
        else:
            r["errors"] += 1
            r["first_error"] = r["first_error"] or repr(error)[:300]
def smtp_client(n):
    i = 0
    while time.time() < deadline:
        i += 1
        started = time.time()
        try:
            if ctx:
                s = smtplib.SMTP_SSL("localhost", job["smtp"], context=ctx, timeout=120)
            else:
                s = smtplib.SMTP("127.0.0.1", job["smtp"], timeout=120)
            s.login(job["from"], job["password"])
            msg = ("From: %s\r\nTo: %s\r\nSubject: load %d-%d\r\nMessage-ID: <load-%d-%d-%s@example.org>\r\n\r\n%s"
                   % (job["from"], job["to"], n, i, n, i, job["name"], body))
            s.sendmail(job["from"], [job["to"]], msg.encode())
            s.quit()
            record("smtp", started)
        except Exception as e:
            record("smtp", started, e)
def imap_session(n):
    try:
        if ctx:
            m = imaplib.IMAP4_SSL("localhost", job["imap"], ssl_context=ctx, timeout=120)
        else:
            m = imaplib.IMAP4("127.0.0.1", job["imap"], timeout=120)
        m.login(job["reader"], job["reader_password"])
    except Exception as e:
        record("imap", time.time(), e)
        return
    while time.time() < deadline:
        started = time.time()
        try:
            typ, _ = m.select("INBOX")
            assert typ == "OK", typ
            first = 1 + (n % job["seeded"])
            typ, data = m.fetch("%d" % first, "(BODY.PEEK[])")
            assert typ == "OK" and data and isinstance(data[0], tuple), typ
            typ, _ = m.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
            assert typ == "OK", typ
            record("imap", started)
        except Exception as e:
            record("imap", started, e)
            return
    try:
        m.logout()
    except Exception:
        pass
threads = [threading.Thread(target=smtp_client, args=(n,)) for n in range(job["smtp_clients"])]
threads += [threading.Thread(target=imap_session, args=(n,)) for n in range(job["imap_sessions"])]
for t in threads: t.start()
for t in threads: t.join()
def summary(r):
    lat = sorted(r["lat"])
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else None
    return {"done": len(lat), "errors": r["errors"], "first_error": r["first_error"],
            "provider_busy": r["provider_busy"],
            "p50_ms": q(0.5), "p95_ms": q(0.95), "max_ms": q(1.0)}
print(json.dumps({k: summary(v) for k, v in results.items()}))
"#;

struct Target {
    name: &'static str,
    smtp: u16,
    imap: u16,
    tls: bool,
}

fn drive(
    target: &Target,
    provider: &Provider,
    seconds: u64,
    (smtp_clients, imap_sessions): (usize, usize),
) -> serde_json::Value {
    let job = serde_json::json!({
        "name": target.name,
        "smtp": target.smtp,
        "imap": target.imap,
        "tls": target.tls,
        "cafile": provider.dovecot.ca_file,
        "from": ALICE.0, "password": ALICE.1, "to": BOB.0,
        "reader": BOB.0, "reader_password": BOB.1,
        "smtp_clients": smtp_clients, "imap_sessions": imap_sessions,
        "seconds": seconds, "message_kb": 10, "seeded": SEEDED,
    });
    let out = Command::new("python3")
        .args(["-c", DRIVER, &job.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "load driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("driver summary")
}

/// Bob's INBOX size once deliveries have stopped (unchanged for 3 s).
fn settled_count(provider: &Provider) -> usize {
    let mut last = usize::MAX;
    loop {
        let now = provider.dovecot.uids(BOB.0, "INBOX").len();
        if now == last {
            return now;
        }
        last = now;
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Peak resident memory of a process, in MiB.
fn peak_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn main() {
    let arg = |n: usize, default: u64| {
        std::env::args()
            .nth(n)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seconds = arg(1, 60);
    let load = (
        arg(2, SMTP_CLIENTS as u64) as usize,
        arg(3, IMAP_SESSIONS as u64) as usize,
    );
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB]);
    let mut alice = Gateway::running(root.path(), "alice", ALICE.0, &provider);
    let mut bob = Gateway::running(root.path(), "bob", BOB.0, &provider);

    // Alice learns Bob's key, then Bob's INBOX gets SEEDED encrypted messages.
    let hello = format!(
        "From: {}\nTo: {}\nSubject: hello\nMessage-ID: <hello@example.org>\n\nhi\n",
        BOB.0, ALICE.0
    );
    assert_eq!(send(&bob, BOB, &hello, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 1, Duration::from_secs(60));
    read(&alice, ALICE, "INBOX");
    for i in 0..SEEDED {
        let m = format!(
            "From: {}\nTo: {}\nSubject: seed {i}\nMessage-ID: <seed-{i}@example.org>\n\n{}\n",
            ALICE.0,
            BOB.0,
            "seeded text ".repeat(800)
        );
        assert_eq!(send(&alice, ALICE, &m, &[BOB.0]), "OK");
    }
    provider.wait_for_messages(BOB.0, "INBOX", SEEDED, Duration::from_secs(120));
    read(&bob, BOB, "INBOX");

    let direct = drive(
        &Target {
            name: "direct",
            smtp: provider.submissions_port,
            imap: provider.dovecot.imaps_port,
            tls: true,
        },
        &provider,
        seconds,
        load,
    );
    // Both phases start from the same mailbox: the direct phase's mail
    // (delivered, once the provider's queue is empty) is expunged.
    let grown = settled_count(&provider);
    provider.dovecot.doveadm(&[
        "expunge", "-u", BOB.0, "mailbox", "INBOX", "subject", "load",
    ]);
    let reset = settled_count(&provider);
    let through = drive(
        &Target {
            name: "gateway",
            smtp: alice.smtp_port,
            imap: bob.imap_port,
            tls: false,
        },
        &provider,
        seconds,
        load,
    );
    let peaks = [&alice, &bob].map(|g| g.pid().map_or(0, peak_mib));
    let ratio = |kind: &str, q: &str| {
        // A phase with no clients of that kind (or none finished) has no
        // latency to compare.
        match (direct[kind][q].as_f64(), through[kind][q].as_f64()) {
            (Some(d), Some(g)) if d > 0.0 => format!("{:.2}×", g / d),
            _ => "n/a (nothing measured)".to_owned(),
        }
    };
    println!(
        "load: {} SMTP clients and {} IMAP sessions, {seconds} s per phase",
        load.0, load.1
    );
    let end = settled_count(&provider);
    println!("direct:  {direct}");
    println!("gateway: {through}");
    println!(
        "Bob's INBOX: {SEEDED} -> {grown} messages in the direct phase, {reset} -> {end} through the gateway"
    );
    println!(
        "SMTP latency through the gateway / direct: median {}, p95 {}",
        ratio("smtp", "p50_ms"),
        ratio("smtp", "p95_ms")
    );
    println!(
        "IMAP round latency through the gateway / direct: median {}, p95 {}",
        ratio("imap", "p50_ms"),
        ratio("imap", "p95_ms")
    );
    println!(
        "peak RSS: Alice's gateway (SMTP side) {} MiB, Bob's gateway (IMAP side) {} MiB",
        peaks[0], peaks[1]
    );
    let errors = through["smtp"]["errors"].as_u64().unwrap_or(1)
        + through["imap"]["errors"].as_u64().unwrap_or(1);
    alice.stop();
    bob.stop();
    if errors > 0 {
        eprintln!("errors through the gateway: {errors}");
        std::process::exit(1);
    }
}
