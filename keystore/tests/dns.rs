//! DNS OPENPGPKEY discovery against a real DNS server: Knot on loopback,
//! serving one zone it signs with DNSSEC and one it does not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use autocrypt::key;
use base64::Engine;
use keystore::{openpgpkey_name, Discovery, DnsConfig, KeySource, Keystore, Unlock};
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use testbed::knot::{Knot, Zone};

fn zone(origin: &str, records: &[(String, &Cert)]) -> String {
    let mut z = format!(
        "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n@ NS ns.{origin}.\nns A 127.0.0.1\n"
    );
    for (owner, cert) in records {
        let data =
            base64::engine::general_purpose::STANDARD.encode(cert.to_vec().expect("serialize"));
        z.push_str(&format!("{owner} OPENPGPKEY {data}\n"));
    }
    z
}

/// A signed root zone that delegates to `signed.example` (signed, with its
/// DS in the root) and `plain.example` (unsigned, no DS), so a validating
/// resolver anchored at this root can tell the two apart.
fn start_knot(signed: &[(String, &Cert)], plain: &[(String, &Cert)]) -> Knot {
    let knot = Knot::start(&[
        Zone {
            domain: ".",
            text: root_zone(1, ""),
            signed: true,
        },
        Zone {
            domain: "signed.example",
            text: zone("signed.example", signed),
            signed: true,
        },
        Zone {
            domain: "plain.example",
            text: zone("plain.example", plain),
            signed: false,
        },
    ]);
    knot.wait_for("signed.example", "DNSKEY");
    // Publish the child's DS in the root, as a registrar would.
    let ds = Command::new("keymgr")
        .arg("-c")
        .arg(knot.conf())
        .args(["signed.example", "ds"])
        .output()
        .expect("keymgr");
    let ds = String::from_utf8_lossy(&ds.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(ds.contains(" DS "), "keymgr gave a DS record: {ds:?}");
    knot.replace_zone(".", &root_zone(2, &ds));
    knot.wait_for("signed.example", "DS");
    knot
}

/// The root's key-signing key as a trust anchor file.
fn anchor(knot: &Knot) -> PathBuf {
    let lines: String = knot
        .dig(".", "DNSKEY")
        .lines()
        .filter(|l| l.starts_with("257 "))
        .map(|l| format!(". 300 IN DNSKEY {l}\n"))
        .collect();
    assert!(!lines.is_empty(), "the root zone is signed");
    let p = knot.dir().join("anchor.txt");
    std::fs::write(&p, lines).expect("anchor");
    p
}

fn root_zone(serial: u32, ds: &str) -> String {
    format!(
        "$ORIGIN .\n$TTL 300\n. SOA ns.root. hostmaster.root. {serial} 3600 600 86400 300\n. NS ns.root.\nns.root. A 127.0.0.1\n\
         signed.example. NS ns.signed.example.\nns.signed.example. A 127.0.0.1\n\
         plain.example. NS ns.plain.example.\nns.plain.example. A 127.0.0.1\n{ds}\n"
    )
}

fn owner(address: &str) -> String {
    openpgpkey_name(address).expect("name")
}

async fn vault(dir: &Path) -> Keystore {
    Keystore::create(dir, Unlock::KeyFile).await.expect("vault")
}

#[tokio::test]
async fn validated_answers_are_accepted_and_unvalidated_refused() {
    let now = SystemTime::now();
    let carol = key::generate("carol@signed.example", now).expect("key");
    let dave = key::generate("dave@plain.example", now).expect("key");
    let knot = start_knot(
        &[(owner("carol@signed.example"), &carol)],
        &[(owner("dave@plain.example"), &dave)],
    );
    let dir = tempfile::tempdir().expect("dir");
    let store = vault(dir.path()).await;

    let strict = Discovery::new(&DnsConfig {
        nameservers: vec![knot.addr()],
        require_dnssec: true,
        trust_anchor: Some(anchor(&knot)),
    })
    .expect("resolver");
    let found = strict
        .discover(&store, "carol@signed.example", now)
        .await
        .expect("validated answer");
    assert_eq!(found.certs.len(), 1);
    assert_eq!(found.certs[0].fingerprint(), carol.fingerprint());
    let history = store
        .history("carol@signed.example")
        .await
        .expect("history");
    assert_eq!(history[0].source, KeySource::Dns);

    // The unsigned zone's answer cannot be validated: refused, nothing stored.
    let refused = strict.discover(&store, "dave@plain.example", now).await;
    assert!(
        refused.is_err(),
        "an unvalidated answer must be refused: {refused:?}"
    );
    assert!(store
        .history("dave@plain.example")
        .await
        .expect("history")
        .is_empty());

    // Without the requirement, the unsigned answer is taken.
    let lax = Discovery::new(&DnsConfig {
        nameservers: vec![knot.addr()],
        require_dnssec: false,
        trust_anchor: None,
    })
    .expect("resolver");
    let found = lax
        .discover(&store, "dave@plain.example", now)
        .await
        .expect("answer");
    assert_eq!(found.certs[0].fingerprint(), dave.fingerprint());
}

#[tokio::test]
async fn answers_and_absences_are_cached_for_their_ttl() {
    let now = SystemTime::now();
    let carol = key::generate("carol@signed.example", now).expect("key");
    let knot = start_knot(&[(owner("carol@signed.example"), &carol)], &[]);
    let dir = tempfile::tempdir().expect("dir");
    let store = vault(dir.path()).await;
    let discovery = Discovery::new(&DnsConfig {
        nameservers: vec![knot.addr()],
        require_dnssec: false,
        trust_anchor: None,
    })
    .expect("resolver");
    assert_eq!(
        discovery
            .discover(&store, "carol@signed.example", now)
            .await
            .expect("found")
            .certs
            .len(),
        1
    );
    assert!(discovery
        .discover(&store, "nobody@signed.example", now)
        .await
        .expect("absent")
        .certs
        .is_empty());
    let addr = knot.addr();
    drop(knot);
    // The server is gone: both answers come from the cache within the TTL…
    assert_eq!(
        discovery
            .discover(&store, "carol@signed.example", now)
            .await
            .expect("cached")
            .certs
            .len(),
        1
    );
    assert!(discovery
        .discover(&store, "nobody@signed.example", now)
        .await
        .expect("cached")
        .certs
        .is_empty());
    // …and not after it (a fresh resolver, so its own memory cache cannot answer).
    let later = now + Duration::from_secs(3600);
    let fresh = Discovery::new(&DnsConfig {
        nameservers: vec![addr],
        require_dnssec: false,
        trust_anchor: None,
    })
    .expect("resolver");
    assert!(fresh
        .discover(&store, "carol@signed.example", later)
        .await
        .is_err());
}
