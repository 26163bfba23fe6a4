//! `gateway init`, `run` and `status` as a person meets them: two accounts
//! in one configuration, refusals that name the cause and the fix, and
//! start-up errors (invalid value with its line, port taken, a listener off
//! loopback without local TLS).

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn gateway(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("LETTERLOCK_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .expect("gateway")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn init(config: &Path, address: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "init",
        "--address",
        address,
        "--imap",
        "imap.example.org:993",
        "--smtp",
        "smtp.example.org:587",
    ];
    args.extend_from_slice(extra);
    gateway(config, &args)
}

#[test]
fn init_adds_accounts_and_explains_refusals() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("conf/gateway.toml");
    let data = dir.path().join("data");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("dir");
    std::fs::write(&config, format!("data_dir = \"{}\"\n", data.display())).expect("config");

    // Not on a terminal: a missing setting is named, and so is the
    // missing passphrase for a new vault.
    let missing = gateway(&config, &["init", "--address", "alice@example.org"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing).contains("--imap is missing"),
        "{}",
        text(&missing)
    );
    let no_pass = init(&config, "alice@example.org", &[]);
    assert_eq!(no_pass.status.code(), Some(2));
    assert!(
        text(&no_pass).contains("--no-passphrase"),
        "{}",
        text(&no_pass)
    );

    let first = init(&config, "alice@example.org", &["--no-passphrase"]);
    assert!(first.status.success(), "{}", text(&first));
    let said = text(&first);
    assert!(
        said.contains("Configure manually") && said.contains("port 1143"),
        "{said}"
    );
    let second = init(
        &config,
        "work@example.net",
        &["--username", "w123", "--policy", "required"],
    );
    assert!(second.status.success(), "{}", text(&second));
    let again = init(&config, "Alice@Example.org", &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("already an account"),
        "{}",
        text(&again)
    );
    let bad = init(&config, "not-an-address", &[]);
    assert!(
        text(&bad).contains("is not an email address"),
        "{}",
        text(&bad)
    );

    let written = std::fs::read_to_string(&config).expect("config");
    assert!(
        written.contains("# opportunistic | mutual | required"),
        "{written}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&config)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the configuration is private");

    let status = gateway(&config, &["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let accounts = doc["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[1]["username"], "w123");
    assert_eq!(accounts[1]["policy"], "required");
    assert_eq!(accounts[1]["smtp"], "smtp.example.org:587 (starttls)");
    assert!(accounts.iter().all(|a| a["fingerprint"].is_string()));
    assert!(doc["certificate_sha256"]
        .as_str()
        .is_some_and(|f| f.len() == 95));
    assert!(doc["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .all(|l| l["running"] == false));
}

#[test]
fn run_refuses_to_start_with_a_clear_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gateway.toml");
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let free = testbed::free_port();
    let base = format!(
        "data_dir = \"{}\"\n[imap]\nlisten = \"127.0.0.1:{free}\"\n[smtp]\nlisten = \"127.0.0.1:{taken_port}\"\n",
        data.display()
    );
    let no_config = gateway(&config, &["run"]);
    assert_eq!(no_config.status.code(), Some(2));
    assert!(
        text(&no_config).contains("gateway init"),
        "{}",
        text(&no_config)
    );

    std::fs::write(&config, &base).expect("config");
    assert!(init(&config, "alice@example.org", &["--no-passphrase"])
        .status
        .success());

    // Port taken.
    let out = gateway(&config, &["run"]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out);
    assert!(
        said.contains(&format!("127.0.0.1:{taken_port}")) && said.contains("another program"),
        "{said}"
    );
    drop(taken);

    // A bad value: the file, the line and the value are named.
    let written = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        written.replace("security = \"tls\"", "security = \"tsl\""),
    )
    .expect("w");
    let said = text(&gateway(&config, &["run"]));
    assert!(
        said.contains("tsl") && said.contains("gateway.toml"),
        "{said}"
    );
    assert!(said.contains("line"), "{said}");
    std::fs::write(&config, &written).expect("w");

    // Off loopback without local TLS.
    std::fs::write(
        &config,
        written.replace(&format!("127.0.0.1:{free}"), &format!("0.0.0.0:{free}")),
    )
    .expect("w");
    let said = text(&gateway(&config, &["run"]));
    assert!(
        said.contains("refusing to listen") && said.contains("local_tls"),
        "{said}"
    );

    // The web page off loopback, even with local TLS: it has none itself.
    let web = format!("local_tls = true\n{written}\n[web]\nlisten = \"0.0.0.0:{free}\"\n");
    std::fs::write(&config, web).expect("w");
    let out = gateway(&config, &["run"]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out);
    assert!(
        said.contains("web page") && said.contains("[web] listen") && said.contains("127.0.0.1"),
        "{said}"
    );
    // Turned off, it makes no login links.
    std::fs::write(&config, format!("{written}\n[web]\nenabled = false\n")).expect("w");
    let out = gateway(&config, &["web-link"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("enabled = false"), "{}", text(&out));
}

#[test]
fn completions_and_man_page() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gateway.toml");
    let bash = gateway(&config, &["completions", "bash"]);
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("gateway"));
    let man = gateway(&config, &["man"]);
    assert!(man.status.success());
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH gateway"));
}
