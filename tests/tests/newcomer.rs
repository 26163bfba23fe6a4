//! A newcomer's path: in a fresh home directory (no configuration, no
//! data), the README's run command with the account's settings reaches a
//! running gateway that `gateway status` reports, and SIGTERM stops it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{gateway_binary, workspace_root};

#[test]
fn scripts_run_reaches_a_running_gateway_from_a_fresh_home() {
    let binary = gateway_binary(); // built once; scripts/run then finds it up to date
    let home = tempfile::tempdir().expect("home");
    let real_home = std::env::var_os("HOME").expect("HOME");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .unwrap_or_else(|| std::path::Path::new(&real_home).join(".cargo").into());
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .unwrap_or_else(|| std::path::Path::new(&real_home).join(".rustup").into());
    let fresh = |command: &mut Command| {
        command
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("LETTERLOCK_CONFIG")
            .env_remove("LETTERLOCK_PASSPHRASE")
            // The toolchain and crate cache stay where they are.
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home);
    };

    let mut run = Command::new(workspace_root().join("scripts/run"));
    fresh(&mut run);
    let log = home.path().join("run.log");
    let mut child = run
        .args([
            "--address",
            "newcomer@example.org",
            "--imap",
            "imap.example.org:993",
            "--smtp",
            "smtp.example.org:465",
            "--no-passphrase",
        ])
        // The test command ran scripts/setup already; the dev profile is
        // the binary the tests built.
        .env("LETTERLOCK_SKIP_SETUP", "1")
        .env("LETTERLOCK_PROFILE", "dev")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(home.path().join("run.err")).expect("log"))
        .spawn()
        .expect("scripts/run");

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        let mut status = Command::new(&binary);
        fresh(&mut status);
        let out = status.args(["status", "--json"]).output().expect("status");
        if out.status.success() {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            if doc["listeners"]
                .as_array()
                .is_some_and(|l| l.iter().all(|l| l["running"] == true))
            {
                break doc;
            }
        }
        if let Ok(Some(exit)) = child.try_wait() {
            panic!(
                "scripts/run ended with {exit}:\n{}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(home.path().join("run.err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the gateway did not come up");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        status["config"],
        home.path()
            .join(".config/letterlock/gateway.toml")
            .display()
            .to_string()
    );
    assert_eq!(status["accounts"][0]["address"], "newcomer@example.org");
    assert!(status["accounts"][0]["fingerprint"].is_string());
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(printed.contains("port 1143"), "{printed}");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            assert!(exit.success(), "stopped with {exit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop the gateway"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
