//! Test fixtures: real mail servers on loopback with throw-away
//! configurations, started and stopped by the tests (SPEC.md, "Real
//! components in tests").
//!
//! - [`Dovecot`]: `dovecot-imapd` with password users, implicit TLS and
//!   STARTTLS ports, a private CA the gateway is told about with `ca_file`,
//!   and `doveadm` for arranging mailboxes behind the gateway's back.
//! - [`Provider`]: Dovecot plus submission (implicit TLS or STARTTLS, AUTH)
//!   relaying to OpenSMTPD, which delivers over LMTP into Dovecot: a whole
//!   provider to send through and read back from.
//! - [`BreakingLink`]: a TCP forwarder that cuts the connection after a
//!   given number of bytes, to break a real session at a known point.
//! - [`HostileSmtp`]: a scripted SMTP server that drops, stalls, answers
//!   garbage or is out of space at a chosen step (the one stand-in for a
//!   provider: no real server misbehaves on cue).
//!
//! Everything comes from Debian packages installed by `scripts/setup`; a
//! missing program fails the test with a sentence saying so.

mod dovecot;
pub mod hostile_smtp;
mod link;
mod provider;
mod tls;

pub use dovecot::Dovecot;
pub use hostile_smtp::HostileSmtp;
pub use link::BreakingLink;
pub use provider::{Provider, LOCK_FILE};
pub use tls::TestCa;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Runs a program to completion; panics with its output if it fails.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); run scripts/setup first"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input)
            .expect("writing to the child");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("waiting for the child");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
