//! A provider whose certificate is self-signed the way home servers and
//! small offices make theirs (`openssl req -x509`, which marks it as a CA,
//! so no `ca_file` helps): `gateway init` shows it and trusts it only by
//! the fingerprint the person confirms; then both proxies reach the real
//! Dovecot with it, over implicit TLS and STARTTLS, and a different
//! certificate later is refused with a sentence that names both
//! fingerprints.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{send, Gateway};
use testbed::Provider;

const ALICE: (&str, &str) = ("alice@example.org", "alice-pw");
const BOB: (&str, &str) = ("bob@example.org", "bob-pw");

/// The fingerprint as the server's operator reads it off the certificate.
fn openssl_fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl x509 failed");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    line.rsplit('=').next().expect("a fingerprint").to_string()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An IMAP login through the gateway: "OK", or the refusal's text.
fn imap_login(gateway: &Gateway, login: (&str, &str)) -> String {
    const LOGIN: &str = r#"
import imaplib, sys
port, user, password = sys.argv[1:4]
try:
    m = imaplib.IMAP4("127.0.0.1", int(port), timeout=120)
    m.login(user, password)
    m.select("INBOX")
    m.logout()
    print("OK")
except imaplib.IMAP4.error as e:
    print("REFUSED", e)
"#;
    let port = gateway.imap_port.to_string();
    let out = testbed::python::run(LOGIN, [port.as_str(), login.0, login.1], b"");
    String::from_utf8_lossy(&out).trim().to_string()
}

/// `gateway ARGS` with a terminal for its input and output (a pty), giving
/// `answer` to its yes/no question; what it wrote and its exit code.
fn on_a_terminal(gateway: &Gateway, args: &[&str], answer: &str) -> (String, i32) {
    const TERMINAL: &str = r#"
import os, pty, sys
answer = sys.argv[1].encode() + b"\n"
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
out, answered = b"", False
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
    if not answered and b"[y/N]" in out:
        os.write(fd, answer)
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("EXIT", os.waitstatus_to_exitcode(status))
"#;
    let binary = e2e::gateway_binary();
    let config = gateway.config.to_str().expect("path").to_string();
    let mut argv = vec![answer, binary.to_str().expect("path")];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", &config]);
    let out = String::from_utf8_lossy(&testbed::python::run(TERMINAL, argv, b"")).into_owned();
    let (said, code) = out.rsplit_once("EXIT ").expect("an exit code");
    (said.to_string(), code.trim().parse().expect("a number"))
}

#[test]
fn a_self_signed_provider_is_trusted_by_its_fingerprint_and_nothing_else() {
    let provider = Provider::start_self_signed(&[ALICE, BOB]);
    let fingerprint = openssl_fingerprint(&provider.certificate());
    let root = tempfile::tempdir().expect("dir");
    let mut delivered = 0;
    for security in ["tls", "starttls"] {
        let mut gateway = Gateway::new(root.path(), &format!("alice-{security}"));
        let (imap, smtp) = match security {
            "tls" => (provider.dovecot.imaps_port, provider.submissions_port),
            _ => (provider.dovecot.imap_port, provider.submission_port),
        };
        let (imap, smtp) = (format!("localhost:{imap}"), format!("localhost:{smtp}"));
        let init_args = [
            "init",
            "--address",
            ALICE.0,
            "--imap",
            &imap,
            "--smtp",
            &smtp,
            "--imap-security",
            security,
            "--smtp-security",
            security,
            "--no-passphrase",
        ];
        let init = |extra: &[&str]| {
            let mut args = init_args.to_vec();
            args.extend_from_slice(extra);
            gateway.command(&args)
        };
        let no_account = |gateway: &Gateway| {
            let config = std::fs::read_to_string(&gateway.config).expect("config");
            assert!(!config.contains("[[account]]"), "{config}");
        };

        // Not on a terminal and no pin: refused, with the certificate shown
        // and the flag that would trust it.
        let refused = init(&[]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        let said = text(&refused);
        assert!(
            said.contains(&fingerprint)
                && said.contains("--trust-provider-cert")
                && said.contains("A home server"),
            "{said}"
        );
        no_account(&gateway);

        // A fingerprint that is not the server's: refused, naming both.
        let wrong = ["00"; 32].join(":");
        let refused = init(&["--trust-provider-cert", &wrong]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        let said = text(&refused);
        assert!(
            said.contains(&fingerprint) && said.contains(&wrong),
            "{said}"
        );
        no_account(&gateway);

        if security == "tls" {
            // The right one, without colons and in lower case: kept in the
            // configuration as openssl prints it.
            let bare = fingerprint.replace(':', "").to_lowercase();
            let accepted = init(&["--trust-provider-cert", &bare]);
            assert!(accepted.status.success(), "{}", text(&accepted));
        } else {
            // On a terminal the certificate is shown and the person asked:
            // "no" changes nothing, "yes" pins what was shown.
            let (said, code) = on_a_terminal(&gateway, &init_args, "n");
            assert_eq!(code, 2, "{said}");
            assert!(
                said.contains("subject  CN=localhost, O=A home server")
                    && said.contains(&format!("SHA-256  {fingerprint}"))
                    && said.contains("was not trusted"),
                "{said}"
            );
            no_account(&gateway);
            let (said, code) = on_a_terminal(&gateway, &init_args, "y");
            assert_eq!(code, 0, "{said}");
            // Asked once: the SMTP server shows the same certificate.
            assert_eq!(said.matches("[y/N]").count(), 1, "{said}");
        }
        let config = std::fs::read_to_string(&gateway.config).expect("config");
        assert!(
            config.contains(&format!("provider_cert_sha256 = \"{fingerprint}\"")),
            "{config}"
        );

        // Both proxies reach the provider with it.
        gateway.start();
        let message = format!(
            "From: {}\nTo: {}\nSubject: Over {security}\n\nPinned, not verified.\n",
            ALICE.0, BOB.0
        );
        assert_eq!(send(&gateway, ALICE, &message, &[BOB.0]), "OK");
        delivered += 1;
        provider.wait_for_messages(BOB.0, "INBOX", delivered, Duration::from_secs(60));
        assert_eq!(imap_login(&gateway, ALICE), "OK");
        gateway.stop();

        // Another certificate than the pinned one: both proxies refuse,
        // and say which was presented and which is trusted.
        let other = ["AB"; 32].join(":");
        let config = config.replace(&fingerprint, &other);
        std::fs::write(&gateway.config, config).expect("config");
        gateway.start();
        let sent = send(&gateway, ALICE, &message, &[BOB.0]);
        assert!(
            sent.starts_with("REFUSED") && sent.contains(&fingerprint) && sent.contains(&other),
            "{sent}"
        );
        let login = imap_login(&gateway, ALICE);
        assert!(
            login.starts_with("REFUSED") && login.contains(&fingerprint) && login.contains(&other),
            "{login}"
        );
        gateway.stop();
    }
    // Nothing went out while the pin did not match.
    assert_eq!(provider.messages(BOB.0, "INBOX").len(), delivered);
}
