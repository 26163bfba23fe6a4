//! The vault against its promises: encryption at rest, passphrases, the
//! trust-on-first-use and verification rules, concurrent use.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autocrypt::{key, AutocryptHeader, Incoming, PreferEncrypt};
use keystore::{KeyStatus, Keystore, KeystoreError, TrustLevel, Unlock};
use secrecy::SecretString;
use sequoia_openpgp::serialize::MarshalInto;
use sequoia_openpgp::Cert;

const BOB: &str = "bob@example.org";

fn at(days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * 86_400)
}

/// Three keys for Bob, made once (key generation is the slow part).
fn bob_keys() -> &'static [Cert; 3] {
    static KEYS: OnceLock<[Cert; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [0, 1, 2].map(|_| {
            let k = key::generate(BOB, at(0)).expect("key");
            key::minimize(&k, BOB, at(0)).expect("minimize")
        })
    })
}

fn incoming(key: Option<&Cert>, day: u64) -> Incoming {
    Incoming {
        from_addr: BOB.into(),
        effective_date: at(day),
        header: key.map(|k| AutocryptHeader::new(BOB, PreferEncrypt::Mutual, k.clone())),
        header_problems: vec![],
    }
}

/// Bob's message of `day` (with `key` in its Autocrypt header, if any),
/// read at `now`: what the keystore says about his key.
async fn receive(store: &Keystore, key: Option<&Cert>, day: u64, now: SystemTime) -> KeyStatus {
    store
        .record_incoming(&incoming(key, day), now)
        .await
        .expect("recorded")
}

fn passphrase(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

async fn effective_fpr(store: &Keystore) -> Option<String> {
    let state = store.effective_peer(BOB).await.expect("peer");
    state.and_then(|s| s.target_key().map(|k| k.fingerprint().to_hex()))
}

#[tokio::test]
async fn passphrase_opens_and_wrong_passphrase_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::Passphrase(passphrase("correct horse")))
        .await
        .expect("create");
    store.close().await;
    assert!(
        Keystore::open(dir.path(), Some(&passphrase("correct horse")))
            .await
            .is_ok()
    );
    let wrong = Keystore::open(dir.path(), Some(&passphrase("battery staple"))).await;
    assert!(
        matches!(wrong, Err(KeystoreError::WrongPassphrase)),
        "{wrong:?}"
    );
    let none = Keystore::open(dir.path(), None).await;
    assert!(
        matches!(none, Err(KeystoreError::PassphraseRequired)),
        "{none:?}"
    );
    let again = Keystore::create(dir.path(), Unlock::KeyFile).await;
    assert!(matches!(again, Err(KeystoreError::VaultExists(_))));
    let empty = tempfile::tempdir().expect("dir");
    assert!(matches!(
        Keystore::open(empty.path(), None).await,
        Err(KeystoreError::NoVault(_))
    ));
}

#[tokio::test]
async fn key_file_vault_is_private_and_reopens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create")
        .close()
        .await;
    for f in ["vault.key", "keystore.db"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} must not be readable by others");
    }
    assert!(Keystore::open(dir.path(), None).await.is_ok());
}

#[tokio::test]
async fn identities_keep_their_secret_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let alice = key::generate("alice@example.org", at(0)).expect("key");
    store
        .put_identity("Alice@Example.org", &alice, PreferEncrypt::Mutual, at(0))
        .await
        .expect("put");
    let id = store.identity("alice@example.org").await.expect("identity");
    assert_eq!(id.cert, alice);
    assert!(id.cert.is_tsk());
    assert_eq!(store.identities().await.expect("list").len(), 1);
    assert!(matches!(
        store.identity("nobody@example.org").await,
        Err(KeystoreError::NoIdentity(_))
    ));
}

#[tokio::test]
async fn unverified_peer_key_change_replaces_and_is_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, _] = bob_keys();
    assert_eq!(receive(&store, Some(k1), 1, at(1)).await, KeyStatus::Tofu);
    assert_eq!(receive(&store, Some(k1), 2, at(2)).await, KeyStatus::Tofu);
    assert_eq!(
        receive(&store, Some(k2), 3, at(3)).await,
        KeyStatus::Changed
    );
    assert_eq!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));
    // An older message with the old key changes nothing.
    assert_eq!(receive(&store, Some(k1), 2, at(4)).await, KeyStatus::Stale);
    assert_eq!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));
    // An older message with the key the peer has now (read out of order)
    // learns nothing either, but its key stands as the peer's: its
    // signature can be checked (it used to be "stale", and unverifiable).
    assert_eq!(receive(&store, Some(k2), 2, at(5)).await, KeyStatus::Tofu);
    assert_eq!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));
    let kinds: Vec<_> = store
        .events(BOB)
        .await
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [keystore::EventKind::New, keystore::EventKind::Changed]
    );
    assert_eq!(store.history(BOB).await.expect("history").len(), 2);
}

#[tokio::test]
async fn verified_key_is_never_replaced_by_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, _] = bob_keys();
    receive(&store, Some(k1), 1, at(1)).await;
    store
        .verify(BOB, &k1.fingerprint().to_spaced_hex(), "fingerprint", at(1))
        .await
        .expect("verify");
    assert_eq!(
        receive(&store, Some(k1), 2, at(2)).await,
        KeyStatus::Verified
    );

    assert_eq!(
        receive(&store, Some(k2), 3, at(3)).await,
        KeyStatus::Conflict
    );
    assert_eq!(
        effective_fpr(&store).await,
        Some(k1.fingerprint().to_hex()),
        "mail keeps going to the verified key"
    );
    let summary = store.summary(BOB).await.expect("summary");
    assert_eq!(summary.trust, Some(TrustLevel::Verified));
    assert_eq!(summary.conflicts, [k2.fingerprint().to_hex()]);

    // The user checks the new key and verifies it: the conflict is resolved.
    store
        .verify(BOB, &k2.fingerprint().to_hex(), "fingerprint", at(4))
        .await
        .expect("verify");
    assert_eq!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));
    assert!(store
        .summary(BOB)
        .await
        .expect("summary")
        .conflicts
        .is_empty());
}

#[tokio::test]
async fn rejected_key_is_never_used_and_gossip_never_overrides() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, k3] = bob_keys();
    receive(&store, Some(k1), 1, at(1)).await;
    store.record_gossip(BOB, at(2), k3).await.expect("gossip");
    assert_eq!(
        effective_fpr(&store).await,
        Some(k1.fingerprint().to_hex()),
        "direct key wins over gossip"
    );

    receive(&store, Some(k2), 3, at(3)).await;
    let rejected = store.reject(BOB, None, at(4)).await.expect("reject");
    assert_eq!(rejected, k2.fingerprint().to_hex());
    let now = effective_fpr(&store).await;
    assert_ne!(
        now,
        Some(k2.fingerprint().to_hex()),
        "a rejected key is never used"
    );
    assert_eq!(
        receive(&store, Some(k2), 5, at(5)).await,
        KeyStatus::Rejected
    );
    assert_ne!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));

    assert!(store.forget(BOB).await.expect("forget"));
    assert!(store.effective_peer(BOB).await.expect("peer").is_none());
    assert!(store.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn database_files_hold_no_plaintext() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::Passphrase(passphrase("pw")))
        .await
        .expect("create");
    let [k1, _, _] = bob_keys();
    let alice = key::generate("alice@example.org", at(0)).expect("key");
    store
        .put_identity("alice@example.org", &alice, PreferEncrypt::Mutual, at(0))
        .await
        .expect("put");
    receive(&store, Some(k1), 1, at(1)).await;
    store
        .verify(BOB, &k1.fingerprint().to_hex(), "fingerprint", at(1))
        .await
        .expect("verify");
    // Check while open (WAL holds recent writes) and after closing.
    let needles: Vec<Vec<u8>> = vec![
        BOB.as_bytes().to_vec(),
        b"alice@example.org".to_vec(),
        k1.fingerprint().to_hex().into_bytes(),
        k1.fingerprint().as_bytes().to_vec(),
        alice.fingerprint().as_bytes().to_vec(),
        alice.primary_key().key().mpis().to_vec().expect("mpis")[4..].to_vec(),
        b"CREATE TABLE".to_vec(),
    ];
    scan(dir.path(), &needles);
    store.close().await;
    scan(dir.path(), &needles);
}

fn scan(dir: &Path, needles: &[Vec<u8>]) {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        // SQLite removes its -wal/-shm files when the last connection closes,
        // so a file listed a moment ago may already be gone.
        let data = match std::fs::read(entry.path()) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", entry.path().display()),
        };
        files += 1;
        for n in needles {
            assert!(
                !data.windows(n.len()).any(|w| w == &n[..]),
                "{} contains {:?} in plaintext",
                entry.path().display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    assert!(files >= 2);
}

/// The second process of `two_processes_share_the_vault`; ignored so that it
/// never counts as a passing test on its own.
#[tokio::test]
#[ignore = "run by two_processes_share_the_vault as its child process"]
async fn child_writer() {
    let Ok(dir) = std::env::var("KEYSTORE_CHILD_DIR") else {
        return;
    };
    let store = Keystore::open(Path::new(&dir), None)
        .await
        .expect("child opens");
    let k = &bob_keys()[1];
    for i in 0..40 {
        store
            .record_key(k, keystore::KeySource::Import, at(100 + i))
            .await
            .expect("child write");
    }
}

#[tokio::test]
async fn two_processes_share_the_vault() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_writer", "--ignored", "--nocapture"])
        .env("KEYSTORE_CHILD_DIR", dir.path())
        .spawn()
        .expect("spawn child");
    for day in 1..40 {
        store
            .record_incoming(&incoming(Some(&bob_keys()[0]), day), at(day))
            .await
            .expect("parent write");
    }
    assert!(
        child.wait().await.expect("child").success(),
        "the child process wrote without errors"
    );
    let history = store.history(BOB).await.expect("history");
    let import = history
        .iter()
        .find(|k| k.source == keystore::KeySource::Import)
        .expect("child's writes");
    assert_eq!(import.last_seen, at(139));
    let auto = history
        .iter()
        .find(|k| k.source == keystore::KeySource::Autocrypt)
        .expect("parent's writes");
    assert_eq!(auto.last_seen, at(39));
}

#[tokio::test]
async fn imported_key_for_a_verified_peer_is_a_conflict() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, _] = bob_keys();
    receive(&store, Some(k1), 1, at(1)).await;
    store
        .verify(BOB, &k1.fingerprint().to_hex(), "fingerprint", at(1))
        .await
        .expect("verify");
    store
        .record_key(k2, keystore::KeySource::Dns, at(2))
        .await
        .expect("dns key");
    assert_eq!(
        effective_fpr(&store).await,
        Some(k1.fingerprint().to_hex()),
        "the verified key stays in use"
    );
    assert_eq!(
        store.summary(BOB).await.expect("summary").conflicts,
        [k2.fingerprint().to_hex()]
    );
}

#[tokio::test]
async fn the_local_tls_key_is_kept_in_the_vault() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    assert!(store.local_tls().await.expect("read").is_none());
    store
        .put_local_tls(b"certificate", b"private-key-canary")
        .await
        .expect("store");
    store
        .put_local_tls(b"cert2", b"key2-canary")
        .await
        .expect("replace");
    let (cert, key) = store.local_tls().await.expect("read").expect("stored");
    assert_eq!(
        (cert.as_slice(), key.as_slice()),
        (&b"cert2"[..], &b"key2-canary"[..])
    );
    store.close().await;
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        assert!(
            !bytes.windows(6).any(|w| w == b"canary"),
            "{} holds the key in the clear",
            entry.path().display()
        );
    }
}

#[tokio::test]
async fn text_of_encrypted_messages_without_an_id_is_remembered_by_hashes() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let secret = [
        "the canary merger closes on",
        "canary merger closes on monday",
    ];
    assert!(!store.quotes_encrypted_text(&secret).await.expect("look up"));
    assert!(!store.holds_encrypted_text().await.expect("look up"));
    store
        .record_encrypted_text(&secret, at(0))
        .await
        .expect("record");
    store
        .record_encrypted_text(&secret, at(1))
        .await
        .expect("recorded twice");
    assert!(store.holds_encrypted_text().await.expect("look up"));
    // Found among many (more than one query's worth), last of all.
    let mut reply: Vec<String> = (0..1_200).map(|i| format!("new words {i}")).collect();
    reply.push(secret[1].to_string());
    assert!(store.quotes_encrypted_text(&reply).await.expect("look up"));
    assert!(!store
        .quotes_encrypted_text(&reply[..1_200])
        .await
        .expect("look up"));
    store.close().await;
    let reopened = Keystore::open(dir.path(), None).await.expect("reopen");
    let found = reopened.quotes_encrypted_text(&secret[..1]).await;
    assert!(found.expect("look up"), "remembered across a restart");
    reopened.close().await;
    assert_nowhere_on_disk(dir.path(), b"canary");
}

#[tokio::test]
async fn encrypted_messages_are_remembered_by_a_hash_of_their_id() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let ids = |v: &str| -> Vec<String> { v.split(' ').map(String::from).collect() };
    assert!(!store
        .refers_to_encrypted(&ids("<one@canary.example>"))
        .await
        .expect("look up"));
    store
        .record_encrypted_message("<one@canary.example>", at(0))
        .await
        .expect("record");
    store
        .record_encrypted_message("<one@canary.example>", at(1))
        .await
        .expect("recorded twice");
    for refs in [
        "<one@canary.example>",
        "<root@x> <one@canary.example>",
        "one@canary.example",
    ] {
        assert!(
            store
                .refers_to_encrypted(&ids(refs))
                .await
                .expect("look up"),
            "{refs:?}"
        );
    }
    assert!(!store
        .refers_to_encrypted(&ids("<two@canary.example> <root@x>"))
        .await
        .expect("look up"));
    // A message's several IDs (served and outer) in one write.
    store
        .record_encrypted_messages(&["<inner@x>", "", "<outer@x>"], at(2))
        .await
        .expect("record several");
    for refs in ["<inner@x>", "<outer@x>"] {
        assert!(
            store
                .refers_to_encrypted(&ids(refs))
                .await
                .expect("look up"),
            "{refs:?}"
        );
    }
    store.close().await;
    let reopened = Keystore::open(dir.path(), None).await.expect("reopen");
    assert!(reopened
        .refers_to_encrypted(&ids("<one@canary.example>"))
        .await
        .expect("look up"));
    reopened.close().await;
    assert_nowhere_on_disk(dir.path(), b"canary");
}

/// No file in `dir` holds `needle` in the clear.
fn assert_nowhere_on_disk(dir: &std::path::Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} holds {:?} in the clear",
            entry.path().display(),
            String::from_utf8_lossy(needle)
        );
    }
}

/// Rule 5, the keystore's half: the one key that may sign for an address is
/// the verified key, else the Autocrypt (TOFU) key, else an imported or DNS
/// key. Never a conflicting key, a rejected one, gossip, or a key learned
/// for another address that merely carries this address as a user ID.
#[tokio::test]
async fn the_signing_key_is_the_key_held_for_the_address() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, k3] = bob_keys();
    let signing = |store: &Keystore, address: &'static str| {
        let store = store.clone();
        async move {
            store
                .signing_key(address)
                .await
                .expect("lookup")
                .map(|k| (k.fingerprint, k.trust))
        }
    };
    assert_eq!(signing(&store, BOB).await, None, "nobody yet");
    store.record_gossip(BOB, at(1), k3).await.expect("gossip");
    assert_eq!(
        signing(&store, BOB).await,
        None,
        "gossip vouches for nothing"
    );

    // Mallory advertises, for her own address, a key that also names Bob.
    const MALLORY: &str = "mallory@evil.example";
    let two_names = {
        let (k, _) = sequoia_openpgp::cert::CertBuilder::new()
            .add_userid(MALLORY)
            .add_userid(BOB)
            .add_signing_subkey()
            .set_creation_time(at(0))
            .generate()
            .expect("key");
        k.strip_secret_key_material()
    };
    let mallory_header = Incoming {
        from_addr: MALLORY.into(),
        effective_date: at(1),
        header: Some(AutocryptHeader::new(
            MALLORY,
            PreferEncrypt::Mutual,
            two_names.clone(),
        )),
        header_problems: vec![],
    };
    store
        .record_incoming(&mallory_header, at(1))
        .await
        .expect("in");
    assert_eq!(
        signing(&store, MALLORY).await,
        Some((two_names.fingerprint().to_hex(), TrustLevel::Tofu))
    );
    assert_eq!(signing(&store, BOB).await, None, "her key is not Bob's");
    // Nor through DNS: her zone's answer vouches for her address only.
    store
        .record_key_for(MALLORY, &two_names, keystore::KeySource::Dns, at(1))
        .await
        .expect("dns");
    assert_eq!(signing(&store, BOB).await, None, "nor by DNS");

    receive(&store, Some(k1), 2, at(2)).await;
    let tofu = Some((k1.fingerprint().to_hex(), TrustLevel::Tofu));
    assert_eq!(signing(&store, BOB).await, tofu);
    store
        .verify(BOB, &k1.fingerprint().to_hex(), "fingerprint", at(3))
        .await
        .expect("verify");
    let verified = Some((k1.fingerprint().to_hex(), TrustLevel::Verified));
    assert_eq!(signing(&store, BOB).await, verified);
    // A conflicting key arrives: stored, and still not Bob's signing key,
    // neither now nor after a reopening of the vault.
    assert_eq!(
        receive(&store, Some(k2), 4, at(4)).await,
        KeyStatus::Conflict
    );
    assert_eq!(signing(&store, BOB).await, verified);
    drop(store);
    let store = Keystore::open(dir.path(), None).await.expect("reopen");
    assert_eq!(signing(&store, BOB).await, verified);

    // Unverified, the newer Autocrypt key takes over (TOFU); rejected, no
    // key is left to sign for Bob.
    store.unverify(BOB, at(5)).await.expect("unverify");
    assert_eq!(
        signing(&store, BOB).await,
        Some((k2.fingerprint().to_hex(), TrustLevel::Tofu))
    );
    store
        .reject(BOB, Some(&k2.fingerprint().to_hex()), at(5))
        .await
        .expect("reject");
    assert_eq!(signing(&store, BOB).await, None);
}

#[tokio::test]
async fn a_key_imported_after_the_autocrypt_one_is_used_until_a_newer_message() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, _] = bob_keys();
    receive(&store, Some(k1), 1, at(1)).await;
    // Bob's new key, from his vCard, imported on day 5.
    store
        .record_key_for(BOB, k2, keystore::KeySource::Import, at(5))
        .await
        .expect("import");
    assert_eq!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));
    let signer = store.signing_key(BOB).await.expect("lookup").expect("key");
    assert_eq!(signer.fingerprint, k2.fingerprint().to_hex());
    // A message older than the import changes nothing; a newer one that
    // announces the old key again is Bob's latest word.
    store
        .record_incoming(&incoming(Some(k1), 3), at(6))
        .await
        .expect("older");
    assert_eq!(effective_fpr(&store).await, Some(k2.fingerprint().to_hex()));
    store
        .record_incoming(&incoming(Some(k1), 7), at(7))
        .await
        .expect("newer");
    assert_eq!(effective_fpr(&store).await, Some(k1.fingerprint().to_hex()));
}

/// Recording a message and asking whose key may sign, in one job, answers
/// as the two calls one after the other do: first contact, a change, a
/// conflict with a verified key, and a message shown under another address.
#[tokio::test]
async fn recording_and_the_signer_in_one_job_answer_as_two_calls_do() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("create");
    let [k1, k2, k3] = bob_keys();
    let signer = |answer: &(KeyStatus, Option<keystore::KeyRecord>)| {
        answer.1.as_ref().map(|k| k.fingerprint.clone())
    };
    let first = store
        .record_incoming_and_signer(&incoming(Some(k1), 1), BOB, at(1))
        .await
        .expect("recorded");
    assert_eq!(first.0, KeyStatus::Tofu);
    assert_eq!(signer(&first), Some(k1.fingerprint().to_hex()));
    let changed = store
        .record_incoming_and_signer(&incoming(Some(k2), 2), "Bob@Example.org", at(2))
        .await
        .expect("recorded");
    assert_eq!(changed.0, KeyStatus::Changed);
    assert_eq!(signer(&changed), Some(k2.fingerprint().to_hex()));
    store
        .verify(BOB, &k2.fingerprint().to_hex(), "fingerprint", at(2))
        .await
        .expect("verify");
    let conflict = store
        .record_incoming_and_signer(&incoming(Some(k3), 3), BOB, at(3))
        .await
        .expect("recorded");
    assert_eq!(conflict.0, KeyStatus::Conflict);
    assert_eq!(
        signer(&conflict),
        Some(k2.fingerprint().to_hex()),
        "the verified key, never the conflicting one"
    );
    // Bob's header, shown under an address nothing is known for: no signer.
    let elsewhere = store
        .record_incoming_and_signer(&incoming(Some(k2), 4), "carol@example.org", at(4))
        .await
        .expect("recorded");
    assert_eq!(elsewhere.0, KeyStatus::Verified);
    assert_eq!(signer(&elsewhere), None);
}
