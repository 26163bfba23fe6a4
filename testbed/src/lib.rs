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
pub mod knot;
mod link;
mod provider;
pub mod python;
mod tls;

pub use dovecot::Dovecot;
pub use hostile_smtp::HostileSmtp;
pub use link::BreakingLink;
pub use provider::{Provider, LOCK_FILE};
pub use tls::TestCa;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

/// A loopback port that was free a moment ago, for a server a test starts.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), where
/// `bind` to port 0 and every outgoing connection get theirs: a port from
/// there could be taken by any connection the tests make before the server
/// binds it (Dovecot then exits with "Address already in use"). Never the
/// same port twice in one process, so parallel tests do not pick alike.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const FIRST: u16 = 10_000;
    let end = ephemeral_start().max(FIRST + 1_000);
    let span = u64::from(end - FIRST);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    let start = random.finish() % span;
    for step in 0..span {
        let port = FIRST + ((start + step) % span) as u16;
        // Free for TCP and UDP both, for servers that take both (DNS).
        if !handed_out.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {end}");
}

/// The first port of the kernel's ephemeral range (Linux's default when it
/// cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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
