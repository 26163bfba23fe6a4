//! `gateway search` over an archive filled through the library.

use std::process::Command;

use archive::{content_hash, Archive, Location};
use keystore::{Keystore, Unlock};

#[test]
fn search_prints_hits_and_json() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .expect("config");
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async {
        let vault = Keystore::create(&data, Unlock::KeyFile).await.expect("vault");
        let archive = Archive::open(&vault).await.expect("archive");
        let message = b"From: Bob <bob@example.org>\r\nSubject: Treffen\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nWir treffen uns am Leuchtturm.\r\n";
        let loc = Location { account: "alice@example.org".into(), mailbox: "INBOX".into(), uidvalidity: 1, uid: 42 };
        archive.store(&loc, &content_hash(b"ciphertext"), message, true).await.expect("store");
        archive.close().await;
        vault.close().await;
    });
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("search")
            .args(args)
            .env("LETTERLOCK_CONFIG", &config)
            .output()
            .expect("gateway runs")
    };
    let human = run(&["leuchtturm"]);
    assert!(human.status.success());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("Treffen") && text.contains("UID 42") && text.contains("[Leuchtturm]"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["from:bob", "--json"]).stdout).expect("json");
    assert_eq!(json["hits"][0]["uid"], 42);
    assert_eq!(json["hits"][0]["mailbox"], "INBOX");
    let none = run(&["nothing"]);
    assert_eq!(none.status.code(), Some(0), "no hits is still success");
    let bad = run(&["a OR"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("OR needs a word on both sides"));
}
