//! A whole mail provider on loopback: Dovecot's submission service (implicit
//! TLS + AUTH) relays to OpenSMTPD, which delivers over LMTP back into
//! Dovecot, where IMAP serves the mailboxes.
//!
//! OpenSMTPD 6.8 cannot be the TLS endpoint (its TLS fails with OpenSSL 3
//! on Debian 12), hence Dovecot in front. It also has a compiled-in queue
//! and control socket, so only one instance can run on a machine: each
//! [`Provider`] holds an exclusive lock on [`LOCK_FILE`] while its OpenSMTPD
//! runs, and tests that use one run one after another across processes.
//!
//! The machine's own OpenSMTPD, if it has one, is never stopped, and the
//! queue is never cleared of mail this suite did not leave there: while a
//! system OpenSMTPD runs, or its queue holds mail, a provider refuses to
//! start and says so (Dovecot instances, with their own `base_dir`, run
//! beside the machine's).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, path_str, Dovecot};

/// Serializes OpenSMTPD instances; holds the pid of the one running.
pub const LOCK_FILE: &str = "/tmp/letterlock-testbed-opensmtpd.lock";

/// The ports that tie Dovecot and OpenSMTPD together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MtaPorts {
    /// Dovecot submission, implicit TLS (what the gateway relays to).
    pub submissions: u16,
    /// Dovecot submission, plain with STARTTLS.
    pub submission: u16,
    /// Dovecot LMTP (OpenSMTPD delivers here).
    pub lmtp: u16,
    /// OpenSMTPD (Dovecot submission relays here).
    pub relay: u16,
    /// The largest message submission accepts, in bytes.
    pub max_mail_size: u64,
}

impl MtaPorts {
    pub(crate) fn dovecot_config(&self) -> String {
        format!(
            r#"hostname = localhost
submission_relay_host = 127.0.0.1
submission_relay_port = {relay}
submission_relay_trusted = yes
submission_max_mail_size = {max_mail_size}
protocol submission {{
  # Many concurrent submissions for one user from 127.0.0.1 (default: 10).
  mail_max_userip_connections = 200
}}
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
  inet_listener submissions {{
    port = {submissions}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
"#,
            relay = self.relay,
            submission = self.submission,
            submissions = self.submissions,
            lmtp = self.lmtp,
            max_mail_size = self.max_mail_size,
        )
    }
}

/// A running provider; everything stops when it is dropped.
#[derive(Debug)]
pub struct Provider {
    // Dropped in this order: OpenSMTPD first (it delivers into Dovecot),
    // then the lock, then Dovecot.
    smtpd: Smtpd,
    /// IMAP, LMTP and submission.
    pub dovecot: Dovecot,
    /// Submission with implicit TLS and AUTH (port 465 at a real provider).
    pub submissions_port: u16,
    /// Submission with STARTTLS (port 587 at a real provider).
    pub submission_port: u16,
    /// OpenSMTPD itself, without TLS or AUTH (for "direct" comparisons).
    pub relay_port: u16,
}

impl Provider {
    /// Starts the provider with these users: full addresses (mail for
    /// `bob@example.org` is delivered to the user `bob@example.org`) and
    /// their passwords.
    pub fn start(users: &[(&str, &str)]) -> Self {
        // Encrypted copies of 25 MB attachments exceed Dovecot's 40 MB default.
        Self::start_with_limit(users, 200 * 1024 * 1024)
    }

    /// As [`Provider::start`], with submission refusing messages larger
    /// than `max_mail_size` bytes (a provider that rejects a message).
    pub fn start_with_limit(users: &[(&str, &str)], max_mail_size: u64) -> Self {
        Self::launch(users, max_mail_size, false)
    }

    /// As [`Provider::start`], with IMAP and submission presenting a
    /// self-signed certificate made as a home server's is
    /// ([`Provider::certificate`]).
    pub fn start_self_signed(users: &[(&str, &str)]) -> Self {
        Self::launch(users, 200 * 1024 * 1024, true)
    }

    /// The certificate (PEM) IMAP and submission present.
    pub fn certificate(&self) -> PathBuf {
        self.dovecot.server_cert()
    }

    fn launch(users: &[(&str, &str)], max_mail_size: u64, self_signed: bool) -> Self {
        let ports = MtaPorts {
            submissions: free_port(),
            submission: free_port(),
            lmtp: free_port(),
            relay: free_port(),
            max_mail_size,
        };
        let dovecot = Dovecot::launch(users, Some(&ports), "", self_signed);
        let smtpd = Smtpd::start(users, &ports);
        Provider {
            smtpd,
            dovecot,
            submissions_port: ports.submissions,
            submission_port: ports.submission,
            relay_port: ports.relay,
        }
    }

    /// What the provider has stored for a user in a mailbox: the raw
    /// messages, in UID order. Waits up to `timeout` for at least `count`.
    pub fn wait_for_messages(
        &self,
        user: &str,
        mailbox: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.messages(user, mailbox);
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{user} has {} of {count} messages in {mailbox} after {timeout:?}; OpenSMTPD's log:\n{}\nDovecot's log:\n{}",
                found.len(),
                self.smtpd.log(),
                self.dovecot.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The raw messages in a user's mailbox now, in UID order, as Dovecot
    /// stored them (maildir: lines end in LF, not CRLF).
    pub fn messages(&self, user: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let mut dir = self.dovecot.mail_dir(user);
        if !mailbox.eq_ignore_ascii_case("INBOX") {
            dir = dir.join(format!(".{mailbox}"));
        }
        let mut files: Vec<((u64, u64), PathBuf)> = Vec::new();
        for sub in ["cur", "new"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                files.push((delivery_time(&name), entry.path()));
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| std::fs::read(path).ok())
            .collect()
    }

    /// OpenSMTPD's log, for failure messages.
    pub fn mta_log(&self) -> String {
        self.smtpd.log()
    }
}

/// Dovecot's maildir names start with the delivery time, `SECS.MUSECS…`;
/// delivery order is UID order.
fn delivery_time(name: &str) -> (u64, u64) {
    let mut parts = name.split('.');
    let secs = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let micros = parts
        .next()
        .and_then(|s| s.strip_prefix('M'))
        .and_then(|s| s.split('P').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    (secs, micros)
}

/// OpenSMTPD in the foreground, as our child, holding the machine-wide lock.
#[derive(Debug)]
struct Smtpd {
    process: Child,
    dir: TempDir,
    // Released after the process is gone.
    _lock: File,
}

impl Smtpd {
    fn start(users: &[(&str, &str)], ports: &MtaPorts) -> Self {
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("cannot open {LOCK_FILE}: {e}"));
        lock.lock()
            .unwrap_or_else(|e| panic!("cannot lock {LOCK_FILE}: {e}"));
        // The lock file names the instance running, and is emptied when one
        // ends with its queue delivered: a pid left in it is a test process
        // that was killed, whose instance and queued mail are ours to clear.
        let mut previous = String::new();
        let _ = lock.read_to_string(&mut previous);
        let killed = previous.trim().parse::<u32>().ok();
        if let Some(pid) = killed {
            stop_orphan(pid);
        }
        if control_socket_answers() {
            // The control process of an orphan just stopped may take a
            // moment to follow its parent.
            let deadline = Instant::now() + Duration::from_secs(5);
            while control_socket_answers() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if control_socket_answers() {
            panic!(
                "another OpenSMTPD is running on this machine (its control socket {CONTROL_SOCKET} answers). \
                 OpenSMTPD has one queue and one control socket per machine, so the tests cannot start \
                 their own beside it, and they do not stop yours: stop it while the tests run \
                 (`service opensmtpd stop`), or run them in a container or VM"
            );
        }
        // Only now, with no other OpenSMTPD running, is what a killed test
        // left in the queue cleared.
        if killed.is_some() {
            purge_queue();
        }
        let foreign = queued();
        if foreign > 0 {
            panic!(
                "OpenSMTPD's queue {QUEUE} holds {foreign} messages the tests did not leave there \
                 (this machine's own mail); a test OpenSMTPD would deliver them into its mailboxes, \
                 and the tests delete nothing of yours: let the system OpenSMTPD deliver them \
                 (`service opensmtpd start`, then `smtpctl show queue` until empty) before running the tests"
            );
        }

        let dir = tempfile::Builder::new()
            .prefix("opensmtpd-")
            .tempdir()
            .expect("temporary directory");
        let base = dir.path();
        // The value of a virtual entry must be a system user; LMTP
        // delivery uses the recipient address anyway (`rcpt-to`).
        let virtuals: String = users
            .iter()
            .filter(|(user, _)| user.contains('@'))
            .map(|(user, _)| format!("{user} mail\n"))
            .collect();
        std::fs::write(base.join("virtuals"), virtuals).expect("writing the virtual users");
        let config = base.join("smtpd.conf");
        std::fs::write(
            &config,
            format!(
                r#"smtp max-message-size 200M
table users file:{base}/virtuals
listen on 127.0.0.1 port {relay}
action "deliver" lmtp "127.0.0.1:{lmtp}" rcpt-to virtual <users>
match from any for any action "deliver"
"#,
                base = base.display(),
                relay = ports.relay,
                lmtp = ports.lmtp,
            ),
        )
        .expect("writing smtpd.conf");
        let log = File::create(base.join("smtpd.log")).expect("creating the OpenSMTPD log");
        let process = Command::new("smtpd")
            .args(["-d", "-f", path_str(&config)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start smtpd ({e}); run scripts/setup first"));
        lock.set_len(0).expect("truncating the lock file");
        lock.rewind().expect("rewinding the lock file");
        write!(lock, "{}", process.id()).expect("writing the pid");
        let mut smtpd = Smtpd {
            process,
            dir,
            _lock: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !greets(ports.relay) {
            if let Ok(Some(status)) = smtpd.process.try_wait() {
                panic!(
                    "OpenSMTPD exited ({status}); is another OpenSMTPD running (`pkill smtpd`, or stop the opensmtpd service)? Its log:\n{}",
                    smtpd.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "OpenSMTPD did not open port {}; its log:\n{}",
                ports.relay,
                smtpd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        smtpd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtpd.log")).unwrap_or_default()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        // Let it finish deliveries it accepted, so that they land in this
        // provider's Dovecot and not in the next one's.
        let deadline = Instant::now() + Duration::from_secs(10);
        while queued() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        terminate(&mut self.process);
        // Ended with nothing of ours queued: the next instance may trust
        // that whatever it finds in the queue is not ours.
        if queued() == 0 {
            let _ = self._lock.set_len(0);
        }
    }
}

/// OpenSMTPD's control socket (compiled in; one per machine).
const CONTROL_SOCKET: &str = "/var/run/smtpd.sock";

/// A running OpenSMTPD accepts on its control socket; a stale socket file
/// left by one that was killed does not.
fn control_socket_answers() -> bool {
    std::os::unix::net::UnixStream::connect(CONTROL_SOCKET).is_ok()
}

/// OpenSMTPD's queue (compiled in; shared by every instance).
const QUEUE: &str = "/var/spool/smtpd";

/// Messages in the queue: one envelope file each, `queue/XX/MSGID/…`, and
/// what `sendmail` left in `offline` for OpenSMTPD's next start.
fn queued() -> usize {
    let mut count = std::fs::read_dir(std::path::Path::new(QUEUE).join("offline"))
        .map(|d| d.count())
        .unwrap_or(0);
    for sub in ["queue", "incoming"] {
        let Ok(buckets) = std::fs::read_dir(std::path::Path::new(QUEUE).join(sub)) else {
            continue;
        };
        for bucket in buckets.flatten() {
            count += std::fs::read_dir(bucket.path())
                .map(|d| d.count())
                .unwrap_or(0);
        }
    }
    count
}

/// Mail left queued by an instance that was killed would be delivered by
/// the next one, into another test's mailboxes (the queue keeps only the
/// dispatcher's name, and every instance calls it the same). Called only
/// when the lock file says the last instance was a test's and did not end
/// cleanly, so what is queued is that test's.
fn purge_queue() {
    for sub in ["queue", "incoming", "offline", "temporary"] {
        let Ok(entries) = std::fs::read_dir(std::path::Path::new(QUEUE).join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if sub == "queue" {
                // Keep the bucket directories OpenSMTPD created.
                if let Ok(messages) = std::fs::read_dir(&path) {
                    for message in messages.flatten() {
                        let _ = std::fs::remove_dir_all(message.path());
                    }
                }
            } else if path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The server on `port` answers with its 220 greeting: accepting TCP is
/// not enough, OpenSMTPD's listener may not be serving yet.
fn greets(port: u16) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut greeting = [0u8; 4];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"220 "
}

/// A test process killed with SIGKILL leaves its OpenSMTPD running, and
/// that one would hold the control socket forever: the lock file names it.
/// Only a process started the way the tests start theirs (`smtpd -d -f
/// …/opensmtpd-…/smtpd.conf`) is stopped: the pid may have been reused, by
/// the machine's own OpenSMTPD too.
fn stop_orphan(pid: u32) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    let ours = cmdline.contains("/opensmtpd-") && cmdline.contains("smtpd.conf");
    if comm.trim() != "smtpd" || !ours {
        return;
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, a moment to finish, then SIGKILL; always reaped.
pub(crate) fn terminate(process: &mut Child) {
    let _ = Command::new("kill").arg(process.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = process.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = process.kill();
    let _ = process.wait();
}
