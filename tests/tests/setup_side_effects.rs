//! `scripts/setup`, which both README commands call, on a machine that
//! runs its own Dovecot and OpenSMTPD: both still run afterwards, the
//! test fixtures run their Dovecot beside the machine's, and refuse, with
//! a sentence, to start an OpenSMTPD while the machine's runs.
//!
//! The machine's services are started here through Debian's init scripts
//! when they are not running already, and only those started here are
//! stopped at the end. Test binaries run one after another, so no other
//! test's OpenSMTPD runs meanwhile.

use std::process::Command;
use std::time::{Duration, Instant};

/// The pid of a system service's daemon, from the pid file its init script
/// keeps, if that process is alive and is `comm`.
fn service_pid(pid_file: &str, comm: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let running = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (running.trim() == comm).then_some(pid)
}

const DOVECOT: (&str, &str, &str) = ("dovecot", "/run/dovecot/master.pid", "dovecot");
const OPENSMTPD: (&str, &str, &str) = ("opensmtpd", "/run/smtpd.pid", "smtpd");

/// A system service this test started, stopped again when dropped.
struct Started(&'static str);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = Command::new("service").args([self.0, "stop"]).status();
    }
}

/// Starts `service` unless it runs already; waits until its daemon is up
/// and returns its pid (None: not installed as a service).
fn ensure_running(
    (service, pid_file, comm): (&'static str, &str, &str),
    started: &mut Vec<Started>,
) -> Option<u32> {
    if let Some(pid) = service_pid(pid_file, comm) {
        return Some(pid);
    }
    if !std::path::Path::new("/etc/init.d").join(service).exists() {
        return None;
    }
    let status = Command::new("service")
        .args([service, "start"])
        .status()
        .expect("service");
    assert!(status.success(), "`service {service} start` failed");
    started.push(Started(service));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = service_pid(pid_file, comm) {
            return Some(pid);
        }
        assert!(
            Instant::now() < deadline,
            "{service} did not start as a service"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn setup_leaves_the_machines_dovecot_and_opensmtpd_running() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        eprintln!("skipped: starting system services needs root");
        return;
    }
    let mut started = Vec::new();
    let dovecot = ensure_running(DOVECOT, &mut started);
    let smtpd = ensure_running(OPENSMTPD, &mut started);
    let (Some(dovecot), Some(smtpd)) = (dovecot, smtpd) else {
        panic!("dovecot and opensmtpd are not installed as services: run scripts/setup first");
    };

    let out = Command::new(e2e::workspace_root().join("scripts/setup"))
        .output()
        .expect("running scripts/setup");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/setup failed: {said}");
    assert!(!said.contains("stopping"), "{said}");
    assert_eq!(
        service_pid(DOVECOT.1, DOVECOT.2),
        Some(dovecot),
        "the system Dovecot no longer runs after scripts/setup: {said}"
    );
    assert_eq!(
        service_pid(OPENSMTPD.1, OPENSMTPD.2),
        Some(smtpd),
        "the system OpenSMTPD no longer runs after scripts/setup: {said}"
    );

    // A fixture Dovecot beside the machine's: its own base_dir and ports.
    let own = testbed::Dovecot::start(&[("carol@example.org", "carol-pw")]);
    own.save(
        "carol@example.org",
        "INBOX",
        b"Subject: beside\r\n\r\nbody\r\n",
    );
    assert_eq!(own.uids("carol@example.org", "INBOX").len(), 1);
    drop(own);

    // A fixture OpenSMTPD cannot run beside the machine's; it says so and
    // leaves the machine's running.
    let refused = std::panic::catch_unwind(|| {
        testbed::Provider::start(&[("carol@example.org", "carol-pw")]);
    })
    .expect_err("a test provider started beside the system OpenSMTPD");
    let sentence = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        sentence.contains("another OpenSMTPD is running") && sentence.contains("do not stop yours"),
        "{sentence}"
    );
    assert_eq!(service_pid(OPENSMTPD.1, OPENSMTPD.2), Some(smtpd));
    assert_eq!(service_pid(DOVECOT.1, DOVECOT.2), Some(dovecot));
    drop(started);
}
