//! Web Key Directory discovery against real servers: nginx on loopback,
//! with a certificate of the test CA, serving a directory GnuPG's own
//! `gpg-wks-client --install-key` made, and Knot answering for the
//! domains' names. `adv.example` has an `openpgpkey` sub-domain (the
//! advanced method); `wkd.example` has none (the direct method).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use autocrypt::key;
use keystore::{Discovery, DnsConfig, KeySource, Keystore, Unlock, WkdClient};
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use testbed::knot::{Knot, Zone};

/// A child process killed with the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const GPG_WKS_CLIENT: &str = "/usr/lib/gnupg/gpg-wks-client";

fn wait_for_port(port: u16, what: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} never listened on port {port}");
}

/// Knot, authoritative for the two domains, unsigned.
fn knot() -> Knot {
    let zone = |origin: &str, extra: &str| {
        format!(
            "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n\
             @ NS ns.{origin}.\nns A 127.0.0.1\n@ A 127.0.0.1\n{extra}"
        )
    };
    Knot::start(&[
        Zone {
            domain: "adv.example",
            text: zone("adv.example", "openpgpkey A 127.0.0.1\n"),
            signed: false,
        },
        Zone {
            domain: "wkd.example",
            text: zone("wkd.example", ""),
            signed: false,
        },
    ])
}

/// The directory as GnuPG's tools make it: `DOMAIN/hu/HASH` (and `policy`).
fn install(gnupg: &Path, dir: &Path, cert: &Cert, address: &str) {
    let file = gnupg.join(format!("{address}.pgp"));
    std::fs::write(&file, cert.to_vec().expect("serialize")).expect("key file");
    let out = Command::new(GPG_WKS_CLIENT)
        .env("GNUPGHOME", gnupg)
        .arg("--install-key")
        .arg("-C")
        .arg(dir)
        .arg(&file)
        .arg(address)
        .output()
        .expect("gpg-wks-client (scripts/setup installs gnupg)");
    assert!(
        out.status.success(),
        "gpg-wks-client --install-key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GnuPG's WKD hash of an address's local part.
fn gnupg_hash(gnupg: &Path, address: &str) -> String {
    let out = Command::new(GPG_WKS_CLIENT)
        .env("GNUPGHOME", gnupg)
        .args(["--print-wkd-hash", address])
        .output()
        .expect("gpg-wks-client");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// nginx serving `directory` for the advanced host of `adv.example` and
/// the direct host of `wkd.example`, on `port`.
fn nginx(dir: &Path, directory: &Path, ca: &testbed::TestCa, port: u16) -> Server {
    let server = |name: &str, root: &Path| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name {name};\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   location /.well-known/openpgpkey/ {{ alias {root}/; }}\n  }}\n",
            cert = ca.server_cert.display(),
            key = ca.server_key.display(),
            root = root.display(),
        )
    };
    let temp = dir.join("temp");
    std::fs::create_dir_all(&temp).expect("mkdir");
    let config = format!(
        // One process: killing the child ends the server (a master's workers
        // would outlive it).
        "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n  default_type application/octet-stream;\n\
         \x20 client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n\
         \x20 uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n{adv}{direct}}}\n",
        d = dir.display(),
        t = temp.display(),
        adv = server("openpgpkey.adv.example", directory),
        direct = server("wkd.example", &directory.join("wkd.example")),
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/setup installs nginx-light)");
    let server = Server(child);
    wait_for_port(port, "nginx");
    server
}

#[tokio::test]
async fn keys_are_found_by_both_methods_and_only_for_their_address() {
    let now = SystemTime::now();
    let root = tempfile::tempdir().expect("dir");
    let r = root.path();
    let dave = key::generate("dave@adv.example", now).expect("key");
    let carol = key::generate("carol@wkd.example", now).expect("key");
    let mallory = key::generate("mallory@evil.example", now).expect("key");

    let gnupg = r.join("gnupg");
    std::fs::create_dir(&gnupg).expect("mkdir");
    let directory = r.join("openpgpkey");
    std::fs::create_dir(&directory).expect("mkdir");
    install(&gnupg, &directory, &dave, "dave@adv.example");
    install(&gnupg, &directory, &carol, "carol@wkd.example");
    // Erin's place holds a key that is not Erin's.
    let erin = directory
        .join("adv.example/hu")
        .join(gnupg_hash(&gnupg, "erin@adv.example"));
    std::fs::write(&erin, mallory.to_vec().expect("serialize")).expect("key");
    // Our hash is GnuPG's.
    assert_eq!(
        erin.file_name().and_then(|n| n.to_str()),
        Some(keystore::wkd::wkd_hash("erin").as_str())
    );

    let ca =
        testbed::TestCa::create_for(r, &["openpgpkey.adv.example", "adv.example", "wkd.example"]);
    let dns_server = knot();
    let port = testbed::free_port();
    let web = nginx(&r.join("nginx"), &directory, &ca, port);

    let dns = DnsConfig {
        nameservers: vec![dns_server.addr()],
        require_dnssec: false,
        trust_anchor: None,
    };
    let tls = net_edge::client_config(Some(&ca.ca_cert), None).expect("TLS");
    let wkd = WkdClient::new(tls, &dns).expect("client").with_port(port);
    let discovery = Discovery::new(&dns).expect("resolver").with_wkd(wkd);
    let store = Keystore::create(&r.join("vault"), Unlock::KeyFile)
        .await
        .expect("vault");

    // The advanced method (openpgpkey.adv.example exists).
    let found = discovery
        .discover(&store, "Dave@adv.example", now)
        .await
        .expect("dave");
    assert_eq!(found.source, Some(KeySource::Wkd));
    assert_eq!(found.certs.len(), 1);
    assert_eq!(found.certs[0].fingerprint(), dave.fingerprint());
    let history = store.history("dave@adv.example").await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].source, KeySource::Wkd);
    let peer = store
        .effective_peer("dave@adv.example")
        .await
        .expect("peer")
        .expect("known");
    assert_eq!(
        peer.public_key.map(|k| k.fingerprint()),
        Some(dave.fingerprint()),
        "mail goes to the discovered key"
    );

    // The direct method (no openpgpkey.wkd.example). Carol's key was
    // verified before, by another fingerprint: what the directory serves
    // is found, and stays a conflict the person decides on.
    let verified = key::generate("carol@wkd.example", now).expect("key");
    store
        .record_key(&verified, KeySource::Import, now)
        .await
        .expect("import");
    store
        .verify(
            "carol@wkd.example",
            &verified.fingerprint().to_hex(),
            "fingerprint",
            now,
        )
        .await
        .expect("verify");
    let found = discovery
        .discover(&store, "carol@wkd.example", now)
        .await
        .expect("carol");
    assert_eq!(found.source, Some(KeySource::Wkd));
    assert_eq!(found.certs[0].fingerprint(), carol.fingerprint());
    let peer = store
        .effective_peer("carol@wkd.example")
        .await
        .expect("peer")
        .expect("known");
    assert_eq!(
        peer.public_key.map(|k| k.fingerprint()),
        Some(verified.fingerprint()),
        "a discovered key never replaces a verified one"
    );
    assert_eq!(
        store
            .summary("carol@wkd.example")
            .await
            .expect("summary")
            .conflicts,
        [carol.fingerprint().to_hex()]
    );

    // A key served for Erin that does not name her: left out, recorded for nobody.
    let found = discovery
        .discover(&store, "erin@adv.example", now)
        .await
        .expect("erin");
    assert!(found.certs.is_empty());
    assert_eq!(found.ignored, 1);
    assert!(found.wkd_failed.is_none());
    assert!(store
        .history("erin@adv.example")
        .await
        .expect("history")
        .is_empty());
    assert!(store
        .history("mallory@evil.example")
        .await
        .expect("history")
        .is_empty());

    // No key there: 404.
    let found = discovery
        .discover(&store, "nobody@adv.example", now)
        .await
        .expect("nobody");
    assert!(found.certs.is_empty() && found.source.is_none() && found.wkd_failed.is_none());

    // The server gone: what it said is cached, a new question is a failure
    // with its reason, and none of it is an error of the whole look-up.
    drop(web);
    let found = discovery
        .discover(&store, "dave@adv.example", now)
        .await
        .expect("cached");
    assert_eq!(found.certs[0].fingerprint(), dave.fingerprint());
    let found = discovery
        .discover(&store, "nobody@adv.example", now)
        .await
        .expect("cached absence");
    assert!(found.certs.is_empty() && found.wkd_failed.is_none());
    let found = discovery
        .discover(&store, "frank@adv.example", now)
        .await
        .expect("a failure is reported, not raised");
    assert!(found.certs.is_empty());
    let failure = found.wkd_failed.expect("the reason").to_string();
    assert!(failure.contains("openpgpkey.adv.example"), "{failure}");
}
