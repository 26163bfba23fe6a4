//! Capability conformance (issue 18): every capability the proxy advertises
//! after login, read from its own CAPABILITY answer, has commands here, and
//! each of them gets through the proxy what Dovecot gives directly — the
//! same status and the same untagged responses, step by step.
//!
//! Two Dovecot users (with a quota, so that QUOTA is offered) start with
//! the same mailboxes: `alice` is read through the proxy, `twin` directly,
//! and both run the same script. What differs by design is left out of the
//! comparison: capability lists (the proxy
//! filters them), per-user numbers (UIDVALIDITY and the UIDPLUS codes that
//! carry it), Dovecot's timings in its completion texts, and the case of
//! media types in a BODYSTRUCTURE.
//!
//! A capability kept without commands here fails the test: clients trust
//! what is advertised (Thunderbird's NAMESPACE, ID and extended LIST got BAD
//! from a proxy that advertised them).

use std::time::SystemTime;

use archive::Archive;
use imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT;

use testbed::Dovecot;

mod common;

const ALICE: &str = "alice@example.org";

/// What each capability is checked with: raw command lines (without tag),
/// run in order in one session. `IDLE` is followed by `DONE` once the
/// server has said it is idling.
fn plan() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "IMAP4REV1",
            vec![
                "NOOP",
                "LIST \"\" \"*\"",
                "LSUB \"\" \"*\"",
                "STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)",
                "EXAMINE INBOX",
                "FETCH 1:* (FLAGS RFC822.SIZE UID)",
                "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])",
                "SEARCH ALL",
                "UID SEARCH SUBJECT \"second\"",
                "FETCH 1:* (BODYSTRUCTURE ENVELOPE)",
                "CHECK",
                "CLOSE",
                "CREATE Scratch",
                "SUBSCRIBE Scratch",
                "LSUB \"\" \"*\"",
                "UNSUBSCRIBE Scratch",
                "DELETE Scratch",
            ],
        ),
        (
            "QUOTA",
            vec!["GETQUOTAROOT INBOX", "GETQUOTA \"User quota\""],
        ),
        ("IDLE", vec!["SELECT INBOX", "IDLE"]),
        ("LITERAL+", vec!["SELECT {5+}\r\nINBOX", "CLOSE"]),
        (
            "UIDPLUS",
            vec![
                "APPEND Drafts (\\Draft) {50+}\r\nFrom: alice@example.org\r\nSubject: draft\r\n\r\nhello\r\n",
                "SELECT Drafts",
                "UID STORE 1 +FLAGS.SILENT (\\Deleted)",
                "UID EXPUNGE 1",
                "CLOSE",
            ],
        ),
        (
            "MOVE",
            vec!["SELECT INBOX", "UID MOVE 2 Projects", "CLOSE", "STATUS Projects (MESSAGES)"],
        ),
        // Without LIST-EXTENDED Thunderbird reads the folder flags from a
        // plain LIST, then the subscriptions from LSUB, spelled as here
        // (nsImapProtocol::List, ::Lsub).
        (
            "SPECIAL-USE",
            vec![
                "LIST \"\" \"%\"",
                "LIST \"\" \"*\"",
                "list \"\" \"*\"",
                "lsub \"\" \"*\"",
                "list \"\" \"INBOX\"",
            ],
        ),
        ("NAMESPACE", vec!["NAMESPACE"]),
        (
            "ID",
            vec![
                "ID (\"name\" \"Thunderbird\" \"version\" \"153.0\")",
                "ID NIL",
            ],
        ),
        ("UNSELECT", vec!["SELECT INBOX", "UNSELECT", "NOOP"]),
        ("CHILDREN", vec!["LIST \"\" \"Projects*\"", "LIST \"\" \"%\""]),
        // Last: once enabled, CONDSTORE changes later answers.
        ("ENABLE", vec!["ENABLE CONDSTORE"]),
        (
            "CONDSTORE",
            vec![
                "SELECT INBOX (CONDSTORE)",
                "FETCH 1:* (FLAGS MODSEQ)",
                "STORE 1 +FLAGS (\\Flagged)",
                "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
                "UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",
                "SEARCH MODSEQ 1",
                "STATUS Projects (HIGHESTMODSEQ)",
                "CLOSE",
            ],
        ),
        (
            "QRESYNC",
            vec![
                "ENABLE QRESYNC",
                "SELECT INBOX (QRESYNC ({UIDVALIDITY} 1))",
                "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
                "CLOSE",
            ],
        ),
        // Not advertised (imap-codec does not parse these forms); here so
        // that keeping them again runs what Thunderbird sends.
        (
            "LIST-EXTENDED",
            vec![
                "LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)",
                "LIST (SPECIAL-USE) \"\" \"*\"",
                "LIST \"\" (\"INBOX\" \"Projects\") RETURN (CHILDREN)",
            ],
        ),
        (
            "LIST-STATUS",
            vec!["LIST \"\" \"*\" RETURN (STATUS (MESSAGES UNSEEN))"],
        ),
    ]
}

/// argv: port user password plan-json. Logs in, asks CAPABILITY, then runs
/// the plan; prints JSON: the capabilities and, per step, the lines the
/// server answered (tags replaced by `T`).
const SCRIPT: &str = r#"
import json, socket, sys
port, user, password, plan = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
f = s.makefile("rb")
f.readline()
n = [0]
def command(line, idle=False):
    n[0] += 1
    tag = b"c%d" % n[0]
    print("sent:", line.splitlines()[0], file=sys.stderr, flush=True)
    s.sendall(tag + b" " + line.encode() + b"\r\n")
    said = []
    while True:
        got = f.readline()
        if not got:
            said.append("<closed>")
            return said
        # A literal in an answer: read it whole, keep it in the line.
        while got.rstrip(b"\r\n").endswith(b"}") and b"{" in got:
            size = int(got.rstrip(b"\r\n").rsplit(b"{", 1)[1][:-1])
            got += f.read(size) + f.readline()
        text = got.decode("utf-8", "replace").rstrip("\r\n")
        if idle and text.startswith("+"):
            said.append("+")
            s.sendall(b"DONE\r\n")
            continue
        if text.startswith(tag.decode() + " "):
            said.append("T" + text[len(tag):])
            return said
        said.append(text)
login = command("LOGIN %s %s" % (user, password))
caps = [c for l in command("CAPABILITY") if l.startswith("* CAPABILITY") for c in l.split()[2:]]
steps = []
for cap, lines in plan:
    for line in lines:
        if "{UIDVALIDITY}" in line:
            said = command("STATUS INBOX (UIDVALIDITY)")
            value = said[0].split("UIDVALIDITY ")[1].rstrip(")")
            line_sent = line.replace("{UIDVALIDITY}", value)
        else:
            line_sent = line
        steps.append({"cap": cap, "command": line, "said": command(line_sent, idle=(line == "IDLE"))})
command("LOGOUT")
print(json.dumps({"login": login, "capabilities": caps, "steps": steps}))
"#;

/// One user's mailboxes: two messages in INBOX, a subscribed `Projects`
/// with a child, and Dovecot's own Sent and Drafts.
fn seed(dovecot: &Dovecot, user: &str) {
    for (i, subject) in ["first", "second"].iter().enumerate() {
        let message = format!(
            "From: bob@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\
             Message-ID: <m{i}@example.org>\r\n\r\nbody {i}\r\n"
        );
        dovecot.save(user, "INBOX", message.as_bytes());
    }
    dovecot.doveadm(&["mailbox", "create", "-u", user, "Projects", "Projects/Sub"]);
    dovecot.doveadm(&["mailbox", "subscribe", "-u", user, "Projects"]);
}

/// What is compared of an answer line: the same for both users unless it
/// differs by design (see the crate docs).
fn normalized(line: &str) -> String {
    let mut out = line.to_string();
    // Capability lists: the proxy filters them.
    if let Some(at) = out.find("[CAPABILITY ") {
        if let Some(end) = out[at..].find(']') {
            out.replace_range(at..at + end + 1, "[CAPABILITY …]");
        }
    }
    // Per-user numbers.
    for code in ["UIDVALIDITY ", "APPENDUID ", "COPYUID "] {
        if let Some(at) = out.find(code) {
            let start = at + code.len();
            let end = out[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "N");
        }
    }
    // Media types in a structure: imap-codec writes basic ones in capitals
    // ("TEXT"), Dovecot as sent; IMAP compares them without case.
    if out.contains("BODYSTRUCTURE (") {
        out = out.to_lowercase();
    }
    // Dovecot's timings: "(0.001 + 0.000 + 0.001 secs)."
    if let Some(at) = out.find(" (") {
        if out[at..].contains(" secs)") {
            out.truncate(at);
        }
    }
    out
}

/// Alice's vault, archive and key, a Dovecot (with a quota) where `alice`
/// and `twin` have the same mailboxes, and a proxy for Alice.
struct Fixture {
    _dir: tempfile::TempDir,
    alice: sequoia_openpgp::Cert,
    dovecot: Dovecot,
    proxy: common::Running,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, alice) =
            common::vault_with_identity(dir.path(), ALICE, SystemTime::now()).await;
        let archive = Archive::open(&store).await.expect("archive");
        let dovecot = tokio::task::spawn_blocking(|| {
            Dovecot::start_with_quota(&[("alice", "alicepw"), ("twin", "alicepw")], 100 * 1024)
        })
        .await
        .expect("dovecot");
        for user in ["alice", "twin"] {
            seed(&dovecot, user);
        }
        let proxy = common::start(
            vec![common::account_at(&dovecot, ALICE, "alice")],
            DEFAULT_PROVIDER_TIMEOUT,
            &store,
            &archive,
        )
        .await;
        Fixture {
            _dir: dir,
            alice,
            dovecot,
            proxy,
        }
    }
}

/// Runs `plan` (see [`SCRIPT`]) as `user` at `port`.
async fn run(port: u16, user: &'static str, plan: &[(&str, Vec<&str>)]) -> serde_json::Value {
    let plan_json = serde_json::to_string(plan).expect("plan");
    tokio::task::spawn_blocking(move || {
        let port = port.to_string();
        let out = common::python(SCRIPT, &[&port, user, "alicepw", &plan_json]);
        serde_json::from_slice::<serde_json::Value>(&out).expect("JSON")
    })
    .await
    .expect("python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_capability_works_as_at_dovecot() {
    let fixture = Fixture::new().await;
    let plan = plan();
    let through = run(fixture.proxy.port, "alice", &plan).await;
    let direct = run(fixture.dovecot.imap_port, "twin", &plan).await;

    // Every capability advertised after login has commands in the plan.
    let advertised: Vec<String> = through["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_ascii_uppercase))
        .collect();
    // What the fixture's Dovecot offers and Thunderbird uses must be among
    // them (else the checks below would pass by skipping).
    for expected in [
        "IMAP4REV1",
        "NAMESPACE",
        "ID",
        "QUOTA",
        "SPECIAL-USE",
        "CONDSTORE",
        "QRESYNC",
    ] {
        assert!(
            advertised.iter().any(|a| a == expected),
            "{expected}: {advertised:?}"
        );
    }
    let unplanned: Vec<&String> = advertised
        .iter()
        .filter(|c| !plan.iter().any(|(p, _)| p.eq_ignore_ascii_case(c)))
        .collect();
    assert!(
        unplanned.is_empty(),
        "advertised without a conformance check: {unplanned:?}"
    );

    // Step by step, the same answers.
    let steps = |v: &serde_json::Value| -> Vec<(String, String, Vec<String>)> {
        v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["cap"].as_str().unwrap_or_default().to_string(),
                    s["command"].as_str().unwrap_or_default().to_string(),
                    s["said"]
                        .as_array()
                        .expect("said")
                        .iter()
                        .map(|l| normalized(l.as_str().unwrap_or_default()))
                        .collect(),
                )
            })
            .collect()
    };
    let mut differences = Vec::new();
    for ((cap, command, ours), (_, _, dovecots)) in steps(&through).iter().zip(steps(&direct)) {
        if !advertised.iter().any(|a| a.eq_ignore_ascii_case(cap)) {
            continue;
        }
        // Every command here is one that succeeds: an answer equal to
        // Dovecot's BAD would prove nothing.
        if !ours.last().is_some_and(|l| l.starts_with("T OK")) {
            differences.push(format!("{cap}: {command:?} did not succeed: {ours:?}"));
        }
        if *ours != dovecots {
            differences.push(format!(
                "{cap}: {command:?}\n  through the proxy: {ours:?}\n  directly:          {dovecots:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    fixture.proxy.stop().await;
}

/// CONDSTORE and QRESYNC on a message the gateway serves (decrypted): the
/// provider's MODSEQ comes with every answer, as Dovecot gives it for the
/// same mailbox, so a client's flag cache stays right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mod_sequences_stay_on_messages_the_gateway_serves() {
    let fixture = Fixture::new().await;
    let now = SystemTime::now();
    let bob = autocrypt::key::generate("bob@example.org", now).expect("bob");
    let inner =
        format!("From: bob@example.org\r\nTo: {ALICE}\r\nSubject: sealed\r\n\r\nmodseq-canary\r\n");
    let sealed = common::sealed(&bob, &fixture.alice, inner.as_bytes());
    fixture.dovecot.save("alice", "INBOX", &sealed);
    let plan = vec![(
        "CONDSTORE",
        vec![
            "ENABLE CONDSTORE QRESYNC",
            "SELECT INBOX (CONDSTORE)",
            "UID FETCH 1:* (FLAGS MODSEQ BODY.PEEK[])",
            "UID STORE 3 +FLAGS (\\Flagged)",
            "UID FETCH 1:* (FLAGS ENVELOPE) (CHANGEDSINCE 1)",
            "CLOSE",
        ],
    )];
    // The proxy's session first, then Dovecot's: the same mailbox, so the
    // second sees the first one's flag change and nothing else.
    let through = run(fixture.proxy.port, "alice", &plan).await;
    let direct = run(fixture.dovecot.imap_port, "alice", &plan).await;
    let modseqs = |v: &serde_json::Value, step: usize| -> Vec<String> {
        v["steps"][step]["said"]
            .as_array()
            .expect("said")
            .iter()
            .filter_map(|l| {
                let l = l.as_str()?;
                let at = l.find("MODSEQ (")?;
                Some(l[at..].split(')').next()?.to_string())
            })
            .collect()
    };
    let said = |v: &serde_json::Value, step: usize| v["steps"][step]["said"].to_string();
    assert!(
        said(&through, 2).contains("modseq-canary"),
        "{}",
        said(&through, 2)
    );
    assert!(!said(&direct, 2).contains("modseq-canary"));
    // Three messages, each with its mod-sequence.
    let fetched = modseqs(&through, 2);
    assert_eq!(fetched.len(), 3, "{}", said(&through, 2));
    let changed = modseqs(&through, 4);
    assert!(!changed.is_empty(), "{}", said(&through, 4));
    // Dovecot, asked next, answers the same for the messages both saw
    // unchanged (the first two) and a higher one for the flagged message.
    let fetched_direct = modseqs(&direct, 2);
    assert_eq!(fetched[..2], fetched_direct[..2], "{}", said(&direct, 2));
    assert_eq!(
        changed.last(),
        fetched_direct.last(),
        "{}",
        said(&direct, 2)
    );
    fixture.proxy.stop().await;
}
