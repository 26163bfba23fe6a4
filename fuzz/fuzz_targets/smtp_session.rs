//! The client-facing SMTP session state machine, fed arbitrary client bytes
//! in arbitrary pieces; the driver's answers (AUTH accepted, message
//! delivered, TLS started) come back as a real driver would give them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtp_proxy::reply::Reply;
use smtp_proxy::session::{Action, Limits, Options, Session};

fuzz_target!(|data: &[u8]| letterlock_fuzz::run(|| {
    let mut session = Session::new(Options {
        hostname: "localhost".into(),
        starttls: true,
        tls_active: false,
        auth_requires_tls: data.first().is_some_and(|b| b & 1 == 1),
        limits: Limits {
            max_command_line: 512,
            max_message: 64 * 1024,
            max_recipients: 10,
            max_errors: 20,
        },
    });
    // The first byte also picks the piece size: lines split anywhere.
    let piece = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut sent = 0usize;
    for chunk in data.chunks(piece) {
        session.receive(chunk);
        while let Some(action) = session.poll() {
            match action {
                Action::Send(bytes) => sent += bytes.len(),
                Action::UpgradeTls => session.tls_started(),
                Action::Authenticate { .. } => session.auth_result(Ok(())),
                Action::Deliver(tx) => {
                    assert!(tx.data.len() <= 64 * 1024 + 4096);
                    assert!(tx.recipients.len() <= 10);
                    session.delivered(Reply::new(250, "2.0.0", "OK"));
                }
                Action::Close => return,
            }
        }
    }
    // Output stays proportional to input (no amplification loop).
    assert!(sent <= 4096 + data.len() * 64);
}));
