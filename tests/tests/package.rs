//! The Debian package `scripts/package-deb` makes: what it holds, what it
//! depends on, and that the binaries it installs run. Built from the debug
//! profile the tests have built already (the script strips either way; a
//! release build here would add minutes to every test run).

use std::path::Path;
use std::process::Command;

fn run(program: &str, args: &[&str], dir: Option<&Path>) -> String {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_holds_stripped_binaries_docs_and_the_unit_and_they_run() {
    let out = tempfile::tempdir().expect("dir");
    let made = Command::new(e2e::workspace_root().join("scripts/package-deb"))
        .arg(out.path())
        .env("LETTERLOCK_PROFILE", "dev")
        .output()
        .expect("scripts/package-deb");
    assert!(
        made.status.success(),
        "scripts/package-deb failed: {}{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    let deb = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let deb = deb.as_str();
    assert!(deb.ends_with(".deb"), "{deb}");

    let contents = run("dpkg-deb", &["--contents", deb], None);
    for path in [
        "./usr/bin/gateway",
        "./usr/bin/keytool",
        "./usr/share/man/man1/gateway.1.gz",
        "./usr/share/bash-completion/completions/gateway",
        "./usr/share/zsh/vendor-completions/_gateway",
        "./usr/share/fish/vendor_completions.d/gateway.fish",
        "./usr/lib/systemd/user/letterlock.service",
        "./usr/share/doc/letterlock/examples/gateway.toml",
        "./usr/share/doc/letterlock/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{contents}"
        );
    }
    let depends = run("dpkg-deb", &["--field", deb, "Depends"], None);
    for library in ["libssl3", "libc6"] {
        assert!(depends.contains(library), "{depends}");
    }
    // OpenSSL is the one crypto library (Sequoia's backend and SQLCipher's).
    assert!(!depends.contains("libnettle"), "{depends}");

    // Unpacked into a fresh root: the binaries run, carry no symbol
    // table, and the unit starts the installed binary.
    let root = out.path().join("root");
    run(
        "dpkg-deb",
        &["--extract", deb, root.to_str().expect("path")],
        None,
    );
    let gateway = root.join("usr/bin/gateway");
    let version = run(gateway.to_str().expect("path"), &["--version"], None);
    assert!(version.starts_with("gateway "), "{version}");
    let keytool = root.join("usr/bin/keytool");
    let version = run(keytool.to_str().expect("path"), &["--version"], None);
    assert!(version.starts_with("keytool "), "{version}");
    for binary in [&gateway, &keytool] {
        let sections = run("readelf", &["-S", binary.to_str().expect("path")], None);
        assert!(
            !sections.contains(".symtab"),
            "{} is not stripped",
            binary.display()
        );
    }
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/user/letterlock.service"))
        .expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/gateway run"), "{unit}");
    assert!(!unit.contains(".local/bin"), "{unit}");
    let man = run(
        "sh",
        &["-c", "gzip -dc usr/share/man/man1/gateway.1.gz"],
        Some(&root),
    );
    assert!(man.contains(".TH gateway"), "{man}");
}
