use super::transaction::parse_path;
use super::*;
use secrecy::ExposeSecret;

fn options() -> Options {
    Options {
        hostname: "localhost".into(),
        starttls: true,
        tls_active: false,
        auth_requires_tls: false,
        limits: Limits {
            max_message: 1000,
            max_recipients: 3,
            max_errors: 10,
            ..Limits::default()
        },
    }
}

/// Everything the session wants done until it needs more input.
fn drain(s: &mut Session) -> (String, Vec<Action>) {
    let mut sent = String::new();
    let mut other = Vec::new();
    while let Some(action) = s.poll() {
        match action {
            Action::Send(bytes) => sent.push_str(&String::from_utf8_lossy(&bytes)),
            a => other.push(a),
        }
    }
    (sent, other)
}

fn feed(s: &mut Session, input: &str) -> (String, Vec<Action>) {
    s.receive(input.as_bytes());
    drain(s)
}

fn logged_in() -> Session {
    let mut s = Session::new(options());
    drain(&mut s);
    feed(&mut s, "EHLO client\r\n");
    // "\0alice\0secret"
    let (_, actions) = feed(&mut s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert!(matches!(actions.as_slice(), [Action::Authenticate { .. }]));
    s.auth_result(Ok(()));
    let (sent, _) = drain(&mut s);
    assert!(sent.starts_with("235 2.7.0"), "{sent}");
    s
}

#[test]
fn greeting_and_capabilities() {
    let mut s = Session::new(options());
    let (sent, _) = drain(&mut s);
    assert_eq!(sent, "220 localhost ESMTP Letterlock ready\r\n");
    let (sent, _) = feed(&mut s, "EHLO client.example\r\n");
    for cap in [
        "250-PIPELINING",
        "250-SIZE 1000",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250-STARTTLS",
        "250 AUTH PLAIN LOGIN",
    ] {
        assert!(sent.contains(cap), "{cap} missing in {sent}");
    }
}

#[test]
fn auth_plain_passes_credentials_to_the_driver() {
    let mut s = Session::new(options());
    drain(&mut s);
    feed(&mut s, "EHLO c\r\n");
    let (_, actions) = feed(&mut s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    match actions.as_slice() {
        [Action::Authenticate { username, password }] => {
            assert_eq!(username, "alice");
            assert_eq!(password.expose_secret(), "secret");
        }
        other => panic!("{other:?}"),
    }
    // Nothing happens until the provider answered.
    let (sent, _) = feed(&mut s, "NOOP\r\n");
    assert!(sent.is_empty());
    s.auth_result(Err(Reply::new(535, "5.7.8", "provider says no")));
    let (sent, _) = drain(&mut s);
    assert_eq!(sent, "535 5.7.8 provider says no\r\n250 2.0.0 OK\r\n");
    assert!(s.user().is_none());
}

#[test]
fn auth_login_prompts_for_user_and_password() {
    let mut s = Session::new(options());
    drain(&mut s);
    feed(&mut s, "EHLO c\r\n");
    let (sent, _) = feed(&mut s, "AUTH LOGIN\r\n");
    assert_eq!(sent, "334 VXNlcm5hbWU6\r\n");
    let (sent, _) = feed(&mut s, "YWxpY2U=\r\n");
    assert_eq!(sent, "334 UGFzc3dvcmQ6\r\n");
    let (_, actions) = feed(&mut s, "c2VjcmV0\r\n");
    assert!(
        matches!(actions.as_slice(), [Action::Authenticate { username, .. }] if username == "alice")
    );
    s.auth_result(Ok(()));
    assert_eq!(s.user(), Some("alice"));
    let mut s = Session::new(options());
    drain(&mut s);
    feed(&mut s, "EHLO c\r\n");
    feed(&mut s, "AUTH PLAIN\r\n");
    let (sent, _) = feed(&mut s, "*\r\n");
    assert!(sent.starts_with("501 5.7.0"), "{sent}");
}

#[test]
fn mail_needs_a_login() {
    let mut s = Session::new(options());
    drain(&mut s);
    feed(&mut s, "EHLO c\r\n");
    let (sent, _) = feed(&mut s, "MAIL FROM:<alice@example.org>\r\n");
    assert!(sent.starts_with("530 5.7.0"), "{sent}");
}

#[test]
fn pipelined_transaction_with_dot_stuffing() {
    let mut s = logged_in();
    let (sent, actions) = feed(
        &mut s,
        "MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE=200\r\nRCPT TO:<bob@example.org>\r\nRCPT TO: <carol@example.net>\r\nDATA\r\n",
    );
    assert_eq!(
        sent,
        "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert!(actions.is_empty());
    let (sent, actions) = feed(
        &mut s,
        "Subject: hi\r\n\r\n..leading dot\nbare LF line\r\n.\r\nQUIT\r\n",
    );
    assert!(sent.is_empty(), "no reply before the provider's: {sent}");
    let [Action::Deliver(t)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(t.mail_from, "alice@example.org");
    assert_eq!(t.recipients, ["bob@example.org", "carol@example.net"]);
    assert!(t.eight_bit);
    assert_eq!(
        t.data,
        b"Subject: hi\r\n\r\n.leading dot\r\nbare LF line\r\n"
    );
    // QUIT waits for the delivery's reply.
    s.delivered(Reply::new(250, "2.0.0", "Delivered"));
    let (sent, actions) = drain(&mut s);
    assert_eq!(sent, "250 2.0.0 Delivered\r\n221 2.0.0 Bye\r\n");
    assert!(matches!(actions.as_slice(), [Action::Close]));
}

/// SMTP smuggling (Longin, 2023): every end-of-data spelling a lenient
/// server accepts besides CRLF . CRLF is content, so what follows it is
/// never run as a command of the user's session.
#[test]
fn only_crlf_dot_crlf_ends_data() {
    for (end, shown) in [
        ("\n.\n", "\r\n.\r\n"),
        ("\r\n.\n", "\r\n.\r\n"),
        ("\n.\r\n", "\r\n.\r\n"),
        ("\n..\n", "\r\n.\r\n"),
    ] {
        let mut s = logged_in();
        feed(
            &mut s,
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
        );
        let smuggled = format!(
            "Subject: hi\r\n\r\nhello{end}MAIL FROM:<alice@example.org>\r\n\
             RCPT TO:<mallory@evil.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
        );
        let (sent, actions) = feed(&mut s, &smuggled);
        assert!(sent.is_empty(), "{end:?}: no command ran: {sent}");
        let [Action::Deliver(t)] = actions.as_slice() else {
            panic!("{end:?}: {actions:?}")
        };
        assert_eq!(t.recipients, ["bob@example.org"], "{end:?}");
        let data = String::from_utf8_lossy(&t.data);
        assert!(
            data.starts_with(&format!("Subject: hi\r\n\r\nhello{shown}MAIL FROM:")),
            "{end:?}: {data:?}"
        );
        assert!(
            !data.replace("\r\n", "").contains(['\r', '\n']),
            "CRLF only: {data:?}"
        );
        s.delivered(Reply::new(250, "2.0.0", "Delivered"));
        let (sent, actions) = drain(&mut s);
        assert_eq!(sent, "250 2.0.0 Delivered\r\n", "{end:?}: one message only");
        assert!(actions.is_empty());
    }
}

#[test]
fn bare_carriage_returns_are_refused() {
    for body in [
        "hello\r.\rMAIL FROM:<a@b>\r\n",
        "Subject: a\rX-Forged: b\r\n\r\nx\r\n",
    ] {
        let mut s = logged_in();
        feed(
            &mut s,
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
        );
        let (sent, actions) = feed(&mut s, &format!("{body}.\r\nNOOP\r\n"));
        assert!(actions.is_empty(), "{body:?}: {actions:?}");
        assert!(
            sent.starts_with("550 5.6.0 The message contains a bare carriage return"),
            "{body:?}: {sent}"
        );
        assert!(
            sent.ends_with("250 2.0.0 OK\r\n"),
            "the session goes on: {sent}"
        );
    }
}

/// Split anywhere, the same bytes give the same message: the CRLF before
/// the dot may arrive in one read and the dot in the next.
#[test]
fn end_of_data_across_reads() {
    let mut s = logged_in();
    feed(
        &mut s,
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
    );
    for piece in [
        "Subject: a\r",
        "\n\r\nline\n",
        ".",
        "\r",
        "\nmore\r\n",
        ".\r",
        "\n",
    ] {
        s.receive(piece.as_bytes());
    }
    let (_, actions) = drain(&mut s);
    let [Action::Deliver(t)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(t.data, b"Subject: a\r\n\r\nline\r\n.\r\nmore\r\n");
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut s = Session::new(options());
    drain(&mut s);
    feed(&mut s, "EHLO c\r\n");
    let (sent, actions) = feed(&mut s, "STARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(sent, "220 2.0.0 Ready to start TLS\r\n");
    assert!(matches!(actions.as_slice(), [Action::UpgradeTls]));
    s.tls_started();
    let (sent, actions) = drain(&mut s);
    assert!(sent.is_empty() && actions.is_empty(), "{sent} {actions:?}");
    let (sent, _) = feed(&mut s, "EHLO c\r\n");
    assert!(!sent.contains("STARTTLS"), "{sent}");
}

#[test]
fn auth_can_require_tls() {
    let mut s = Session::new(Options {
        auth_requires_tls: true,
        ..options()
    });
    drain(&mut s);
    let (sent, _) = feed(&mut s, "EHLO c\r\n");
    assert!(!sent.contains("AUTH"), "{sent}");
    let (sent, _) = feed(&mut s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert!(sent.starts_with("538 5.7.11"), "{sent}");
}

#[test]
fn limits_are_answered_with_their_codes() {
    let mut s = logged_in();
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(5000));
    let (sent, _) = feed(&mut s, &long);
    assert_eq!(sent, "500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n");

    let (sent, _) = feed(&mut s, "MAIL FROM:<a@example.org> SIZE=5000\r\n");
    assert!(sent.starts_with("552 5.3.4"), "{sent}");

    feed(&mut s, "MAIL FROM:<a@example.org>\r\n");
    for n in 0..3 {
        feed(&mut s, &format!("RCPT TO:<r{n}@example.org>\r\n"));
    }
    let (sent, _) = feed(&mut s, "RCPT TO:<r4@example.org>\r\n");
    assert!(sent.starts_with("452 4.5.3"), "{sent}");
    feed(&mut s, "DATA\r\n");
    let big = format!("{}\r\n.\r\n", "y".repeat(2000));
    let (sent, actions) = feed(&mut s, &big);
    assert!(sent.starts_with("552 5.3.4"), "{sent}");
    assert!(actions.is_empty(), "nothing is delivered: {actions:?}");
    // The transaction is over; a new one can start.
    let (sent, _) = feed(&mut s, "MAIL FROM:<a@example.org>\r\n");
    assert!(sent.starts_with("250"), "{sent}");
}

#[test]
fn too_many_errors_close_the_session() {
    let mut s = Session::new(options());
    drain(&mut s);
    let (sent, actions) = feed(&mut s, &"BOGUS\r\n".repeat(12));
    assert_eq!(sent.matches("500 5.5.1").count(), 9);
    assert!(sent.ends_with("421 4.7.0 Too many errors; closing the connection\r\n"));
    assert!(matches!(actions.as_slice(), [Action::Close]));
}

#[test]
fn sequence_errors() {
    let mut s = logged_in();
    let (sent, _) = feed(&mut s, "RCPT TO:<b@example.org>\r\n");
    assert!(sent.starts_with("503"), "{sent}");
    let (sent, _) = feed(&mut s, "DATA\r\n");
    assert!(sent.starts_with("503"), "{sent}");
    feed(&mut s, "MAIL FROM:<>\r\n");
    let (sent, _) = feed(&mut s, "DATA\r\n");
    assert!(sent.starts_with("554 5.5.1"), "{sent}");
    let (sent, _) = feed(&mut s, "RCPT TO:<nobody>\r\n");
    assert!(sent.starts_with("501 5.1.3"), "{sent}");
    let (sent, _) = feed(&mut s, "RCPT TO:<@relay.example:bob@example.org>\r\n");
    assert!(sent.starts_with("250"), "{sent}");
    let (sent, _) = feed(&mut s, "RSET\r\nRCPT TO:<b@example.org>\r\n");
    assert!(sent.starts_with("250 2.0.0 OK\r\n503"), "{sent}");
}

#[test]
fn paths_are_parsed_strictly() {
    assert_eq!(
        parse_path("<a@b.example> SIZE=1"),
        Some(("a@b.example".into(), " SIZE=1"))
    );
    assert_eq!(parse_path("<>"), Some((String::new(), "")));
    assert_eq!(parse_path("a@b.example"), None);
    assert_eq!(parse_path("<a@b.example>junk"), None);
    assert_eq!(parse_path("<a b@c.example>"), None);
    assert_eq!(
        parse_path("<\"a b\"@c.example>"),
        Some(("\"a b\"@c.example".into(), ""))
    );
}

proptest::proptest! {
    #[test]
    fn any_input_is_answered_without_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20)) {
        let mut s = Session::new(options());
        for chunk in chunks {
            s.receive(&chunk);
            let mut steps = 0;
            while let Some(action) = s.poll() {
                steps += 1;
                proptest::prop_assert!(steps < 10_000);
                match action {
                    Action::Authenticate { .. } => s.auth_result(Ok(())),
                    Action::Deliver(_) => s.delivered(Reply::new(250, "2.0.0", "ok")),
                    Action::UpgradeTls => s.tls_started(),
                    Action::Send(_) | Action::Close => {}
                }
            }
            // Buffered input never exceeds what the limits allow.
            proptest::prop_assert!(s.input.len() <= 1000 + 4096 + 300);
        }
    }
}
