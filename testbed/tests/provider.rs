//! The provider fixture itself: a message submitted with AUTH over TLS
//! arrives in the recipient's mailbox.

use std::process::Command;
use std::time::Duration;

use testbed::Provider;

#[test]
fn submission_delivers_into_the_mailbox() {
    let provider = Provider::start(&[("alice@example.org", "pw-a"), ("bob@example.org", "pw-b")]);
    let script = r#"
import smtplib, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP_SSL("localhost", port, context=ctx) as s:
    s.login("alice@example.org", "pw-a")
    s.sendmail("alice@example.org", ["bob@example.org"],
               b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: fixture\r\n\r\nhello bob\r\n")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(provider.submissions_port.to_string())
        .arg(&provider.dovecot.ca_file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        provider.mta_log()
    );
    let stored = provider.wait_for_messages("bob@example.org", "INBOX", 1, Duration::from_secs(20));
    assert!(String::from_utf8_lossy(&stored[0]).contains("hello bob"));
}
