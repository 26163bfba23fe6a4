//! Thunderbird itself (Debian's ESR, under Xvfb) in front of a running
//! gateway and the test provider (issue 18): the profile `gateway
//! thunderbird-profile` writes (what Thunderbird's account wizard writes for
//! README's settings), driven through Marionette and read back from
//! Thunderbird's own state. Checked: no command of Thunderbird's gets
//! BAD or NO from the gateway (each would be an alert dialog), no dialog is
//! open, every server folder is in the folder pane (a subscribed one made
//! at the provider too), and the Inbox lists the real subject of an
//! encrypted message, which opens with its plaintext and its attachment;
//! a message written in Thunderbird's composer is sent encrypted and its
//! Sent copy is ciphertext at the provider; a draft is ciphertext in Drafts
//! and opens; a deleted message moves to Trash; and new mail is listed
//! while Thunderbird is open, through IMAP IDLE. Then Thunderbird is started
//! again and left alone: its own start-up login, folder listing and mail
//! check list what came while it was closed, with no command refused and no
//! dialog.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{read, workspace_root, Conversation};

const ALICE: (&str, &str) = Conversation::ALICE;
const BOB: (&str, &str) = Conversation::BOB;
const PLAINTEXT: &str = Conversation::PLAINTEXT;

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

impl Running {
    /// Thunderbird on its own virtual display, with this profile, logging
    /// its IMAP conversation to `imap_log`.
    fn start(profile: &Path, imap_log: &Path) -> Self {
        Running(
            Command::new("xvfb-run")
                .args([
                    "-a",
                    "-s",
                    "-screen 0 1280x1024x24",
                    "thunderbird",
                    "--profile",
                ])
                .arg(profile)
                .args(["--marionette", "-remote-allow-system-access", "--no-remote"])
                // sync: every line written as it is logged, so a test that kills
                // Thunderbird keeps the end; timestamp: when each was said.
                .env("MOZ_LOG", "timestamp,sync,IMAP:5")
                .env("MOZ_LOG_FILE", imap_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("xvfb-run thunderbird"),
        )
    }

    /// Waits for Thunderbird to finish quitting (it writes its preferences
    /// and saved logins on the way out), then ends what is left.
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The profile as `gateway thunderbird-profile` writes it, plus the test's
/// own preferences (Marionette, no first-run prompts) and `extra`.
fn profile(dir: &Path, marionette: u16, extra: &str) {
    let template = std::fs::read_to_string(workspace_root().join("tests/thunderbird/user.js"))
        .expect("test preferences");
    let prefs = template.replace("{MARIONETTE_PORT}", &marionette.to_string());
    std::fs::write(dir.join("user.js"), format!("{prefs}{extra}")).expect("user.js");
}

/// Thunderbird's side of the IMAP conversation and the server's answers,
/// from its MOZ_LOG file, each line whole: when it was said and on which
/// connection (its address and selected folder), for a developer reading
/// a failure.
fn imap_log_lines(log: &Path) -> Vec<String> {
    let mut name = log.as_os_str().to_owned();
    name.push(".moz_log");
    std::fs::read_to_string(name)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("SendData: ") || l.contains("CreateNewLineFromSocket: "))
        .map(str::to_string)
        .collect()
}

/// What was said on those lines, without the logger's prefix.
fn spoken(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            l.split_once("SendData: ")
                .or_else(|| l.split_once("CreateNewLineFromSocket: "))
                .map(|(_, rest)| rest.to_string())
        })
        .collect()
}

/// Tagged BAD or NO answers: each is an alert in front of the user.
fn refused(said: &[String]) -> Vec<&String> {
    said.iter()
        .filter(|l| {
            let mut words = l.split_whitespace();
            words
                .next()
                .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
                && matches!(words.next(), Some("BAD" | "NO"))
        })
        .collect()
}

fn no_dialog(windows: &serde_json::Value) {
    let windows = windows.as_array().expect("windows");
    assert!(
        windows.iter().all(|w| w.as_str() != Some("alert:alert")
            && w.as_str() != Some("common-dialog")
            && !w.as_str().unwrap_or_default().contains("commonDialog")),
        "a dialog is open: {windows:?}"
    );
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
    let conversation = Conversation::start();
    let Conversation {
        provider,
        alice,
        bob,
        root,
    } = &conversation;
    let wait = Conversation::WAIT;

    let marionette = testbed::free_port();
    let dir = root.path().join("thunderbird");
    let profile_dir = dir.join("profile");
    // The profile as a user makes it: one command, nothing typed.
    let written = alice.ok(&[
        "thunderbird-profile",
        profile_dir.to_str().expect("path"),
        "--name",
        "Alice",
    ]);
    assert!(written.contains("thunderbird --profile"), "{written}");
    let as_written = std::fs::read_to_string(profile_dir.join("prefs.js")).expect("prefs.js");
    // The first start stores the password in Thunderbird's password manager
    // (what a person ticks in the prompt) before Thunderbird logs in.
    profile(
        &profile_dir,
        marionette,
        "user_pref(\"mail.server.server1.login_at_startup\", false);\n\
         user_pref(\"mail.server.server1.check_new_mail\", false);\n",
    );
    let imap_log = dir.join("imap.log");
    let started = Instant::now();
    let thunderbird = Running::start(&profile_dir, &imap_log);
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
    let mut delivered_after = None;
    if !first.is_empty() {
        let asked = Instant::now();
        conversation.bob_writes("Arrived while open", "later");
        // At the provider first: a slow delivery is not Thunderbird's or
        // the gateway's failure to show it.
        provider.wait_for_messages(ALICE.0, "INBOX", 1, wait);
        delivered_after = Some(asked.elapsed());
    }
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let out = driver.wait_with_output().expect("driver");
    let idle: serde_json::Value = serde_json::from_str(rest.trim()).unwrap_or_default();
    let took = started.elapsed();
    thunderbird.finish();
    let whole = imap_log_lines(&imap_log);
    let said = spoken(&whole);
    assert!(
        out.status.success(),
        "driving Thunderbird failed: {first}{rest}\n{}\nIMAP:\n{}",
        String::from_utf8_lossy(&out.stderr),
        said.join("\n")
    );
    let state: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    println!("Thunderbird, started to done in {took:?}: {state}");

    // No command refused: each BAD or NO is an alert in front of the user.
    let refused_first = refused(&said);
    assert!(
        refused_first.is_empty(),
        "refused: {refused_first:?}\nIMAP:\n{}",
        said.join("\n")
    );
    assert!(
        said.iter().any(|l| l.contains("NAMESPACE (("))
            && said.iter().any(|l| l.starts_with("* ID (")),
        "NAMESPACE and ID answered:\n{}",
        said.join("\n")
    );
    assert_eq!(state["discovered"], 0, "{state}");
    no_dialog(&state["windows"]);
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
    let at_bob = read(bob, BOB, "INBOX");
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
    // Thunderbird's side of the first start, kept for the developer.
    let kept = workspace_root().join("target/thunderbird-imap.log");
    let _ = std::fs::write(&kept, whole.join("\n"));
    if !idle["now"].to_string().contains("Arrived while open") {
        let tail = &whole[whole.len().saturating_sub(80)..];
        let gateway_log = alice.log_text();
        let gateway_lines: Vec<&str> = gateway_log.lines().collect();
        panic!(
            "new mail not seen without a restart: {idle}; at the provider after {delivered_after:?}; \
             Thunderbird's IMAP (whole in {}), the end:\n{}\n\nThe gateway's log, the end:\n{}",
            kept.display(),
            tail.join("\n"),
            gateway_lines[gateway_lines.len().saturating_sub(150)..].join("\n")
        );
    }
    println!("new mail listed after {} s", idle["seconds"]);
    assert!(
        said.iter().any(|l| l.trim_end().ends_with(" IDLE")),
        "Thunderbird did not idle:\n{}",
        said.join("\n")
    );

    // Started again, as a person starts it every day: Thunderbird itself
    // logs in with the saved password, lists the folders and checks the
    // Inbox, which holds mail that came while it was closed.
    conversation.bob_writes("While Thunderbird was closed", "closed");
    provider.wait_for_messages(ALICE.0, "INBOX", 2, wait);
    // Thunderbird saved the first start's override in prefs.js; the second
    // start uses the settings exactly as `gateway thunderbird-profile` wrote them.
    profile(&profile_dir, marionette, &as_written);
    let second_log = dir.join("imap-restart.log");
    let restarted = Instant::now();
    let thunderbird = Running::start(&profile_dir, &second_log);
    let out = Command::new("python3")
        .arg(workspace_root().join("tests/thunderbird/drive.py"))
        .args([
            "restart",
            &marionette.to_string(),
            "While Thunderbird was closed",
        ])
        .output()
        .expect("python3");
    thunderbird.finish();
    let said = spoken(&imap_log_lines(&second_log));
    assert!(
        out.status.success(),
        "driving Thunderbird after a restart failed: {}{}\nIMAP:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        said.join("\n")
    );
    let state: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON after a restart");
    println!(
        "Thunderbird restarted; listed new mail after {} s ({:?} in all): {state}",
        state["listed"],
        restarted.elapsed()
    );
    assert!(
        state["subjects"]
            .to_string()
            .contains("While Thunderbird was closed"),
        "Thunderbird's own start-up check did not list the new mail: {state}\nIMAP:\n{}",
        said.join("\n")
    );
    let refused_again = refused(&said);
    assert!(
        refused_again.is_empty(),
        "refused after a restart: {refused_again:?}\nIMAP:\n{}",
        said.join("\n")
    );
    no_dialog(&state["windows"]);
    let folders = state["folders"].to_string().to_lowercase();
    for folder in ["inbox", "sent", "drafts", "projects", "trash"] {
        assert!(
            folders.contains(folder),
            "{folder} missing after a restart: {folders}"
        );
    }

    let log = alice.log_text();
    assert!(!log.contains(ALICE.1), "no password in the gateway's log");
}
