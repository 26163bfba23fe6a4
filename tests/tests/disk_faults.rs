//! The data directory stops taking writes under a running gateway — it fills
//! up, or its file system turns read-only — and the mail goes on: read
//! decrypted, sent encrypted, never acknowledged and lost; the log says what
//! could not be saved, and once the disk takes writes again the gateway
//! catches up.
//!
//! The data directory is a file system of its own. As root (the tests' user)
//! file modes would not stop a write, and Linux refuses an ordinary read-only
//! remount while the gateway holds files open for writing; what does turn a
//! busy file system read-only is ext4's emergency remount after an error,
//! which the read-only test triggers through ext4's `trigger_fs_error` on a
//! loop-mounted image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{header, read, send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alicepw");
const BOB: (&str, &str) = ("bob@example.org", "bobpw");
/// Has no key: a reply that quotes encrypted mail must not reach her.
const CAROL: (&str, &str) = ("carol@example.org", "carolpw");
const WAIT: Duration = Duration::from_secs(60);

fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{}@example.org>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
        subject.replace(' ', "-").to_lowercase(),
    )
}

/// A file system mounted over a directory, unmounted when dropped.
struct Mount {
    dir: PathBuf,
    /// The ext4 image behind a loop mount.
    image: Option<PathBuf>,
}

impl Mount {
    fn tmpfs(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        run(
            "mount",
            &["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"],
            dir,
        );
        Mount {
            dir: dir.to_path_buf(),
            image: None,
        }
    }

    /// A fresh ext4 image loop-mounted over `dir`, turned read-only by the
    /// kernel on its first error (`errors=remount-ro`).
    fn ext4(dir: &Path, image: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        std::fs::File::create(image)
            .and_then(|f| f.set_len(64 << 20))
            .expect("image");
        run("mkfs.ext4", &["-q", "-F"], image);
        let mount = Mount {
            dir: dir.to_path_buf(),
            image: Some(image.to_path_buf()),
        };
        mount.attach();
        mount
    }

    fn attach(&self) {
        let image = self.image.as_ref().expect("an ext4 mount");
        let image = image.to_str().expect("image path");
        run("mount", &["-o", "loop,errors=remount-ro", image], &self.dir);
        std::fs::set_permissions(
            &self.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("mode");
    }

    /// Fills the file system to the last byte.
    fn fill(&self) {
        use std::io::Write as _;
        let mut filler = std::fs::File::create(self.dir.join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while filler.write_all(&small).is_ok() {}
        let _ = filler.write_all(&[0u8]);
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).expect("filler");
    }

    /// Makes the kernel turn the ext4 file system read-only under whoever
    /// has files open on it, as after an I/O error.
    fn fail(&self) {
        let source = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.dir)
            .output()
            .expect("findmnt");
        let device = String::from_utf8_lossy(&source.stdout).trim().to_owned();
        let name = device.rsplit('/').next().unwrap_or_default();
        assert!(name.starts_with("loop"), "not the loop mount: {device:?}");
        std::fs::write(
            format!("/sys/fs/ext4/{name}/trigger_fs_error"),
            "letterlock test: the data directory turns read-only",
        )
        .expect("trigger_fs_error (needs ext4 with its sysfs attributes)");
        let probe = std::fs::write(self.dir.join("probe"), b"x");
        assert!(probe.is_err(), "the file system still takes writes");
    }

    /// After the failure: unmount, repair and mount again, as an
    /// administrator would.
    fn repair(&self) {
        run("umount", &[], &self.dir);
        let image = self.image.as_ref().expect("an ext4 mount");
        // e2fsck exits 1 when it fixed something, which it should here.
        let status = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(image)
            .output()
            .expect("e2fsck");
        assert!(
            matches!(status.status.code(), Some(0 | 1)),
            "e2fsck: {}",
            String::from_utf8_lossy(&status.stdout)
        );
        self.attach();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn run(program: &str, args: &[&str], target: &Path) {
    let out = Command::new(program)
        .args(args)
        .arg(target)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} {} failed (the test needs root, tmpfs and loop mounts): {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two gateways whose keys are known to each other, Alice's data directory
/// on `disk`, and a message Bob sent her read once (archived) with
/// `canary-one` in it.
fn exchanged(
    root: &Path,
    provider: &Provider,
    disk: impl FnOnce(&Path) -> Mount,
) -> (Gateway, Gateway, Mount) {
    let mut alice = Gateway::new(root, "alice");
    let mut bob = Gateway::new(root, "bob");
    let disk = disk(&alice.dir);
    alice.init(ALICE.0, provider);
    bob.init(BOB.0, provider);
    alice.start();
    bob.start();
    let hello = message(ALICE.0, BOB.0, "Hello", "First contact.");
    assert_eq!(send(&alice, ALICE, &hello, &[BOB.0]), "OK");
    provider.wait_for_messages(BOB.0, "INBOX", 1, WAIT);
    read(&bob, BOB, "INBOX");
    let first = message(BOB.0, ALICE.0, "One", "canary-one");
    assert_eq!(send(&bob, BOB, &first, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 1, WAIT);
    assert!(read(&alice, ALICE, "INBOX")[0].contains("canary-one"));
    (alice, bob, disk)
}

/// With Alice's disk taking no writes: Bob's second message is served to
/// her decrypted, her reply goes out encrypted and acknowledged, and a
/// reply-all that adds Carol (no key) is refused though the gateway could
/// not write down that the message was encrypted.
fn mail_goes_on(alice: &Gateway, bob: &Gateway, provider: &Provider) {
    let second = message(BOB.0, ALICE.0, "Two", "canary-two");
    assert_eq!(send(bob, BOB, &second, &[ALICE.0]), "OK");
    provider.wait_for_messages(ALICE.0, "INBOX", 2, WAIT);

    // Reading: served decrypted, though it cannot be archived.
    let inbox = read(alice, ALICE, "INBOX");
    assert_eq!(inbox.len(), 2);
    assert!(inbox[1].contains("canary-two"), "{}", inbox[1]);
    let status = header(&inbox[1], "Letterlock-Security").expect("status");
    assert!(status.starts_with("encrypted"), "{status}");
    // Sending: still encrypted (the keys can be read), and accepted.
    let reply = message(ALICE.0, BOB.0, "Re: Two", "canary-reply");
    assert_eq!(
        send(alice, ALICE, &reply, &[BOB.0]),
        "OK",
        "{}",
        alice.log_text()
    );
    let at_bob = provider.wait_for_messages(BOB.0, "INBOX", 2, WAIT);
    let stored = String::from_utf8_lossy(at_bob.last().expect("reply"));
    assert!(
        stored.contains("multipart/encrypted") && !stored.contains("canary-reply"),
        "{stored}"
    );

    let reply_all = format!(
        "From: {}\nTo: {}, {}\nSubject: Re: Two\nMessage-ID: <reply-all@example.org>\n\
         In-Reply-To: <two@example.org>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\n> canary-two\n",
        ALICE.0, BOB.0, CAROL.0
    );
    let answer = send(alice, ALICE, &reply_all, &[BOB.0, CAROL.0]);
    assert!(
        answer.starts_with("REFUSED")
            && answer.contains("answers or forwards an encrypted message"),
        "{answer}"
    );
    // Sent after the refusal: when it has arrived, nothing else can come.
    let later = message(ALICE.0, CAROL.0, "Lunch", "Monday?");
    assert_eq!(send(alice, ALICE, &later, &[CAROL.0]), "OK");
    let at_carol = provider.wait_for_messages(CAROL.0, "INBOX", 1, WAIT);
    assert_eq!(at_carol.len(), 1, "only the lunch message reached Carol");
    assert!(!String::from_utf8_lossy(&at_carol[0]).contains("canary"));
}

/// Both messages Bob sent are found in Alice's archive.
fn archived_again(alice: &Gateway) {
    let inbox = read(alice, ALICE, "INBOX");
    assert!(inbox[1].contains("canary-two"));
    let found = alice.json(&["search", "canary"]).to_string();
    assert!(
        found.contains("\"One\"") && found.contains("\"Two\""),
        "archived once the disk was back: {found}\n{}",
        alice.log_text()
    );
}

#[test]
fn a_full_data_directory_does_not_stop_the_mail() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB, CAROL]);
    let (mut alice, mut bob, disk) = exchanged(root.path(), &provider, |dir| {
        Mount::tmpfs(&dir.join("data"))
    });

    disk.fill();
    mail_goes_on(&alice, &bob, &provider);
    let log = alice.log_text();
    assert!(
        log.contains("not archived") && log.contains("full"),
        "the log says what was not saved:\n{log}"
    );

    // Space again: the message that was not archived is, on next read.
    disk.free();
    archived_again(&alice);
    alice.stop();
    bob.stop();
}

#[test]
fn a_data_directory_turned_read_only_does_not_stop_the_mail() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(&[ALICE, BOB, CAROL]);
    let image = root.path().join("alice-data.ext4");
    let (mut alice, mut bob, disk) = exchanged(root.path(), &provider, |dir| {
        Mount::ext4(&dir.join("data"), &image)
    });

    disk.fail();
    mail_goes_on(&alice, &bob, &provider);
    let log = alice.log_text();
    assert!(
        log.contains("not archived") && log.contains("read"),
        "the log says what was not saved and why:\n{log}"
    );

    // Repaired and mounted again, the gateway restarts on the same data
    // and archives what it could not.
    alice.stop();
    disk.repair();
    alice.start();
    archived_again(&alice);
    alice.stop();
    bob.stop();
}
