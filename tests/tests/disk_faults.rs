//! The data directory stops taking writes under a running gateway: mail is
//! still read decrypted and sent encrypted, the log says what could not be
//! saved, and once the disk takes writes again the gateway catches up.
//!
//! The directory is a small tmpfs of its own, filled up: as root (the
//! tests' user) file modes would not stop a write, and Linux refuses to
//! remount a file system read-only while the gateway holds files open for
//! writing (a kernel's emergency remount after I/O errors would, and fails
//! the writes the same way).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{header, read, send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const BOB: (&str, &str) = ("bob@example.org", "bobpw");

fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{}@example.org>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
        subject.replace(' ', "-").to_lowercase(),
    )
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        mount(&["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"], dir);
        Mount(dir.to_path_buf())
    }

    /// Fills the file system to the last byte.
    fn fill(&self) {
        use std::io::Write as _;
        let mut filler = std::fs::File::create(self.0.join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while filler.write_all(&small).is_ok() {}
        let _ = filler.write_all(&[0u8]);
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("filler");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], dir: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .expect("mount");
    assert!(
        out.status.success(),
        "mount {args:?} failed (the test needs root and may mount tmpfs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_full_data_directory_does_not_stop_the_mail() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB]);
    let mut alice = Gateway::new(root.path(), "alice");
    let mut bob = Gateway::new(root.path(), "bob");
    let disk = Mount::tmpfs(&alice.dir.join("data"));
    alice.init(ALICE.0, &provider);
    bob.init(BOB.0, &provider);
    alice.start();
    bob.start();
    let wait = Duration::from_secs(60);

    // Keys are exchanged while the disk is fine.
    let hello = message(ALICE.0, BOB.0, "Hello", "First contact.");
    assert_eq!(send(&alice, ALICE, &hello, &[BOB.0]), "OK");
    provider.wait_for_messages(BOB.0, "INBOX", 1, wait);
    read(&bob, BOB, "INBOX");
    let first = message(BOB.0, ALICE.0, "One", "canary-one");
    assert_eq!(send(&bob, BOB, &first, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 1, wait);
    assert!(read(&alice, ALICE, "INBOX")[0].contains("canary-one"));

    disk.fill();
    let second = message(BOB.0, ALICE.0, "Two", "canary-two");
    assert_eq!(send(&bob, BOB, &second, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 2, wait);

    // Reading: served decrypted, though it cannot be archived.
    let inbox = read(&alice, ALICE, "INBOX");
    assert_eq!(inbox.len(), 2);
    assert!(inbox[1].contains("canary-two"), "{}", inbox[1]);
    let status = header(&inbox[1], "Letterlock-Security").expect("status");
    assert!(status.starts_with("encrypted"), "{status}");
    // Sending: still encrypted (the keys can be read), and accepted.
    let reply = message(ALICE.0, BOB.0, "Re: Two", "canary-reply");
    assert_eq!(send(&alice, ALICE, &reply, &[BOB.0]), "OK");
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 2, wait);
    let stored = String::from_utf8_lossy(at_bob.last().expect("reply"));
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("canary-reply"),
        "{stored}"
    );
    let log = alice.log_text();
    assert!(
        log.contains("not archived") && log.contains("full"),
        "the log says what was not saved:\n{log}"
    );

    // Space again: the message that was not archived is, on next read.
    disk.free();
    let inbox = read(&alice, ALICE, "INBOX");
    assert!(inbox[1].contains("canary-two"));
    let found = alice.json(&["search", "canary"]).to_string();
    assert!(
        found.contains("\"One\"") && found.contains("\"Two\""),
        "archived once the disk was back: {found}\n{}",
        alice.log_text()
    );
    alice.stop();
    bob.stop();
}
