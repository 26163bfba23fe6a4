//! The Python mail clients tests drive (smtplib, imaplib, raw sockets), as
//! scripts run with `python3 -c`: one runner, so each test says only what
//! its client does.

use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;

/// Runs `script` with `args`, `stdin` written to it; its standard output,
/// once it exited successfully. A failing client fails the test, with what
/// it wrote to standard error.
pub fn run<S: AsRef<OsStr>>(
    script: &str,
    args: impl IntoIterator<Item = S>,
    stdin: &[u8],
) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // A client that does not read its input closes the pipe early: fine.
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("the client ends");
    assert!(
        out.status.success(),
        "the Python client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A client's output lines decoded from base64 (how the scripts print
/// answers that may hold any bytes).
pub fn base64_lines(output: &[u8]) -> Vec<Vec<u8>> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| {
            base64::engine::general_purpose::STANDARD
                .decode(line)
                .expect("a base64 line")
        })
        .collect()
}

/// [`base64_lines`] as text (invalid UTF-8 replaced).
pub fn base64_text(output: &[u8]) -> Vec<String> {
    base64_lines(output)
        .iter()
        .map(|raw| String::from_utf8_lossy(raw).into_owned())
        .collect()
}
