//! Harness for Letterlock's end-to-end tests: real `gateway` processes (one
//! per person, each with its own configuration, vault and ports) between
//! Python's smtplib/imaplib and a real provider (`testbed::Provider`:
//! Dovecot IMAP and submission, OpenSMTPD delivering over LMTP).
//!
//! The gateways are driven only through their command line and their
//! listeners, as a person or a mail client would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testbed::Provider;

/// The `gateway` binary of this workspace, built once per test process
/// (optimized when `LETTERLOCK_E2E_RELEASE=1`, as the load run wants).
pub fn gateway_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let release = std::env::var("LETTERLOCK_E2E_RELEASE").is_ok_and(|v| v == "1");
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "gateway", "--bins"])
                .args(release.then_some("--release"))
                .current_dir(&root)
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the gateway failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            target
                .join(if release { "release" } else { "debug" })
                .join("gateway")
        })
        .clone()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A name server on loopback that answers every query at once with
/// REFUSED: a lookup fails as it would at a resolver that will not help,
/// without the resolver's timeout on a closed port (which made each send to
/// an address without a key wait ten seconds). One per test process.
pub fn refusing_dns() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        let port = socket.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                // Same ID and question; QR set, opcode and RD kept, RA set,
                // RCODE 5 (REFUSED); no answer, authority or additional records.
                let mut reply = buf[..n].to_vec();
                reply[2] = 0x80 | (buf[2] & 0x79);
                reply[3] = 0x80 | 5;
                reply[6..12].fill(0);
                let _ = socket.send_to(&reply, from);
            }
        });
        port
    })
}

/// One person's gateway: its files, ports and (while running) process.
pub struct Gateway {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub imap_port: u16,
    pub smtp_port: u16,
    /// The local web page's port.
    pub web_port: u16,
    process: Option<Child>,
    /// Every run's log, appended.
    pub log: PathBuf,
    /// `LETTERLOCK_LOG` for the next [`Gateway::start`] (`info` unless set).
    pub log_filter: String,
}

impl Gateway {
    /// A configuration with its own data directory and loopback ports, and
    /// no DNS discovery that could leave the machine ([`refusing_dns`]).
    pub fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("gateway dir");
        let (imap_port, smtp_port, web_port) = (
            testbed::free_port(),
            testbed::free_port(),
            testbed::free_port(),
        );
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[imap]\nlisten = \"127.0.0.1:{imap_port}\"\n\
                 [smtp]\nlisten = \"127.0.0.1:{smtp_port}\"\n\
                 [web]\nlisten = \"127.0.0.1:{web_port}\"\n\
                 [dns]\nnameservers = [\"127.0.0.1:{}\"]\nrequire_dnssec = true\n",
                dir.join("data").display(),
                refusing_dns()
            ),
        )
        .expect("config");
        Gateway {
            name: name.into(),
            log: dir.join("gateway.log"),
            dir,
            config,
            imap_port,
            smtp_port,
            web_port,
            process: None,
            log_filter: "info".into(),
        }
    }

    /// A gateway for `address` at `provider`, initialised and running.
    pub fn running(root: &Path, name: &str, address: &str, provider: &Provider) -> Self {
        Self::running_with_log(root, name, address, provider, "info")
    }

    /// [`Gateway::running`] with its own `LETTERLOCK_LOG` filter.
    pub fn running_with_log(
        root: &Path,
        name: &str,
        address: &str,
        provider: &Provider,
        log_filter: &str,
    ) -> Self {
        let mut gateway = Gateway::new(root, name);
        gateway.log_filter = log_filter.into();
        gateway.init(address, provider);
        gateway.start();
        gateway
    }

    /// `gateway ARGS --config …`, its output.
    pub fn command(&self, args: &[&str]) -> Output {
        Command::new(gateway_binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("LETTERLOCK_PASSPHRASE")
            .stdin(Stdio::null())
            .output()
            .expect("running gateway")
    }

    /// Like [`Gateway::command`], requiring success; stdout as text.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "{}: gateway {args:?} failed:\n{}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        serde_json::from_str(&self.ok(&with_json)).expect("JSON output")
    }

    /// `gateway init` for `address` at the provider (users log in with
    /// their full address), without a vault passphrase.
    pub fn init(&self, address: &str, provider: &Provider) -> String {
        let imap = format!("localhost:{}", provider.dovecot.imaps_port);
        let smtp = format!("localhost:{}", provider.submissions_port);
        let ca = provider.dovecot.ca_file.display().to_string();
        self.ok(&[
            "init",
            "--address",
            address,
            "--imap",
            &imap,
            "--smtp",
            &smtp,
            "--imap-security",
            "tls",
            "--smtp-security",
            "tls",
            "--ca-file",
            &ca,
            "--no-passphrase",
        ])
    }

    /// `gateway run` in the background, returning once both listeners answer.
    pub fn start(&mut self) {
        assert!(self.process.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(gateway_binary())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("LETTERLOCK_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("gateway run");
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in [self.imap_port, self.smtp_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(Ok(Some(status))) = self.process.as_mut().map(|p| p.try_wait()) {
                    panic!("{} exited with {status}:\n{}", self.name, self.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not start:\n{}",
                    self.name,
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether the process started by [`Gateway::start`] is still running.
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| matches!(p.try_wait(), Ok(None)))
    }

    /// The running process's ID.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits for the process to finish what it was doing.
    pub fn stop(&mut self) {
        let Some(mut child) = self.process.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "{} stopped with {status}:\n{}",
                        self.name,
                        self.log_text()
                    );
                    return;
                }
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!(
                        "{} did not stop on SIGTERM:\n{}",
                        self.name,
                        self.log_text()
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A mail client (Python smtplib) sends through a gateway; returns
/// "OK" or the refusal.
pub fn send(gateway: &Gateway, login: (&str, &str), message: &str, to: &[&str]) -> String {
    const SENDER: &str = r#"
import smtplib, sys
port, user, password, from_addr = sys.argv[1:5]
to = sys.argv[5:]
message = sys.stdin.buffer.read()
try:
    with smtplib.SMTP("127.0.0.1", int(port), timeout=120) as s:
        s.login(user, password)
        s.sendmail(from_addr, to, message)
    print("OK")
except smtplib.SMTPException as e:
    print("REFUSED", e)
"#;
    let mut args = vec![
        gateway.smtp_port.to_string(),
        login.0.to_string(),
        login.1.to_string(),
        login.0.to_string(),
    ];
    args.extend(to.iter().map(|t| t.to_string()));
    let out = testbed::python::run(SENDER, &args, message.replace('\n', "\r\n").as_bytes());
    String::from_utf8_lossy(&out).trim().to_string()
}

/// A mail client (Python imaplib) reads a whole mailbox through a gateway:
/// every message's `BODY.PEEK[]`, in UID order.
pub fn read(gateway: &Gateway, login: (&str, &str), mailbox: &str) -> Vec<String> {
    const READER: &str = r#"
import base64, imaplib, re, sys
port, user, password, mailbox = sys.argv[1:5]
m = imaplib.IMAP4("127.0.0.1", int(port), timeout=120)
m.login(user, password)
typ, _ = m.select(mailbox)
if typ == "OK":
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    # The server chooses the order of its answers (the gateway sends what
    # it holds before what it asks the provider for).
    bodies = sorted(
        (int(re.search(rb"UID (\d+)", d[0]).group(1)), d[1])
        for d in data
        if isinstance(d, tuple)
    )
    for _, body in bodies:
        print(base64.b64encode(body).decode())
m.logout()
"#;
    let args = [&gateway.imap_port.to_string(), login.0, login.1, mailbox];
    testbed::python::base64_text(&testbed::python::run(READER, args, b""))
}

/// A mail client stores a message (Thunderbird's Sent or Drafts copy).
pub fn append(gateway: &Gateway, login: (&str, &str), mailbox: &str, message: &str) -> String {
    const APPENDER: &str = r#"
import imaplib, sys
port, user, password, mailbox = sys.argv[1:5]
m = imaplib.IMAP4("127.0.0.1", int(port), timeout=120)
m.login(user, password)
m.create(mailbox)
typ, data = m.append(mailbox, "(\\Seen)", None, sys.stdin.buffer.read())
print(typ)
m.logout()
"#;
    let args = [&gateway.imap_port.to_string(), login.0, login.1, mailbox];
    let out = testbed::python::run(APPENDER, args, message.replace('\n', "\r\n").as_bytes());
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The value of a header field in a message's text, if present.
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let head = message.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Alice and Bob, each with a running gateway at one provider, after the
/// first contact a mail client's test does not care about: Alice wrote in
/// the clear, Bob read it (so his gateway knows her key) and answered
/// encrypted with an attachment, [`Conversation::SUBJECT`], which lies
/// ciphertext in Alice's INBOX. Alice also has a folder made at the provider
/// by another client and subscribed there, `Projects`. What a real mail
/// client is tested against (tests/tests/thunderbird.rs, clients.rs).
pub struct Conversation {
    pub provider: Provider,
    pub alice: Gateway,
    pub bob: Gateway,
    /// Holds both gateways' files; removed last.
    pub root: tempfile::TempDir,
}

impl Conversation {
    pub const ALICE: (&'static str, &'static str) = ("alice@example.org", "alicepw");
    pub const BOB: (&'static str, &'static str) = ("bob@example.org", "bobpw");
    pub const SUBJECT: &'static str = "Plans for Friday";
    /// Bob's words inside the encryption.
    pub const PLAINTEXT: &'static str = "meet at the north gate";
    pub const ATTACHMENT: &'static str = "agenda.pdf";
    pub const WAIT: Duration = Duration::from_secs(60);

    pub fn start() -> Self {
        let (alice_addr, bob_addr) = (Self::ALICE.0, Self::BOB.0);
        let root = tempfile::tempdir().expect("tempdir");
        let provider = Provider::start(&[Self::ALICE, Self::BOB]);
        // A real client's sessions traced (what moved, never its content),
        // so a test that fails can say what the gateway saw.
        let traced = |name, address| {
            Gateway::running_with_log(
                root.path(),
                name,
                address,
                &provider,
                "info,imap_proxy=trace",
            )
        };
        let alice = traced("alice", alice_addr);
        let bob = traced("bob", bob_addr);
        let hello = format!(
            "From: {alice_addr}\nTo: {bob_addr}\nSubject: Hello\nMessage-ID: <hello@example.org>\n\n\
             Hi Bob.\n"
        );
        assert_eq!(send(&alice, Self::ALICE, &hello, &[bob_addr]), "OK");
        provider.wait_for_messages(bob_addr, "INBOX", 1, Self::WAIT);
        read(&bob, Self::BOB, "INBOX");
        let plans = format!(
            "From: {bob_addr}\nTo: {alice_addr}\nSubject: {}\nMessage-ID: <plans@example.org>\n\
             MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
             Content-Type: text/plain; charset=utf-8\n\nThe details, encrypted: {}\n--b\n\
             Content-Type: application/pdf; name=\"{2}\"\n\
             Content-Disposition: attachment; filename=\"{2}\"\n\
             Content-Transfer-Encoding: base64\n\nJVBERi0xLjQKJcOkw7zDtsOfCg==\n--b--\n",
            Self::SUBJECT,
            Self::PLAINTEXT,
            Self::ATTACHMENT,
        );
        assert_eq!(send(&bob, Self::BOB, &plans, &[alice_addr]), "OK");
        let stored = provider.wait_for_messages(alice_addr, "INBOX", 1, Self::WAIT);
        let at_provider = String::from_utf8_lossy(&stored[0]);
        assert!(
            at_provider.contains("multipart/encrypted")
                && !at_provider.contains(Self::SUBJECT)
                && !at_provider.contains(Self::PLAINTEXT),
            "the provider holds ciphertext only"
        );
        provider
            .dovecot
            .doveadm(&["mailbox", "create", "-s", "-u", alice_addr, "Projects"]);
        Conversation {
            provider,
            alice,
            bob,
            root,
        }
    }

    /// Bob sends Alice a short message (encrypted: he has her key).
    pub fn bob_writes(&self, subject: &str, id: &str) {
        let message = format!(
            "From: {0}\nTo: {1}\nSubject: {subject}\nMessage-ID: <{id}@example.org>\n\nNew mail.\n",
            Self::BOB.0,
            Self::ALICE.0
        );
        assert_eq!(send(&self.bob, Self::BOB, &message, &[Self::ALICE.0]), "OK");
    }

    /// Asserts that `message` (as the provider stores it) is ciphertext
    /// without `canary`.
    pub fn assert_ciphertext(message: &[u8], canary: &str, what: &str) {
        let text = String::from_utf8_lossy(message);
        assert!(
            text.contains("multipart/encrypted") && !text.contains(canary),
            "{what} is not ciphertext at the provider:\n{text}"
        );
    }

    /// Asserts that Bob, reading his Inbox through his gateway, finds a
    /// message with each of `canaries` in its plaintext, under Alice's
    /// valid signature.
    pub fn assert_bob_reads_signed(&self, canaries: &[&str]) {
        let inbox = read(&self.bob, Self::BOB, "INBOX");
        for canary in canaries {
            let mail = inbox
                .iter()
                .find(|m| m.contains(canary))
                .unwrap_or_else(|| panic!("{canary} not readable by Bob: {inbox:?}"));
            let status = header(mail, "Letterlock-Security").unwrap_or_default();
            assert!(
                status.starts_with("encrypted; signature=valid; signer=alice@example.org"),
                "{canary}: {status}"
            );
        }
    }
}

/// `inner` (a message claiming to be from `claimed`, lines ending in CRLF)
/// signed and encrypted to `recipient`'s key with a key an attacker made
/// for `claimed`, its Autocrypt header offering that key: what an attacker
/// who knows the recipient's key delivers straight into their mailbox.
pub fn sealed_with_forged_key(
    recipient: &Gateway,
    recipient_address: &str,
    claimed: &str,
    inner: &str,
) -> String {
    use sequoia_openpgp::parse::Parse as _;
    let recipient_cert = recipient.ok(&["keytool", "export", "--own", recipient_address]);
    let recipient_cert = sequoia_openpgp::Cert::from_bytes(recipient_cert.as_bytes())
        .expect("the recipient's certificate");
    let forged =
        autocrypt::key::generate(claimed, std::time::SystemTime::now()).expect("forged key");
    let header =
        autocrypt::AutocryptHeader::new(claimed, autocrypt::PreferEncrypt::Mutual, forged.clone());
    let sealed = mailcrypt::encrypt(
        inner.as_bytes(),
        &mailcrypt::EncryptRequest {
            autocrypt: Some(&header),
            ..mailcrypt::EncryptRequest::new(&forged, std::slice::from_ref(&recipient_cert))
        },
    )
    .expect("encrypt");
    String::from_utf8(sealed).expect("ASCII armor")
}
