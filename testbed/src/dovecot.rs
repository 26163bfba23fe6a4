//! Dovecot as the provider's IMAP server.
//!
//! Runs as root with a configuration in a temporary directory: mail belongs
//! to the `mail` user, logins come from a password file, and the listeners
//! are on free loopback ports (993-style implicit TLS and 143-style with
//! STARTTLS). Known pitfalls, found the hard way: `default_login_user` and
//! `default_internal_user` must not be root, and neither may the userdb's
//! uid, or Dovecot refuses to start or to serve.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::provider::MtaPorts;
use crate::{free_port, path_str, run, TestCa};

/// A running Dovecot; stopped when dropped.
#[derive(Debug)]
pub struct Dovecot {
    process: Child,
    dir: TempDir,
    config: PathBuf,
    /// Implicit TLS.
    pub imaps_port: u16,
    /// Plain, with STARTTLS offered.
    pub imap_port: u16,
    /// What the gateway's `ca_file` must point at.
    pub ca_file: PathBuf,
}

impl Dovecot {
    /// The certificate (PEM) its listeners present.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// Starts Dovecot with these (user, password) pairs.
    pub fn start(users: &[(&str, &str)]) -> Self {
        Self::launch(users, None, "", false)
    }

    /// Starts Dovecot with `extra` lines of configuration (a provider with
    /// other limits than Dovecot's defaults).
    pub fn start_with_config(users: &[(&str, &str)], extra: &str) -> Self {
        Self::launch(users, None, extra, false)
    }

    /// Starts Dovecot with a storage quota of `kib` KiB for every user: a
    /// provider that runs out of space (`NO [OVERQUOTA]` to APPEND) and
    /// offers QUOTA (RFC 9208) to clients.
    pub fn start_with_quota(users: &[(&str, &str)], kib: u64) -> Self {
        let quota = format!(
            "mail_plugins = $mail_plugins quota\n\
             protocol imap {{\n  mail_plugins = $mail_plugins imap_quota\n}}\n\
             plugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage={kib}K\n}}\n"
        );
        Self::launch(users, None, &quota, false)
    }

    /// Starts Dovecot, with the submission and LMTP services when `mta` is
    /// given (see [`crate::Provider`]), and `extra` configuration. With
    /// `self_signed`, its certificate is not the test CA's but one made the
    /// way home servers make theirs (`openssl req -x509`: a CA certificate
    /// of its own), in `server.pem` beside [`Dovecot::ca_file`].
    pub(crate) fn launch(
        users: &[(&str, &str)],
        mta: Option<&MtaPorts>,
        extra: &str,
        self_signed: bool,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dovecot-")
            .tempdir()
            .expect("temporary directory");
        let base = dir.path();
        // Dovecot's unprivileged processes must reach the sockets and mail.
        set_mode(base, 0o755);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(base.join(sub)).expect("creating a Dovecot directory");
            set_mode(&base.join(sub), 0o755);
        }
        run("chown", &["mail:mail", path_str(&base.join("mail"))], None);
        let ca = TestCa::create(base);
        if self_signed {
            crate::tls::self_signed(
                "/CN=localhost/O=A home server",
                &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                &ca.server_key,
                &ca.server_cert,
            );
        }
        let passwd: String = users
            .iter()
            .map(|(user, password)| format!("{user}:{{PLAIN}}{password}::::::\n"))
            .collect();
        std::fs::write(base.join("passwd"), passwd).expect("writing the password file");
        let imaps_port = free_port();
        let imap_port = free_port();
        let config = base.join("dovecot.conf");
        let (protocols, mta_config) = match mta {
            None => ("imap", String::new()),
            Some(ports) => ("imap lmtp submission", ports.dovecot_config()),
        };
        std::fs::write(
            &config,
            format!(
                r#"base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = {protocols}
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={base}/mail/%u
}}
mail_location = maildir:{base}/mail/%u
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \Trash
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
protocol imap {{
  # Tests open many sessions for one user from 127.0.0.1 (default: 10).
  mail_max_userip_connections = 200
}}
# An IDLE session hears of new mail when inotify wakes it, else at this
# interval (default 30 s, longer than a test waits for a client to list
# new mail); inotify instances are per user and shared by every Dovecot
# the tests run.
mailbox_idle_check_interval = 2 secs
{mta_config}
{extra}"#,
                base = base.display(),
                cert = ca.server_cert.display(),
                key = ca.server_key.display(),
            ),
        )
        .expect("writing dovecot.conf");
        // In the foreground (-F) as our child, so that it cannot outlive a
        // test by daemonizing and so that its output pipes are not ours.
        let process = std::process::Command::new("dovecot")
            .args(["-F", "-c", path_str(&config)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dovecot ({e}); run scripts/setup first"));
        let mut dovecot = Dovecot {
            process,
            ca_file: ca.ca_cert.clone(),
            dir,
            config,
            imaps_port,
            imap_port,
        };
        dovecot.wait_for(imaps_port);
        dovecot.wait_for(imap_port);
        if let Some(ports) = mta {
            dovecot.wait_for(ports.submissions);
            dovecot.wait_for(ports.lmtp);
        }
        dovecot
    }

    pub(crate) fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Dovecot did not open port {port}; its log:\n{}",
                self.log()
            );
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("Dovecot exited ({status}); its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Dovecot's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Runs `doveadm` against this instance (e.g. `["expunge", "-u", "alice",
    /// "mailbox", "INBOX", "uid", "3"]`) and returns its standard output.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let mut all = vec!["-c", path_str(&self.config)];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&run("doveadm", &all, None).stdout).into_owned()
    }

    /// Delivers a message into a user's mailbox (`doveadm save`), creating
    /// the mailbox if needed.
    pub fn save(&self, user: &str, mailbox: &str, message: &[u8]) {
        if !mailbox.eq_ignore_ascii_case("INBOX") && !self.mailbox_exists(user, mailbox) {
            self.doveadm(&["mailbox", "create", "-u", user, mailbox]);
        }
        run(
            "doveadm",
            &[
                "-c",
                path_str(&self.config),
                "save",
                "-u",
                user,
                "-m",
                mailbox,
            ],
            Some(message),
        );
    }

    fn mailbox_exists(&self, user: &str, mailbox: &str) -> bool {
        self.doveadm(&["mailbox", "list", "-u", user])
            .lines()
            .any(|l| l.trim() == mailbox)
    }

    /// The UIDs in a mailbox, ascending.
    pub fn uids(&self, user: &str, mailbox: &str) -> Vec<u32> {
        let out = self.doveadm(&[
            "-f", "flow", "fetch", "-u", user, "uid", "mailbox", mailbox, "all",
        ]);
        let mut uids: Vec<u32> = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("uid=")?.trim().parse().ok())
            .collect();
        uids.sort_unstable();
        uids
    }

    /// The mailbox's UIDVALIDITY.
    pub fn uidvalidity(&self, user: &str, mailbox: &str) -> u32 {
        let out = self.doveadm(&[
            "-f",
            "flow",
            "mailbox",
            "status",
            "-u",
            user,
            "uidvalidity",
            mailbox,
        ]);
        // Flow output: `NAME uidvalidity=N`.
        out.split_whitespace()
            .find_map(|field| field.strip_prefix("uidvalidity=")?.parse().ok())
            .unwrap_or_else(|| panic!("no UIDVALIDITY in {out:?}"))
    }

    /// The data directory, e.g. to look at what the provider stored.
    pub fn mail_dir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; then reap it.
        let _ = std::process::Command::new("kill")
            .arg(self.process.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("setting permissions");
}
