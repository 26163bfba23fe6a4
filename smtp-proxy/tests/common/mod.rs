//! The SMTP proxy between real clients (Python smtplib, swaks) and a real
//! provider (testbed::Provider), with gpg reading what arrived.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use autocrypt::PreferEncrypt;
use keystore::{KeySource, Keystore, Unlock};
use net_edge::LocalCertificate;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use smtp_proxy::decision::Policy;
use smtp_proxy::outgoing::Account;
use smtp_proxy::relay::{Endpoint, Provider as Upstream, Security};
use smtp_proxy::server::{AccountConfig, Config, Server};
use smtp_proxy::session::Limits;
use tempfile::TempDir;
use testbed::Provider;

pub const ALICE: &str = "alice@example.org";
pub const PASSWORD: &str = "secret-pw";
/// Provider users with keys the vault knows.
pub const WITH_KEYS: [&str; 5] = [
    "bob@example.org",
    "carol@example.org",
    "dave@example.org",
    "frank@example.org",
    "grace@example.org",
];
/// A provider user the vault has no key for.
pub const ERIN: &str = "erin@example.org";
/// Has a key in the vault, but no mailbox at the provider.
pub const GHOST: &str = "ghost@example.org";

pub struct Fixture {
    pub provider: Provider,
    pub proxy_port: u16,
    pub keystore: Keystore,
    /// Every user's key pair (alice's too).
    pub keys: BTreeMap<String, Cert>,
    pub dir: TempDir,
    /// Whether clients STARTTLS before AUTH ([`Setup::local_tls`]).
    local_tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub struct Setup {
    pub policy: Policy,
    /// Tell the gateway about the provider's CA (a missing one is the
    /// "untrusted certificate" fault).
    pub trust_provider: bool,
    /// Reach the provider through a [`testbed::BreakingLink`] that cuts
    /// each connection after this many bytes; `None`: directly.
    pub cut_after: Option<usize>,
    /// Implicit TLS (port 465 style) or STARTTLS (587 style).
    pub security: Security,
    pub idle_timeout: Duration,
    /// The provider refuses messages larger than this (bytes).
    pub provider_max_size: Option<u64>,
    /// Alice's account submits to this plain-SMTP port (a
    /// [`testbed::HostileSmtp`]) instead of the provider; Erin then gets an
    /// account of her own at the real provider.
    pub hostile: Option<u16>,
    /// How long the provider may take for each command.
    pub provider_timeout: Duration,
    /// The proxy has a local certificate (clients must STARTTLS before
    /// AUTH); without one it speaks plain SMTP on loopback.
    pub local_tls: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            policy: Policy::Opportunistic,
            trust_provider: true,
            cut_after: None,
            security: Security::Tls,
            idle_timeout: Duration::from_secs(60),
            provider_max_size: None,
            hostile: None,
            provider_timeout: smtp_proxy::relay::DEFAULT_TIMEOUT,
            local_tls: true,
        }
    }
}

pub async fn fixture(setup: Setup) -> Fixture {
    let mut users = vec![(ALICE, PASSWORD), (ERIN, PASSWORD)];
    users.extend(WITH_KEYS.iter().map(|u| (*u, PASSWORD)));
    let provider = match setup.provider_max_size {
        Some(limit) => Provider::start_with_limit(&users, limit),
        None => Provider::start(&users),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let keystore = Keystore::create(&dir.path().join("data"), Unlock::KeyFile)
        .await
        .expect("vault");
    let now = SystemTime::now();
    let created = now - Duration::from_secs(60);
    let mut keys = BTreeMap::new();
    let alice = autocrypt::key::generate(ALICE, created).expect("alice's key");
    keystore
        .put_identity(ALICE, &alice, PreferEncrypt::Mutual, now)
        .await
        .expect("identity");
    keys.insert(ALICE.to_string(), alice);
    for user in WITH_KEYS.iter().copied().chain([GHOST]) {
        let cert = autocrypt::key::generate(user, created).expect("key");
        keystore
            .record_key(&cert, KeySource::Import, now)
            .await
            .expect("peer key");
        keys.insert(user.to_string(), cert);
    }
    let direct = match setup.security {
        Security::StartTls => provider.submission_port,
        _ => provider.submissions_port,
    };
    let port = match setup.cut_after {
        Some(bytes) => testbed::BreakingLink::start(direct, bytes).port,
        None => direct,
    };
    let real = Upstream {
        endpoint: Endpoint {
            host: "localhost".into(),
            port,
            security: setup.security,
            ca_file: setup
                .trust_provider
                .then(|| provider.dovecot.ca_file.clone()),
            pinned: None,
        },
        timeout: setup.provider_timeout,
    };
    let account = |address: &str, provider: Upstream| AccountConfig {
        account: Account {
            address: address.into(),
            policy: setup.policy,
        },
        username: address.into(),
        provider,
    };
    let accounts = match setup.hostile {
        None => vec![account(ALICE, real)],
        Some(hostile) => {
            let erin = autocrypt::key::generate(ERIN, created).expect("erin's key");
            keystore
                .put_identity(ERIN, &erin, PreferEncrypt::Mutual, now)
                .await
                .expect("identity");
            let hostile = Upstream {
                endpoint: Endpoint {
                    host: "localhost".into(),
                    port: hostile,
                    security: Security::Plain,
                    ca_file: None,
                    pinned: None,
                },
                timeout: setup.provider_timeout,
            };
            vec![account(ALICE, hostile), account(ERIN, real)]
        }
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        hostname: "localhost".into(),
        tls: setup
            .local_tls
            .then(|| LocalCertificate::generate(&["localhost"]).expect("certificate")),
        limits: Limits::default(),
        idle_timeout: setup.idle_timeout,
        accounts,
    };
    let server = Server::bind(config, keystore.clone(), None)
        .await
        .expect("binding the proxy");
    let proxy_port = server.local_addr().expect("address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    Fixture {
        provider,
        proxy_port,
        keystore,
        keys,
        dir,
        local_tls: setup.local_tls,
        stop: Some(stop),
        server: Some(server),
    }
}

impl Fixture {
    /// Stops the proxy (finishing what it is delivering).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Sends with Python's smtplib through the proxy (STARTTLS unless the
    /// proxy has no local certificate, AUTH PLAIN):
    /// `ok`, or the refusal as `CODE text`.
    pub async fn send_smtplib(&self, from: &str, rcpts: &[&str], message: &[u8]) -> String {
        self.send_smtplib_as(ALICE, PASSWORD, from, rcpts, message)
            .await
    }

    /// As [`Fixture::send_smtplib`], logging in with these credentials.
    pub async fn send_smtplib_as(
        &self,
        user: &str,
        password: &str,
        from: &str,
        rcpts: &[&str],
        message: &[u8],
    ) -> String {
        let file = self.dir.path().join(format!("msg-{}.eml", rand_name()));
        std::fs::write(&file, message).expect("writing the message");
        let args = vec![
            self.proxy_port.to_string(),
            user.to_string(),
            password.to_string(),
            from.to_string(),
            rcpts.join(","),
            file.display().to_string(),
            if self.local_tls { "starttls" } else { "plain" }.to_string(),
        ];
        let out = blocking(move || {
            Command::new("python3")
                .arg("-c")
                .arg(SMTPLIB)
                .args(args)
                .output()
        })
        .await;
        assert!(
            out.status.success(),
            "smtplib client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Sends with swaks through the proxy (STARTTLS, AUTH, PIPELINING);
    /// returns swaks' transcript and whether it succeeded.
    pub async fn send_swaks(&self, rcpts: &[&str], message: &[u8]) -> (bool, String) {
        let file = self.dir.path().join(format!("msg-{}.eml", rand_name()));
        std::fs::write(&file, message).expect("writing the message");
        let args = vec![
            "--server".to_string(),
            format!("127.0.0.1:{}", self.proxy_port),
            "--tls".into(),
            "--auth".into(),
            "PLAIN".into(),
            "--auth-user".into(),
            ALICE.into(),
            "--auth-password".into(),
            PASSWORD.into(),
            "--from".into(),
            ALICE.into(),
            "--to".into(),
            rcpts.join(","),
            "--pipeline".into(),
            "--data".into(),
            file.display().to_string(),
            "--timeout".into(),
            "120".into(),
        ];
        let out = blocking(move || Command::new("swaks").args(args).output()).await;
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// A GnuPG home holding `user`'s secret key and everybody's public keys.
    pub fn gpg_home(&self, user: &str) -> PathBuf {
        let home = self.dir.path().join(format!("gnupg-{user}"));
        if home.exists() {
            return home;
        }
        std::fs::create_dir(&home).expect("gnupg home");
        set_private(&home);
        let secret = self.keys[user].as_tsk().armored().to_vec().expect("tsk");
        gpg(&home, &["--import"], &secret);
        for cert in self.keys.values() {
            let public = cert.armored().to_vec().expect("cert");
            gpg(&home, &["--import"], &public);
        }
        home
    }

    /// Decrypts and verifies a stored message's PGP/MIME payload as `user`
    /// with gpg: (plaintext, gpg's status lines).
    pub fn gpg_decrypt(&self, user: &str, stored: &[u8]) -> (Vec<u8>, String) {
        let home = self.gpg_home(user);
        let armored = armored_block(stored);
        let out = gpg_output(
            &home,
            &["--status-fd", "2", "--decrypt"],
            armored.as_bytes(),
        );
        assert!(
            out.status.success(),
            "gpg could not decrypt for {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The armored OpenPGP message inside a stored PGP/MIME message.
pub fn armored_block(stored: &[u8]) -> String {
    let text = String::from_utf8_lossy(stored);
    let start = text
        .find("-----BEGIN PGP MESSAGE-----")
        .unwrap_or_else(|| panic!("no PGP message in:\n{}", head(stored)));
    let end_marker = "-----END PGP MESSAGE-----";
    let end = text[start..].find(end_marker).expect("end of PGP message") + start;
    text[start..end + end_marker.len()].replace("\r\n", "\n") + "\n"
}

/// The header section, for failure messages.
pub fn head(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn gpg(home: &Path, args: &[&str], input: &[u8]) {
    let out = gpg_output(home, args, input);
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gpg_output(home: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--yes", "--trust-model", "always"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gpg (run scripts/setup)");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("gpg output");
    let _ = writer.join();
    out
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

async fn blocking<F>(f: F) -> Output
where
    F: FnOnce() -> std::io::Result<Output> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .expect("client task")
        .expect("client program (run scripts/setup)")
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst).to_string()
}

/// argv: port user password from rcpts(comma) file starttls|plain. Prints "ok" or
/// "CODE text" for the first refusal.
const SMTPLIB: &str = r#"
import smtplib, sys
port, user, password, sender, rcpts, path, security = sys.argv[1:8]
data = open(path, "rb").read()
try:
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=300)
    s.ehlo()
    if security == "starttls":
        s.starttls()
        s.ehlo()
    s.login(user, password)
    refused = s.sendmail(sender, rcpts.split(","), data)
    s.quit()
    print("ok" if not refused else "refused %r" % refused)
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print(code, text.decode(errors="replace"))
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode(errors="replace"))
"#;
