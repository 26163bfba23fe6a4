//! The real `keytool` binary, command by command, including a verified
//! contact whose key changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autocrypt::{key, AutocryptHeader, Incoming, PreferEncrypt};
use keystore::{Keystore, Unlock};
use sequoia_openpgp::Cert;

const BOB: &str = "bob@example.org";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A config pointing at a fresh vault that holds Alice's account key.
    fn new(unlock: Unlock) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::write(
            dir.path().join("gateway.toml"),
            format!("data_dir = {:?}\n", data.display().to_string()),
        )
        .expect("config");
        block_on(async {
            let store = Keystore::create(&data, unlock).await.expect("vault");
            let alice = key::generate("alice@example.org", SystemTime::now()).expect("key");
            store
                .put_identity(
                    "alice@example.org",
                    &alice,
                    PreferEncrypt::Mutual,
                    SystemTime::now(),
                )
                .await
                .expect("identity");
            store.close().await;
        });
        Home { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn keytool(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keytool"))
            .args(args)
            .env("LETTERLOCK_CONFIG", self.dir.path().join("gateway.toml"))
            .env_remove("LETTERLOCK_PASSPHRASE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("keytool runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("keytool finishes")
    }

    /// Bob's mail arrives with an Autocrypt header carrying `key`.
    fn bob_writes(&self, key: &Cert, day: u64) {
        let data = self.data();
        let key = key.clone();
        block_on(async move {
            let store = Keystore::open(&data, None).await.expect("open");
            let incoming = Incoming {
                from_addr: BOB.into(),
                effective_date: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + day * 86_400),
                header: Some(AutocryptHeader::new(BOB, PreferEncrypt::Mutual, key)),
                header_problems: vec![],
            };
            store
                .record_incoming(&incoming, SystemTime::now())
                .await
                .expect("record");
            store.close().await;
        });
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).expect("one JSON document")
}

fn bob_key() -> Cert {
    key::generate(BOB, UNIX_EPOCH + Duration::from_secs(1_700_000_000)).expect("key")
}

#[test]
fn list_show_verify_conflict_reject_forget() {
    let home = Home::new(Unlock::KeyFile);
    let (k1, k2) = (bob_key(), bob_key());
    let (f1, f2) = (k1.fingerprint().to_hex(), k2.fingerprint().to_hex());
    home.bob_writes(&k1, 1);

    let list = json(&home.keytool(&["list", "--json"], ""));
    assert_eq!(list["peers"][0]["address"], BOB);
    assert_eq!(list["peers"][0]["trust"], "tofu");
    assert_eq!(list["peers"][0]["fingerprint"], f1.as_str());
    let table = home.keytool(&["list"], "");
    assert!(text(&table).contains(BOB) && text(&table).contains("tofu"));

    // A wrong fingerprint is a "no", a right one verifies.
    let wrong = home.keytool(&["verify", BOB, "--fingerprint", &f2], "");
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    let spaced = f1
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let right = home.keytool(&["verify", BOB, "--fingerprint", &spaced], "");
    assert_eq!(right.status.code(), Some(0), "{}", text(&right));
    assert_eq!(
        json(&home.keytool(&["show", BOB, "--json"], ""))["peer"]["trust"],
        "verified"
    );

    // Bob's key changes: stored as a conflict, mail keeps going to the verified key.
    home.bob_writes(&k2, 2);
    let show = json(&home.keytool(&["show", BOB, "--json"], ""));
    assert_eq!(show["peer"]["fingerprint"], f1.as_str());
    assert_eq!(show["peer"]["conflicts"][0], f2.as_str());
    let human = home.keytool(&["show", BOB], "");
    assert!(text(&human).contains("CONFLICT"), "{}", text(&human));
    let exported = home.keytool(&["export", BOB], "");
    assert!(exported.status.success());
    assert_eq!(read_cert(&exported.stdout).fingerprint(), k1.fingerprint());

    // Interactive verification shows both fingerprints, a URI and asks.
    let asked = home.keytool(&["verify", BOB], "y\n");
    assert!(asked.status.success(), "{}", text(&asked));
    let out = text(&asked);
    assert!(out.contains(&format!("OPENPGP4FPR:{f2}")), "{out}");
    assert!(out.contains("Your key (alice@example.org)"), "{out}");
    assert_eq!(
        read_cert(&home.keytool(&["export", BOB], "").stdout).fingerprint(),
        k2.fingerprint()
    );
    let declined = home.keytool(&["verify", BOB], "n\n");
    assert_eq!(declined.status.code(), Some(1));

    let history = json(&home.keytool(&["history", BOB, "--json"], ""));
    assert_eq!(history["keys"].as_array().map(Vec::len), Some(2));
    assert!(history["events"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["kind"] == "conflict")));

    let unverify = home.keytool(&["unverify", BOB], "");
    assert!(unverify.status.success());
    let reject = home.keytool(&["reject", BOB], "");
    assert!(reject.status.success(), "{}", text(&reject));
    let after = home.keytool(&["export", BOB], "");
    assert_eq!(
        after.status.code(),
        Some(2),
        "a rejected key is not exported for use: {}",
        text(&after)
    );

    assert!(home.keytool(&["forget", BOB], "").status.success());
    assert_eq!(
        json(&home.keytool(&["list", "--json"], ""))["peers"],
        serde_json::json!([])
    );
    assert_eq!(home.keytool(&["forget", BOB], "").status.code(), Some(2));
}

#[test]
fn gateway_keytool_is_the_same_command() {
    let home = Home::new(Unlock::KeyFile);
    home.bob_writes(&bob_key(), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["keytool", "list", "--json"])
        .env("LETTERLOCK_CONFIG", home.dir.path().join("gateway.toml"))
        .output()
        .expect("gateway runs");
    assert_eq!(json(&out)["peers"][0]["address"], BOB);
    let usage = Command::new(env!("CARGO_BIN_EXE_keytool"))
        .arg("no-such-command")
        .output()
        .expect("keytool runs");
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

fn read_cert(bytes: &[u8]) -> Cert {
    use sequoia_openpgp::parse::Parse;
    Cert::from_bytes(bytes).expect("an armored certificate")
}

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

#[test]
fn import_reads_gpg_and_sq_output_and_export_feeds_gpg() {
    let home = Home::new(Unlock::KeyFile);
    let keys = testdata("thunderbird-openpgp/keys");
    // Binary, as `gpg --export` writes it.
    let binary = home.keytool(
        &[
            "import",
            keys.join("key-binary.gpg").to_str().expect("path"),
        ],
        "",
    );
    assert!(binary.status.success(), "{}", text(&binary));
    // Several armored certificates in one stream, from stdin.
    let mut both =
        std::fs::read(keys.join("bob@openpgp.example-0xfbfcc82a015e7330-pub.asc")).expect("bob");
    both.extend(
        std::fs::read(keys.join("carol@example.com-0x3099ff1238852b9f-pub.asc")).expect("carol"),
    );
    let stdin = home.keytool(&["import", "-"], &String::from_utf8(both).expect("ascii"));
    assert!(stdin.status.success(), "{}", text(&stdin));
    let list = json(&home.keytool(&["list", "--json"], ""));
    let addresses: Vec<&str> = list["peers"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["address"].as_str())
        .collect();
    assert!(
        addresses.contains(&"bob@openpgp.example") && addresses.contains(&"carol@example.com"),
        "{addresses:?}"
    );

    // What we export, gpg imports.
    let exported = home.keytool(&["export", "carol@example.com"], "");
    assert!(exported.status.success());
    let own = home.keytool(&["export", "--own", "alice@example.org"], "");
    assert!(own.status.success());
    assert!(
        !read_cert(&own.stdout).is_tsk(),
        "export never writes secret keys"
    );
    let gnupg = home.dir.path().join("gnupg");
    std::fs::create_dir(&gnupg).expect("gnupg home");
    for data in [&exported.stdout, &own.stdout] {
        let mut gpg = Command::new("gpg")
            .arg("--homedir")
            .arg(&gnupg)
            .args(["--batch", "--import"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg (scripts/setup installs it)");
        use std::io::Write;
        gpg.stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
        let out = gpg.wait_with_output().expect("gpg");
        assert!(out.status.success(), "{}", text(&out));
    }

    // Certificates straight from the tools: `gpg --export` (binary) and `sq key extract-cert`.
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&gnupg)
            .args(["--batch", "--passphrase", "", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .expect("gpg");
        assert!(out.status.success(), "{}", text(&out));
        out.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "Dana <dana@example.org>",
        "ed25519",
        "default",
        "never",
    ]);
    let exported_by_gpg = home.dir.path().join("dana.gpg");
    std::fs::write(&exported_by_gpg, gpg(&["--export", "dana@example.org"])).expect("write");
    let key = home.dir.path().join("erin.key");
    let cert = home.dir.path().join("erin.cert");
    for args in [
        vec![
            "key",
            "generate",
            "--userid",
            "<erin@example.org>",
            "--export",
            key.to_str().expect("path"),
        ],
        vec![
            "key",
            "extract-cert",
            "--output",
            cert.to_str().expect("path"),
            key.to_str().expect("path"),
        ],
    ] {
        let out = Command::new("sq").args(&args).output().expect("sq");
        assert!(out.status.success(), "{}", text(&out));
    }
    for (file, address) in [
        (&exported_by_gpg, "dana@example.org"),
        (&cert, "erin@example.org"),
    ] {
        let out = home.keytool(&["import", file.to_str().expect("path")], "");
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(address), "{}", text(&out));
    }

    let garbage = home.keytool(&["import", "-"], "not a key\n");
    assert_eq!(garbage.status.code(), Some(2));
}

#[test]
fn setup_messages_round_trip_and_read_the_spec_example() {
    let from = Home::new(Unlock::KeyFile);
    let out = from.keytool(&["setup-message", "export", "alice@example.org"], "");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = stderr
        .rsplit(": ")
        .next()
        .expect("a code")
        .trim()
        .to_string();
    let message = from.dir.path().join("setup.eml");
    std::fs::write(&message, &out.stdout).expect("write");

    let to = Home::new(Unlock::KeyFile);
    let wrong = to.keytool(
        &[
            "setup-message",
            "import",
            message.to_str().expect("path"),
            "--code",
            "1111-1111-1111-1111-1111-1111-1111-1111-1111",
        ],
        "",
    );
    assert_eq!(wrong.status.code(), Some(2));
    let imported = to.keytool(
        &["setup-message", "import", message.to_str().expect("path")],
        &format!("{code}\n"),
    );
    assert!(imported.status.success(), "{}", text(&imported));

    let spec = testdata("autocrypt-spec/example-setup-message.eml");
    let example = to.keytool(
        &[
            "setup-message",
            "import",
            spec.to_str().expect("path"),
            "--code",
            "1742-0185-6197-1303-7016-8412-3581-4441-0597",
        ],
        "",
    );
    assert!(example.status.success(), "{}", text(&example));
    assert!(text(&example).contains("alice@autocrypt.example"));
}

#[test]
fn passphrase_vault_needs_the_right_passphrase() {
    let home = Home::new(Unlock::Passphrase(secrecy::SecretString::from(
        "s3cret".to_string(),
    )));
    let pw = home.dir.path().join("pw");
    std::fs::write(&pw, "wrong\n").expect("write");
    let wrong = home.keytool(
        &["--passphrase-file", pw.to_str().expect("path"), "list"],
        "",
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong).contains("passphrase is wrong"),
        "{}",
        text(&wrong)
    );
    let missing = home.keytool(&["list"], "");
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("passphrase"), "{}", text(&missing));
    std::fs::write(&pw, "s3cret\n").expect("write");
    let right = home.keytool(
        &["--passphrase-file", pw.to_str().expect("path"), "list"],
        "",
    );
    assert!(right.status.success(), "{}", text(&right));
}

#[test]
fn vcards_import_for_the_address_they_give_and_export_for_delta_chat() {
    let home = Home::new(Unlock::KeyFile);
    let bob = bob_key();
    // Bob's card gives his work address, which his key's user ID does not
    // carry: the card is what the user vouches for. A second card in the
    // same file has no key and is reported, not fatal.
    let card = gateway::vcard::render("bob@work.example", Some("Bob"), &bob).expect("vCard");
    let file = home.dir.path().join("contacts.vcf");
    std::fs::write(
        &file,
        format!("{card}BEGIN:VCARD\r\nVERSION:4.0\r\nEMAIL:carol@example.org\r\nEND:VCARD\r\n"),
    )
    .expect("write");
    let out = home.keytool(&["import", file.to_str().expect("path")], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("bob@work.example (Bob)"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("carol@example.org has no OpenPGP key"),
        "{}",
        text(&out)
    );
    let shown = json(&home.keytool(&["show", "bob@work.example", "--json"], ""));
    assert!(
        shown.to_string().contains(&bob.fingerprint().to_hex()),
        "{shown}"
    );

    // Exported as a vCard, and read back elsewhere.
    let exported = home.keytool(&["export", "bob@work.example", "--vcard"], "");
    assert!(exported.status.success(), "{}", text(&exported));
    let exported = String::from_utf8(exported.stdout).expect("text");
    assert!(
        exported.contains("EMAIL:bob@work.example\r\nFN:bob@work.example\r\nKEY:data:application/pgp-keys;base64,"),
        "{exported}"
    );
    let own = home.keytool(&["export", "--own", "alice@example.org", "--vcard"], "");
    assert!(own.status.success(), "{}", text(&own));
    let other = Home::new(Unlock::KeyFile);
    let read_back = other.keytool(&["import", "-"], &exported);
    assert!(read_back.status.success(), "{}", text(&read_back));

    // A vCard without any usable contact is an error that says so.
    let none = home.keytool(
        &["import", "-"],
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Nobody\r\nEND:VCARD\r\n",
    );
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    assert!(
        text(&none).contains("no contact with a usable key"),
        "{}",
        text(&none)
    );
}
