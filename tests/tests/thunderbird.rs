//! Thunderbird itself (Debian's ESR, under Xvfb) in front of a running
//! gateway and the test provider (issue 18): the profile its account wizard
//! writes for README's settings, driven through Marionette and read back
//! from Thunderbird's own state. Checked: no command of Thunderbird's gets
//! BAD or NO from the gateway (each would be an alert dialog), no dialog is
//! open, every server folder is in the folder pane (a subscribed one made
//! at the provider too), and the Inbox lists the real subject of an
//! encrypted message, which opens with its plaintext and its attachment;
//! a message written in Thunderbird's composer is sent encrypted and its
//! Sent copy is ciphertext at the provider; a draft is ciphertext in Drafts
//! and opens; a deleted message moves to Trash; and new mail is listed
//! while Thunderbird is open, through IMAP IDLE.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{read, send, workspace_root, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const BOB: (&str, &str) = ("bob@example.org", "bobpw");
/// Bob's words inside the encryption.
const PLAINTEXT: &str = "meet at the north gate";

/// Thunderbird and its Xvfb, killed together however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // The whole process group: xvfb-run, Xvfb and Thunderbird.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn profile(dir: &std::path::Path, gateway: &Gateway, marionette: u16) {
    let template = std::fs::read_to_string(workspace_root().join("tests/thunderbird/user.js"))
        .expect("profile template");
    let prefs = template
        .replace("{IMAP_PORT}", &gateway.imap_port.to_string())
        .replace("{SMTP_PORT}", &gateway.smtp_port.to_string())
        .replace("{MARIONETTE_PORT}", &marionette.to_string())
        .replace("{USER_URL}", &ALICE.0.replace('@', "%40"))
        .replace("{USER}", ALICE.0)
        .replace("{NAME}", "Alice");
    std::fs::create_dir_all(dir).expect("profile dir");
    std::fs::write(dir.join("user.js"), prefs).expect("user.js");
}

#[test]
fn thunderbird_sees_every_folder_and_no_error() {
    assert!(
        Command::new("thunderbird")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "Thunderbird is not installed: run scripts/setup"
    );
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB]);
    let alice = Gateway::running(root.path(), "alice", ALICE.0, &provider);
    let bob = Gateway::running(root.path(), "bob", BOB.0, &provider);
    let wait = Duration::from_secs(60);

    // Autocrypt first (Thunderbird's first contact is not what is tested):
    // Alice writes in the clear, Bob answers encrypted.
    let hello = format!(
        "From: {0}\nTo: {1}\nSubject: Hello\nMessage-ID: <hello@example.org>\n\nHi Bob.\n",
        ALICE.0, BOB.0
    );
    assert_eq!(send(&alice, ALICE, &hello, &[BOB.0]), "OK");
    provider.wait_for_messages(BOB.0, "INBOX", 1, wait);
    read(&bob, BOB, "INBOX");
    let plans = format!(
        "From: {0}\nTo: {1}\nSubject: Plans for Friday\nMessage-ID: <plans@example.org>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
         Content-Type: text/plain; charset=utf-8\n\nThe details, encrypted: {PLAINTEXT}\n--b\n\
         Content-Type: application/pdf; name=\"agenda.pdf\"\n\
         Content-Disposition: attachment; filename=\"agenda.pdf\"\n\
         Content-Transfer-Encoding: base64\n\nJVBERi0xLjQKJcOkw7zDtsOfCg==\n--b--\n",
        BOB.0, ALICE.0
    );
    assert_eq!(send(&bob, BOB, &plans, &[ALICE.0]), "OK");
    let stored = provider.wait_for_messages(ALICE.0, "INBOX", 1, wait);
    let at_provider = String::from_utf8_lossy(&stored[0]).into_owned();
    assert!(
        at_provider.contains("multipart/encrypted")
            && !at_provider.contains("Plans for Friday")
            && !at_provider.contains(PLAINTEXT),
        "the provider holds ciphertext only"
    );
    // A folder made at the provider by another client, subscribed there.
    provider
        .dovecot
        .doveadm(&["mailbox", "create", "-s", "-u", ALICE.0, "Projects"]);

    let marionette = testbed::free_port();
    let dir = root.path().join("thunderbird");
    profile(&dir.join("profile"), &alice, marionette);
    let imap_log = dir.join("imap.log");
    let started = Instant::now();
    let thunderbird = Running(
        Command::new("xvfb-run")
            .args([
                "-a",
                "-s",
                "-screen 0 1280x1024x24",
                "thunderbird",
                "--profile",
            ])
            .arg(dir.join("profile"))
            .args(["--marionette", "-remote-allow-system-access", "--no-remote"])
            .env("MOZ_LOG", "IMAP:5")
            .env("MOZ_LOG_FILE", &imap_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("xvfb-run thunderbird"),
    );
    // Kept after the test, for the developer, if driving fails.
    let screenshot = workspace_root().join("target/thunderbird-failure.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut driver = Command::new("python3")
        .arg(workspace_root().join("tests/thunderbird/drive.py"))
        .env("LETTERLOCK_TB_SCREENSHOT", &screenshot)
        .args([
            marionette.to_string(),
            "127.0.0.1".into(),
            alice.imap_port.to_string(),
            "127.0.0.1".into(),
            alice.smtp_port.to_string(),
            ALICE.0.into(),
            ALICE.1.into(),
            BOB.0.into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    // The driver's first line is Thunderbird's state; then it waits in the
    // Inbox for new mail, which Bob sends now.
    let mut first = String::new();
    let mut stdout = BufReader::new(driver.stdout.take().expect("stdout"));
    let _ = stdout.read_line(&mut first);
    if !first.is_empty() {
        let later = format!(
            "From: {0}\nTo: {1}\nSubject: Arrived while open\nMessage-ID: <later@example.org>\n\n\
             New mail.\n",
            BOB.0, ALICE.0
        );
        assert_eq!(send(&bob, BOB, &later, &[ALICE.0]), "OK");
    }
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let out = driver.wait_with_output().expect("driver");
    let idle: serde_json::Value = serde_json::from_str(rest.trim()).unwrap_or_default();
    let took = started.elapsed();
    drop(thunderbird);
    let conversation = std::fs::read_to_string(dir.join("imap.log.moz_log")).unwrap_or_default();
    let said: Vec<&str> = conversation
        .lines()
        .filter_map(|l| {
            l.split_once("SendData: ")
                .or_else(|| l.split_once("CreateNewLineFromSocket: "))
                .map(|(_, rest)| rest)
        })
        .collect();
    assert!(
        out.status.success(),
        "driving Thunderbird failed: {first}{rest}\n{}\nIMAP:\n{}",
        String::from_utf8_lossy(&out.stderr),
        said.join("\n")
    );
    let state: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    println!("Thunderbird, started to done in {took:?}: {state}");

    // No command refused: each BAD or NO is an alert in front of the user.
    let refused: Vec<&&str> = said
        .iter()
        .filter(|l| {
            let mut words = l.split_whitespace();
            words
                .next()
                .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
                && matches!(words.next(), Some("BAD" | "NO"))
        })
        .collect();
    assert!(
        refused.is_empty(),
        "refused: {refused:?}\nIMAP:\n{}",
        said.join("\n")
    );
    assert!(
        said.iter().any(|l| l.contains("NAMESPACE (("))
            && said.iter().any(|l| l.starts_with("* ID (")),
        "NAMESPACE and ID answered:\n{}",
        said.join("\n")
    );
    assert_eq!(state["discovered"], 0, "{state}");
    let windows = state["windows"].as_array().expect("windows");
    assert!(
        windows.iter().all(|w| w.as_str() != Some("alert:alert")
            && w.as_str() != Some("common-dialog")
            && !w.as_str().unwrap_or_default().contains("commonDialog")),
        "a dialog is open: {windows:?}"
    );
    let folders: Vec<&str> = state["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    for folder in ["INBOX", "Sent", "Drafts", "Projects", "Trash"] {
        assert!(
            folders.iter().any(|f| f.eq_ignore_ascii_case(folder)),
            "{folder} missing from {folders:?}"
        );
    }
    let subjects = state["subjects"].to_string();
    assert!(subjects.contains("Plans for Friday"), "Inbox: {subjects}");
    // Opened, as Thunderbird's MIME parser reads it: the plaintext and the
    // attachment.
    let opened = &state["opened"];
    assert!(
        opened["body"]
            .as_str()
            .unwrap_or_default()
            .contains(PLAINTEXT),
        "{opened}"
    );
    assert_eq!(
        opened["attachments"],
        serde_json::json!(["agenda.pdf"]),
        "{opened}"
    );
    // Written in Thunderbird's composer and sent: ciphertext at Bob's
    // provider and in Alice's Sent, readable by Bob through his gateway.
    assert_eq!(state["sent"]["result"], 0, "{state}");
    let canary = "thunderbird-canary";
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 2, wait);
    let delivered = String::from_utf8_lossy(at_bob.last().expect("delivered"));
    assert!(
        delivered.contains("multipart/encrypted") && !delivered.contains(canary),
        "{delivered}"
    );
    let sent_copy = provider.wait_for_messages(ALICE.0, "Sent", 1, wait);
    let sent_copy = String::from_utf8_lossy(&sent_copy[0]);
    assert!(
        sent_copy.contains("multipart/encrypted") && !sent_copy.contains(canary),
        "{sent_copy}"
    );
    let at_bob = read(&bob, BOB, "INBOX");
    assert!(
        at_bob
            .iter()
            .any(|m| m.contains(canary) && m.contains("Written in Thunderbird")),
        "Bob reads it: {at_bob:?}"
    );
    // A draft: ciphertext in Drafts at the provider, and it opens.
    let draft = &state["draft"];
    assert_eq!(draft["result"], 0, "{state}");
    assert_eq!(
        draft["subjects"],
        serde_json::json!(["A draft in Thunderbird"]),
        "{draft}"
    );
    assert!(
        draft["body"]
            .as_str()
            .unwrap_or_default()
            .contains("draft-canary"),
        "{draft}"
    );
    let drafts = provider.wait_for_messages(ALICE.0, "Drafts", 1, wait);
    let stored_draft = String::from_utf8_lossy(&drafts[0]);
    assert!(
        stored_draft.contains("multipart/encrypted") && !stored_draft.contains("draft-canary"),
        "{stored_draft}"
    );
    // Deleted: moved to Trash, still ciphertext there.
    let deleted = &state["deleted"];
    assert_eq!(deleted["status"], 0, "{state}");
    assert_eq!(
        deleted["trash"],
        serde_json::json!(["Plans for Friday"]),
        "{deleted}"
    );
    let trash = provider.wait_for_messages(ALICE.0, "Trash", 1, wait);
    assert!(!String::from_utf8_lossy(&trash[0]).contains(PLAINTEXT));
    // New mail shows up while Thunderbird is open (IDLE), decrypted.
    assert!(
        idle["now"].to_string().contains("Arrived while open"),
        "new mail not seen without a restart: {idle}"
    );
    println!("new mail listed after {} s", idle["seconds"]);
    assert!(
        said.iter().any(|l| l.trim_end().ends_with(" IDLE")),
        "Thunderbird did not idle:\n{}",
        said.join("\n")
    );
    let log = alice.log_text();
    assert!(!log.contains(ALICE.1), "no password in the gateway's log");
}
