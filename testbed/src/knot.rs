//! Knot, a real authoritative DNS server, on a loopback port: the zones a
//! test gives it, each signed with DNSSEC or not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;

/// One zone: its domain (`.` for the root) and its zone file's text.
pub struct Zone<'a> {
    pub domain: &'a str,
    pub text: String,
    /// Knot signs it (keys of its own, made at start).
    pub signed: bool,
}

/// A running `knotd`, stopped with the value.
pub struct Knot {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Knot {
    /// Serves `zones` and returns once the first one's SOA answers.
    pub fn start(zones: &[Zone<'_>]) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        for sub in ["zones", "db", "run"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        let port = free_port();
        let mut config = format!(
            "server:\n    rundir: \"{r}\"\n    listen: 127.0.0.1@{port}\ndatabase:\n    storage: \"{db}\"\n\
             template:\n  - id: default\n    storage: \"{z}\"\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n",
            r = d.join("run").display(),
            db = d.join("db").display(),
            z = d.join("zones").display(),
        );
        for zone in zones {
            std::fs::write(d.join("zones").join(file_name(zone.domain)), &zone.text).expect("zone");
            config += &format!(
                "  - domain: {}\n    file: {}\n",
                zone.domain,
                file_name(zone.domain)
            );
            if zone.signed {
                config += "    dnssec-signing: on\n";
            }
        }
        std::fs::write(d.join("knot.conf"), config).expect("config");
        let child = Command::new("knotd")
            .arg("-c")
            .arg(d.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd (scripts/setup installs knot)");
        let knot = Knot { child, port, dir };
        if let Some(first) = zones.first() {
            knot.wait_for(first.domain, "SOA");
        }
        knot
    }

    /// Its configuration file (for `keymgr` and `knotc`).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("knot.conf")
    }

    /// A directory for the test's own files, removed with the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `kdig +short` of a name and type at this server.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        let out = Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                name,
                rtype,
            ])
            .output()
            .expect("kdig (scripts/setup installs knot-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the server answers a name and type.
    pub fn wait_for(&self, name: &str, rtype: &str) {
        for _ in 0..100 {
            if !self.dig(name, rtype).trim().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("knotd never answered {name} {rtype}");
    }

    /// Gives a zone new text and has Knot load it.
    pub fn replace_zone(&self, domain: &str, text: &str) {
        std::fs::write(self.dir.path().join("zones").join(file_name(domain)), text).expect("zone");
        let reload = Command::new("knotc")
            .arg("-c")
            .arg(self.conf())
            .args(["zone-reload", domain])
            .output()
            .expect("knotc");
        assert!(
            reload.status.success(),
            "{}",
            String::from_utf8_lossy(&reload.stderr)
        );
    }
}

fn file_name(domain: &str) -> String {
    match domain.trim_end_matches('.') {
        "" => "root.zone".into(),
        name => format!("{name}.zone"),
    }
}
