//! Faults on either side of the proxy: the client never sees 250 for mail
//! the provider did not take, and nothing unencrypted goes out.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const SETTLE: Duration = Duration::from_secs(2);

fn note(text: &str) -> Vec<u8> {
    format!("From: {ALICE}\r\nTo: bob@example.org\r\nSubject: note\r\n\r\n{text}\r\n").into_bytes()
}

/// Reads one whole reply (the last line has a space after its code).
fn reply(s: &mut TcpStream) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("reply");
        assert!(n > 0, "connection closed after {text:?}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        let last = text.trim_end().rsplit("\r\n").next().unwrap_or_default();
        if text.ends_with("\r\n") && last.as_bytes().get(3) == Some(&b' ') {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_tls_no_password_is_taken_before_starttls_even_on_loopback() {
    let fx = fixture(Setup::default()).await;
    let port = fx.proxy_port;
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{PASSWORD}"))
    };
    let (ehlo, answer) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        reply(&mut s);
        s.write_all(b"EHLO client\r\n").expect("write");
        let ehlo = reply(&mut s);
        s.write_all(format!("AUTH PLAIN {auth}\r\n").as_bytes())
            .expect("write");
        (ehlo, reply(&mut s))
    })
    .await
    .expect("client");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(answer.starts_with("538 5.7.11"), "{answer}");
    // The proper way in still works.
    let sent = fx
        .send_smtplib(ALICE, &["bob@example.org"], &note("after starttls"))
        .await;
    assert_eq!(sent, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_get_the_providers_verdict() {
    let fx = fixture(Setup::default()).await;
    let wrong = fx
        .send_smtplib_as(ALICE, "wrong", ALICE, &["bob@example.org"], &note("x"))
        .await;
    assert!(wrong.starts_with("535"), "{wrong}");
    let unknown = fx
        .send_smtplib_as(
            "mallory@example.org",
            PASSWORD,
            ALICE,
            &["bob@example.org"],
            &note("x"),
        )
        .await;
    assert!(
        unknown.starts_with("535") && unknown.contains("No account"),
        "{unknown}"
    );
    std::thread::sleep(SETTLE);
    assert!(fx.provider.messages("bob@example.org", "INBOX").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_provider_certificate_stops_the_login() {
    let fx = fixture(Setup {
        trust_provider: false,
        ..Setup::default()
    })
    .await;
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], &note("canary-untrusted"))
        .await;
    assert!(
        result.starts_with("454") && result.contains("Cannot reach your provider"),
        "{result}"
    );
    assert!(result.to_lowercase().contains("certificate"), "{result}");
    std::thread::sleep(SETTLE);
    assert!(fx.provider.messages("bob@example.org", "INBOX").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recipients_stop_the_whole_message() {
    let fx = fixture(Setup::default()).await;
    // In the clear (nobody has no key): one transaction, one refusal.
    let message = format!(
        "From: {ALICE}\r\nTo: bob@example.org\r\nCc: nobody@example.org\r\nSubject: s\r\n\r\ncanary-refused\r\n"
    );
    let result = fx
        .send_smtplib(
            ALICE,
            &["bob@example.org", "nobody@example.org"],
            message.as_bytes(),
        )
        .await;
    assert!(
        result.starts_with('5') && result.contains("nobody@example.org"),
        "{result}"
    );
    // Encrypted with a Bcc copy for a recipient the provider refuses: the
    // check before sending stops Bob's copy too.
    let message =
        format!("From: {ALICE}\r\nTo: bob@example.org\r\nSubject: s\r\n\r\ncanary-bcc-refused\r\n");
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org", GHOST], message.as_bytes())
        .await;
    assert!(
        result.starts_with('5') && result.contains(GHOST),
        "{result}"
    );
    std::thread::sleep(SETTLE);
    assert!(fx.provider.messages("bob@example.org", "INBOX").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_in_data_is_never_acknowledged() {
    // The link to the provider breaks after 200 kB: inside DATA of a 1 MB
    // message (after TLS, AUTH and the envelope).
    let fx = fixture(Setup {
        cut_after: Some(200_000),
        ..Setup::default()
    })
    .await;
    let mut message = note("canary-cut").to_vec();
    for i in 0..16_000 {
        message.extend_from_slice(
            format!("line {i:06} of filler text for the cut test\r\n").as_bytes(),
        );
    }
    let result = fx.send_smtplib(ALICE, &["bob@example.org"], &message).await;
    assert!(
        result.starts_with("451"),
        "{result}\n{}",
        fx.provider.mta_log()
    );
    std::thread::sleep(SETTLE);
    assert!(fx.provider.messages("bob@example.org", "INBOX").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_in_data_sends_nothing_and_others_go_on() {
    // Plain SMTP on loopback, so that the raw client below can log in.
    let fx = fixture(Setup {
        local_tls: false,
        ..Setup::default()
    })
    .await;
    let port = fx.proxy_port;
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{PASSWORD}"))
    };
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let mut expect = |s: &mut TcpStream, code: &str| {
            let n = s.read(&mut buf).expect("reply");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(text.contains(code), "wanted {code}, got {text}");
        };
        expect(&mut s, "220");
        for (line, code) in [
            ("EHLO client".to_string(), "250"),
            (format!("AUTH PLAIN {auth}"), "235"),
            (format!("MAIL FROM:<{ALICE}>"), "250"),
            ("RCPT TO:<bob@example.org>".to_string(), "250"),
            ("DATA".to_string(), "354"),
        ] {
            s.write_all(format!("{line}\r\n").as_bytes())
                .expect("write");
            expect(&mut s, code);
        }
        s.write_all(
            b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: half\r\n\r\ncanary-half",
        )
        .expect("write");
        // Gone, without the final dot.
    })
    .await
    .expect("client");
    let result = fx
        .send_smtplib(ALICE, &["bob@example.org"], &note("canary-whole"))
        .await;
    assert_eq!(result, "ok", "{}", fx.provider.mta_log());
    let stored =
        fx.provider
            .wait_for_messages("bob@example.org", "INBOX", 1, Duration::from_secs(60));
    std::thread::sleep(SETTLE);
    let all = fx.provider.messages("bob@example.org", "INBOX");
    assert_eq!(
        all.len(),
        1,
        "{}",
        all.iter()
            .map(|m| head(m))
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    let (plain, _) = fx.gpg_decrypt("bob@example.org", &stored[0]);
    assert!(contains(&plain, "canary-whole"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_is_told_and_disconnected() {
    let fx = fixture(Setup {
        idle_timeout: Duration::from_secs(1),
        ..Setup::default()
    })
    .await;
    let port = fx.proxy_port;
    let said = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    })
    .await
    .expect("client");
    assert!(said.starts_with("220 "), "{said}");
    assert!(said.contains("\r\n421 4.4.2 Idle"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_provider_rejects_is_refused_to_the_client() {
    // The provider takes at most 100 kB; the encrypted copy of this
    // message is larger.
    let fx = fixture(Setup {
        provider_max_size: Some(100_000),
        ..Setup::default()
    })
    .await;
    let mut message = note("canary-too-big").to_vec();
    for i in 0..3_000 {
        message.extend_from_slice(
            format!("line {i:05} of a message the provider will not take\r\n").as_bytes(),
        );
    }
    let result = fx.send_smtplib(ALICE, &["bob@example.org"], &message).await;
    assert!(result.starts_with("552"), "{result}");
    assert!(result.contains("Your provider refused"), "{result}");
    std::thread::sleep(SETTLE);
    assert!(fx.provider.messages("bob@example.org", "INBOX").is_empty());
}
