//! Stopping the proxy (`gateway run` on SIGTERM): every session hears a BYE
//! that says why — before login, logged in and selected, in IDLE — and the
//! listener is closed. Clients are raw sockets (imaplib cannot wait in
//! IDLE), the provider a real Dovecot.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use archive::Archive;
use testbed::Dovecot;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod common;

const ALICE: &str = "alice@example.org";

/// argv: port, what to do before the stop (`greeted`, `selected`, `idle`).
/// Prints `ready` when there, then every line the proxy sends until it
/// closes.
const CLIENT: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
def until(prefix):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("closed before " + prefix)
        if line.startswith(prefix.encode()):
            return
until("* OK")
if sys.argv[2] in ("selected", "idle"):
    s.sendall(b"a LOGIN alice alicepw\r\n"); until("a OK")
    s.sendall(b"b SELECT INBOX\r\n"); until("b OK")
if sys.argv[2] == "idle":
    s.sendall(b"c IDLE\r\n"); until("+")
print("ready", flush=True)
for line in f:
    print(line.decode(errors="replace").strip(), flush=True)
"#;

async fn client(
    port: u16,
    state: &str,
) -> (
    Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = Command::new("python3")
        .args(["-c", CLIENT, &port.to_string(), state])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the client got there in time")
        .expect("read");
    assert_eq!(ready.as_deref(), Some("ready"), "client in state {state}");
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_is_told_why_when_the_proxy_stops() {
    let dovecot = Dovecot::start(&[("alice", "alicepw")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = common::vault_with_identity(dir.path(), ALICE, SystemTime::now()).await;
    let archive = Archive::open(&store).await.expect("archive");
    let running = common::start(
        vec![common::account_at(&dovecot, ALICE, "alice")],
        Duration::from_secs(30),
        &store,
        &archive,
    )
    .await;
    let port = running.port;
    let mut clients = Vec::new();
    for state in ["greeted", "selected", "idle"] {
        clients.push((state, client(port, state).await));
    }
    tokio::time::timeout(Duration::from_secs(20), running.stop())
        .await
        .expect("the proxy stops within its grace period");
    for (state, (mut child, mut lines)) in clients {
        let mut said = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            said.push(line);
        }
        assert!(
            said.iter()
                .any(|l| l.starts_with("* BYE") && l.contains("shutting down")),
            "client {state} was told: {said:?}"
        );
        let _ = child.wait().await;
    }
    // A new connection finds nobody listening.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}
