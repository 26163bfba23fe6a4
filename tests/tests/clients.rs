//! Mail clients other than Thunderbird, each as far as it can be driven
//! (README, "Mail clients, tested"), against running gateways in front of
//! the test provider: Python's imapclient (PyPI), neomutt and aerc (Debian,
//! each in tmux). Thunderbird has its own file; mbsync is in imap-proxy's tests.
//! Each sees every folder, the real subject of an encrypted message, its
//! plaintext and attachment; what it stores or sends is ciphertext at the
//! provider; deleting moves to Trash; new mail shows up while it is open.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{workspace_root, Conversation};

const ALICE: (&str, &str) = Conversation::ALICE;
const BOB: (&str, &str) = Conversation::BOB;

/// The Python of the project's own environment (scripts/setup).
fn python() -> PathBuf {
    let python = workspace_root().join("target/python/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    python
}

#[test]
fn imapclient_reads_stores_moves_and_idles() {
    let conversation = Conversation::start();
    let Conversation {
        provider, alice, ..
    } = &conversation;
    let mut session = Command::new(python())
        .arg(workspace_root().join("tests/clients/imapclient_session.py"))
        .args([&alice.imap_port.to_string(), ALICE.0, ALICE.1, BOB.0])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let mut lines = BufReader::new(session.stdout.take().expect("stdout"));
    let mut first = String::new();
    let _ = lines.read_line(&mut first);
    let mut idling = String::new();
    let _ = lines.read_line(&mut idling);
    if idling.contains("idling") {
        conversation.bob_writes("Arrived while idling", "idle");
    }
    let mut last = String::new();
    let _ = lines.read_to_string(&mut last);
    let out = session.wait_with_output().expect("imapclient");
    assert!(
        out.status.success(),
        "imapclient failed: {first}{last}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    println!("imapclient saw: {state}");

    for cap in [
        "IDLE",
        "MOVE",
        "UIDPLUS",
        "SPECIAL-USE",
        "CONDSTORE",
        "ENABLE",
    ] {
        assert!(
            state["capabilities"].to_string().contains(cap),
            "{cap}: {state}"
        );
    }
    let folders = state["folders"].to_string();
    for folder in ["INBOX", "Sent", "Drafts", "Trash", "Projects"] {
        assert!(folders.contains(folder), "{folder} missing: {folders}");
    }
    assert!(
        state["subscribed"].to_string().contains("Projects"),
        "{state}"
    );
    let message = &state["messages"][0];
    assert_eq!(message["subject"], Conversation::SUBJECT, "{state}");
    assert!(
        message["text"]
            .as_str()
            .unwrap_or_default()
            .contains(Conversation::PLAINTEXT),
        "{message}"
    );
    assert_eq!(
        message["attachments"],
        serde_json::json!([Conversation::ATTACHMENT]),
        "{message}"
    );
    assert!(
        message["status"]
            .as_str()
            .unwrap_or_default()
            .starts_with("encrypted; signature=valid"),
        "{message}"
    );
    assert!(
        message["modseq"].as_u64().is_some_and(|m| m > 0),
        "{message}"
    );
    // SEARCH finds words inside the encryption.
    assert_eq!(
        state["found"],
        serde_json::json!([message["uid"]]),
        "{state}"
    );
    // CONDSTORE: the flag change is reported as changed since the old MODSEQ.
    assert!(
        state["changed"].to_string().contains("\\\\Flagged"),
        "{state}"
    );
    assert_eq!(
        state["trash"],
        serde_json::json!([Conversation::SUBJECT]),
        "{state}"
    );
    // The draft imapclient appended is ciphertext at the provider.
    let drafts = provider.wait_for_messages(ALICE.0, "Drafts", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&drafts[0], "imapclient-canary", "the appended draft");
    let trash = provider.wait_for_messages(ALICE.0, "Trash", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&trash[0], Conversation::PLAINTEXT, "Trash");
    // IDLE: the new message is announced while the client waits.
    let after: serde_json::Value = serde_json::from_str(last.trim()).expect("JSON after IDLE");
    assert!(
        after["subjects"]
            .to_string()
            .contains("Arrived while idling"),
        "{after}"
    );
}

/// A terminal program in its own tmux server (a socket of the test's, so a
/// person's tmux is never touched), read back from the screen.
struct Tmux {
    socket: String,
    /// Where the screens seen are written when the test fails.
    transcript: PathBuf,
}

impl Tmux {
    fn start(name: &str, dir: &Path, command: &[&str], env: &[(&str, &str)]) -> Self {
        let socket = format!("letterlock-{name}-{}", std::process::id());
        let mut tmux = Command::new("tmux");
        tmux.args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "160", "-y", "50", "-s", "client"]);
        for (key, value) in env {
            tmux.args(["-e", &format!("{key}={value}")]);
        }
        let status = tmux
            .args(command)
            .current_dir(dir)
            .status()
            .expect("tmux (run scripts/setup)");
        assert!(status.success(), "tmux did not start {command:?}");
        Tmux {
            socket,
            transcript: dir.join(format!("{name}-screens.txt")),
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "client"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys as `tmux send-keys` names them ("Enter", "q", "C-g").
    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "client"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Literal text typed into the program.
    fn text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "client", "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// The screen once every one of `wanted` is on it; fails with the last
    /// screen after `within`.
    fn wait_for(&self, wanted: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if wanted.iter().all(|w| screen.contains(w)) {
                self.keep(&screen);
                return screen;
            }
            if Instant::now() > deadline {
                self.keep(&screen);
                panic!(
                    "{wanted:?} not on the screen within {within:?}:\n{screen}\n(every screen: {})",
                    self.transcript.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn keep(&self, screen: &str) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.transcript)
        {
            let _ = writeln!(f, "{screen}\n{}", "-".repeat(80));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// neomutt's configuration for Alice behind her gateway: IMAP folders on
/// the gateway, Sent, Drafts and Trash there, SMTP through it, its own
/// OpenPGP off (the gateway does that work).
fn neomuttrc(dir: &Path, conversation: &Conversation) -> PathBuf {
    let user = ALICE.0.replace('@', "%40");
    let rc = format!(
        r#"set folder = "imap://{user}@127.0.0.1:{imap}/"
set imap_user = "{address}"
set imap_pass = "{password}"
set spoolfile = "+INBOX"
set record = "+Sent"
set postponed = "+Drafts"
set trash = "+Trash"
set smtp_url = "smtp://{user}@127.0.0.1:{smtp}/"
set smtp_pass = "{password}"
set from = "{address}"
set real_name = "Alice"
set ssl_starttls = no
set ssl_force_tls = no
set imap_idle = yes
set imap_check_subscribed = yes
set mail_check = 2
set timeout = 2
set sort = date
set confirmappend = no
set delete = yes
set move = no
set wait_key = no
set crypt_opportunistic_encrypt = no
set crypt_autosign = no
set crypt_autoencrypt = no
# The editor returns within the file's mtime granularity, so neomutt's
# "unmodified" check could abort the message; the canary's arrival in Bob's
# mailbox is what proves the editor ran.
set abort_unmodified = no
set editor = "sh -c 'printf \"Not sent yet: neomutt-draft-canary\\n\" >> \"$0\"'"
"#,
        imap = conversation.alice.imap_port,
        smtp = conversation.alice.smtp_port,
        address = ALICE.0,
        password = ALICE.1,
    );
    let path = dir.join("neomuttrc");
    std::fs::write(&path, rc).expect("neomuttrc");
    path
}

#[test]
fn neomutt_reads_sends_postpones_deletes_and_sees_new_mail() {
    let conversation = Conversation::start();
    let provider = &conversation.provider;
    let dir = conversation.root.path().join("neomutt");
    std::fs::create_dir_all(&dir).expect("neomutt dir");
    let rc = neomuttrc(&dir, &conversation);
    let rc = rc.to_str().expect("path");
    let env = [
        ("TERM", "xterm-256color"),
        ("LANG", "C.UTF-8"),
        ("HOME", dir.to_str().expect("path")),
    ];
    let wait = Duration::from_secs(30);

    let neomutt = Tmux::start("neomutt", &dir, &["neomutt", "-n", "-F", rc], &env);
    // The index: the real subject, not the provider's "[...]".
    neomutt.wait_for(&[Conversation::SUBJECT], wait);
    // The folder browser lists every folder, the subscribed one too.
    neomutt.keys(&["c"]);
    neomutt.wait_for(&["Open mailbox"], wait);
    neomutt.keys(&["?"]);
    neomutt.wait_for(&["Projects", "Sent", "Drafts", "Trash"], wait);
    neomutt.keys(&["q"]);
    neomutt.wait_for(&[Conversation::SUBJECT], wait);
    // Opened: the plaintext and the attachment, under the gateway's verdict.
    neomutt.keys(&["/"]);
    neomutt.text("Plans");
    neomutt.keys(&["Enter", "Enter"]);
    let pager = neomutt.wait_for(&[Conversation::PLAINTEXT, Conversation::ATTACHMENT], wait);
    assert!(!pager.contains("BEGIN PGP"), "{pager}");
    neomutt.keys(&["q"]);
    // Batch mode, as scripts send mail, now that Alice's gateway has Bob's
    // key from his message: through the gateway, encrypted, and its copy in
    // Sent encrypted too.
    let mut batch = Command::new("neomutt")
        .args(["-n", "-F", rc, "-s", "Written in neomutt", "--", BOB.0])
        .env("HOME", &dir)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("neomutt (run scripts/setup)");
    {
        use std::io::Write as _;
        let mut stdin = batch.stdin.take().expect("stdin");
        stdin
            .write_all(b"Sent from neomutt: neomutt-canary\n")
            .expect("body");
    }
    let out = batch.wait_with_output().expect("neomutt");
    assert!(
        out.status.success(),
        "neomutt could not send: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 2, Conversation::WAIT);
    Conversation::assert_ciphertext(
        at_bob.last().expect("sent"),
        "neomutt-canary",
        "neomutt's mail",
    );

    // Written in the composer and sent: encrypted at Bob's provider, and
    // neomutt's own copy in Sent is ciphertext too.
    compose(&neomutt, "Composed in neomutt", wait);
    neomutt.keys(&["y"]);
    neomutt.wait_for(&[Conversation::SUBJECT], wait);
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 3, Conversation::WAIT);
    Conversation::assert_ciphertext(
        at_bob.last().expect("sent"),
        "neomutt-draft-canary",
        "neomutt's composed mail",
    );
    let sent = provider.wait_for_messages(ALICE.0, "Sent", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&sent[0], "neomutt-draft-canary", "neomutt's Sent copy");
    // Bob reads both, decrypted by his gateway, with Alice's valid signature.
    conversation.assert_bob_reads_signed(&["neomutt-canary", "neomutt-draft-canary"]);
    // Postponed from the composer: a draft, ciphertext in Drafts.
    compose(&neomutt, "A draft in neomutt", wait);
    neomutt.keys(&["P"]);
    neomutt.wait_for(&[Conversation::SUBJECT], wait);
    let drafts = provider.wait_for_messages(ALICE.0, "Drafts", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&drafts[0], "neomutt-draft-canary", "neomutt's draft");
    // Deleted: moved to Trash when the mailbox is synced.
    neomutt.keys(&["/"]);
    neomutt.text("Plans");
    neomutt.keys(&["Enter", "d", "$"]);
    let trash = provider.wait_for_messages(ALICE.0, "Trash", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&trash[0], Conversation::PLAINTEXT, "Trash");
    // New mail, while neomutt is open.
    conversation.bob_writes("Arrived in neomutt", "neomutt-new");
    neomutt.wait_for(&["Arrived in neomutt"], Conversation::WAIT);
    neomutt.keys(&["q"]);
}

/// Opens neomutt's composer to Bob with `subject`; the editor (neomuttrc)
/// writes the body without a terminal, and the compose menu is shown.
fn compose(neomutt: &Tmux, subject: &str, wait: Duration) {
    neomutt.keys(&["m"]);
    neomutt.wait_for(&["To:"], wait);
    neomutt.text(BOB.0);
    neomutt.keys(&["Enter"]);
    neomutt.wait_for(&["Subject:"], wait);
    neomutt.text(subject);
    neomutt.keys(&["Enter"]);
    neomutt.wait_for(&["Compose"], wait);
}

/// aerc's configuration for Alice behind her gateway: IMAP and SMTP on
/// loopback, copies in Sent, drafts in Drafts, and an editor that returns at
/// once (the body is given on `:compose`).
fn aerc_config(dir: &Path, conversation: &Conversation) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let config = dir.join("config");
    let aerc = config.join("aerc");
    std::fs::create_dir_all(&aerc).expect("aerc config dir");
    let user = ALICE.0.replace('@', "%40");
    let accounts = format!(
        "[Alice]\n\
         source = imap+insecure://{user}:{password}@127.0.0.1:{imap}\n\
         outgoing = smtp+plain://{user}:{password}@127.0.0.1:{smtp}\n\
         from = Alice <{address}>\n\
         copy-to = Sent\n\
         postpone = Drafts\n\
         check-mail = 2s\n",
        imap = conversation.alice.imap_port,
        smtp = conversation.alice.smtp_port,
        address = ALICE.0,
        password = ALICE.1,
    );
    let path = aerc.join("accounts.conf");
    std::fs::write(&path, accounts).expect("accounts.conf");
    // aerc refuses an accounts.conf others can read (it holds passwords).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("accounts.conf mode");
    std::fs::write(
        aerc.join("aerc.conf"),
        "[compose]\neditor = true\n[filters]\ntext/plain = cat\n",
    )
    .expect("aerc.conf");
    config
}

#[test]
fn aerc_reads_sends_postpones_moves_and_sees_new_mail() {
    let conversation = Conversation::start();
    let provider = &conversation.provider;
    let dir = conversation.root.path().join("aerc");
    std::fs::create_dir_all(&dir).expect("aerc dir");
    let config = aerc_config(&dir, &conversation);
    let env = [
        ("TERM", "xterm-256color"),
        ("LANG", "C.UTF-8"),
        ("HOME", dir.to_str().expect("path")),
        ("XDG_CONFIG_HOME", config.to_str().expect("path")),
    ];
    let wait = Duration::from_secs(30);
    let aerc = Tmux::start("aerc", &dir, &["aerc"], &env);
    let command = |line: &str| {
        aerc.keys(&[":"]);
        aerc.text(line);
        aerc.keys(&["Enter"]);
    };

    // The message list shows the real subject; the sidebar every folder.
    aerc.wait_for(
        &[Conversation::SUBJECT, "Projects", "Sent", "Drafts", "Trash"],
        wait,
    );
    // Opened: the plaintext and the attachment.
    aerc.keys(&["Enter"]);
    let viewer = aerc.wait_for(&[Conversation::PLAINTEXT, Conversation::ATTACHMENT], wait);
    assert!(!viewer.contains("BEGIN PGP"), "{viewer}");
    aerc.keys(&["q"]);
    aerc.wait_for(&[Conversation::SUBJECT], wait);

    // Written and sent: ciphertext at Bob's provider and in Sent, and Bob
    // reads it with Alice's valid signature.
    command(&format!(
        "compose -H \"To: {}\" -H \"Subject: Composed in aerc\" aerc-canary",
        BOB.0
    ));
    aerc.wait_for(&["Send this email"], wait);
    aerc.keys(&["y"]);
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 2, Conversation::WAIT);
    Conversation::assert_ciphertext(at_bob.last().expect("sent"), "aerc-canary", "aerc's mail");
    let sent = provider.wait_for_messages(ALICE.0, "Sent", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&sent[0], "aerc-canary", "aerc's Sent copy");
    conversation.assert_bob_reads_signed(&["aerc-canary"]);

    // Postponed: a draft, ciphertext in Drafts.
    command(&format!(
        "compose -H \"To: {}\" -H \"Subject: A draft in aerc\" aerc-draft-canary",
        BOB.0
    ));
    aerc.wait_for(&["Send this email"], wait);
    aerc.keys(&["p"]);
    let drafts = provider.wait_for_messages(ALICE.0, "Drafts", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&drafts[0], "aerc-draft-canary", "aerc's draft");

    // Moved to Trash, still ciphertext there.
    aerc.wait_for(&[Conversation::SUBJECT], wait);
    command("move Trash");
    let trash = provider.wait_for_messages(ALICE.0, "Trash", 1, Conversation::WAIT);
    Conversation::assert_ciphertext(&trash[0], Conversation::PLAINTEXT, "Trash");

    // New mail, while aerc is open.
    conversation.bob_writes("Arrived in aerc", "aerc-new");
    aerc.wait_for(&["Arrived in aerc"], Conversation::WAIT);
    command("quit");
}
