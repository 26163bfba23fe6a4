//! A provider that misbehaves at every step of a submission: it drops the
//! connection, stalls, answers garbage, or is out of space — at the
//! greeting, EHLO, AUTH, MAIL, RCPT, DATA and after the final dot. In every
//! case the client is told the message was not sent (never 250), the
//! provider never saw the plaintext, and the proxy keeps serving another
//! account's session at the same time. A provider slow at every step of the
//! login is given up on within one bound for the whole login.

mod common;

use std::time::Duration;

use common::*;
use testbed::hostile_smtp::{Fault, Step, SLOW_ANSWER};
use testbed::HostileSmtp;

const CANARY: &str = "canary-hostile-provider";

fn message(from: &str, to: &str, text: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\nSubject: s\r\nMessage-ID: <{text}@example.org>\r\n\r\n{CANARY} {text}\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fault_at_any_step_acknowledges_or_leaks_a_message() {
    let hostile = HostileSmtp::start(Step::Greeting, Fault::Drop);
    let fx = fixture(Setup {
        hostile: Some(hostile.port),
        provider_timeout: Duration::from_secs(2),
        ..Setup::default()
    })
    .await;
    let mut tried = 0;
    for step in Step::ALL {
        for fault in Fault::ALL {
            hostile.set(step, fault);
            let what = format!("{step:?}-{fault:?}");
            // Bob has a key: the message is encrypted before it goes out.
            let alices = message(ALICE, "bob@example.org", &what);
            let sending = fx.send_smtplib(ALICE, &["bob@example.org"], &alices);
            // Meanwhile another account's session goes through.
            let erins = message(ERIN, "bob@example.org", &format!("erin-{what}"));
            let other = fx.send_smtplib_as(ERIN, PASSWORD, ERIN, &["bob@example.org"], &erins);
            let (result, other) = tokio::join!(sending, other);
            assert_eq!(other, "ok", "{what}: Erin's session");
            assert!(
                !result.starts_with("ok") && !result.starts_with('2'),
                "{what}: the client was told {result}"
            );
            assert!(
                result.starts_with('4') || result.starts_with('5'),
                "{what}: {result}"
            );
            assert_eq!(hostile.accepted(), 0, "{what}");
            let seen = String::from_utf8_lossy(&hostile.take_received()).into_owned();
            assert!(
                !seen.contains(CANARY),
                "{what}: plaintext reached the provider"
            );
            if matches!(step, Step::Data | Step::EndOfData) && fault != Fault::OutOfSpace {
                assert!(
                    seen.contains("MAIL FROM"),
                    "{what}: the fault came after the envelope"
                );
            }
            tried += 1;
        }
    }
    assert_eq!(tried, 28);
    // Everything Erin sent arrived; nothing of Alice's did.
    let at_bob =
        fx.provider
            .wait_for_messages("bob@example.org", "INBOX", 28, Duration::from_secs(60));
    assert_eq!(at_bob.len(), 28);
    assert!(
        at_bob.iter().all(|m| !contains(m, CANARY)),
        "Erin's copies went encrypted"
    );
}

/// A provider slow at every step of the login, each answer within the
/// provider timeout (5 s) but the login as a whole not: the client is told
/// so within that bound rather than held for as long as the provider likes
/// (each step used to have its own bound, so a login could take several).
/// Timing: lettre's longest step is greeting + EHLO, 2 × [`SLOW_ANSWER`]
/// = 4 s; the whole login (with AUTH) takes 6 s; a second of margin each
/// way, so the per-step bound never races the whole-login bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_slow_at_every_step_is_bounded_as_a_whole() {
    let hostile = HostileSmtp::start(Step::Greeting, Fault::Slow);
    let timeout = SLOW_ANSWER * 5 / 2;
    let fx = fixture(Setup {
        hostile: Some(hostile.port),
        provider_timeout: timeout,
        ..Setup::default()
    })
    .await;
    let result = fx
        .send_smtplib(
            ALICE,
            &["bob@example.org"],
            &message(ALICE, "bob@example.org", "slow"),
        )
        .await;
    assert!(
        result.starts_with("454")
            && result.contains(&format!(
                "did not complete the login within {} seconds",
                timeout.as_secs()
            )),
        "{result}"
    );
    assert_eq!(hostile.accepted(), 0);
}
