//! Archive sync against a real Dovecot: decryption, incremental runs,
//! expunge, UIDVALIDITY change, deleted mailboxes, and the connection's
//! failure modes (wrong password, unknown CA).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use archive::{Archive, Location, SearchOptions};
use autocrypt::{AutocryptHeader, PreferEncrypt};
use imap_proxy::sync::{sync, MailboxReport, Progress, SyncOptions};
use imap_proxy::upstream::{Endpoint, Security, Session, UpstreamError};
use imap_proxy::view::Keys;
use keystore::Keystore;
use mailcrypt::EncryptRequest;
use secrecy::SecretString;
use sequoia_openpgp::Cert;
use testbed::Dovecot;

mod common;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn plain(n: u32, word: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@example.net>\r\nTo: {ALICE}\r\nSubject: note {n}\r\n\
         Date: Mon, 2 Nov 2026 10:{n:02}:00 +0000\r\nMessage-ID: <p{n}@example.net>\r\n\r\n\
         The word of the day is {word}.\r\n"
    )
    .into_bytes()
}

fn encrypted(bob: &Cert, alice: &Cert, n: u32, word: &str) -> Vec<u8> {
    let inner = format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: secret plan {n}\r\n\
         Date: Mon, 2 Nov 2026 11:{n:02}:00 +0000\r\nMessage-ID: <s{n}@example.org>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nOnly inside the ciphertext: {word}.\r\n"
    );
    let header = AutocryptHeader::new(BOB, PreferEncrypt::Mutual, bob.clone());
    mailcrypt::encrypt(
        inner.as_bytes(),
        &EncryptRequest {
            autocrypt: Some(&header),
            ..EncryptRequest::new(bob, std::slice::from_ref(alice))
        },
    )
    .expect("encrypting")
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Keystore,
    archive: Archive,
    alice: Cert,
    bob: Cert,
    dovecot: Dovecot,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now() - Duration::from_secs(60);
    let (store, alice) = common::vault_with_identity(dir.path(), ALICE, now).await;
    let bob = autocrypt::key::generate(BOB, now).expect("bob's key");
    let archive = Archive::open(&store).await.expect("archive");
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")]))
        .await
        .expect("dovecot");
    Setup {
        _dir: dir,
        store,
        archive,
        alice,
        bob,
        dovecot,
    }
}

fn endpoint(d: &Dovecot, security: Security) -> Endpoint {
    Endpoint {
        host: "localhost".into(),
        port: match security {
            Security::Tls => d.imaps_port,
            _ => d.imap_port,
        },
        security,
        ca_file: Some(d.ca_file.clone()),
        pinned: None,
    }
}

async fn login(d: &Dovecot, security: Security) -> Session {
    let mut session = Session::connect(&endpoint(d, security))
        .await
        .expect("connecting to Dovecot");
    session
        .login("alice", &SecretString::from("alicepw"))
        .await
        .expect("login");
    session
}

async fn run_sync(s: &Setup, mailbox: Option<&str>) -> Vec<MailboxReport> {
    let mut session = login(&s.dovecot, Security::Tls).await;
    let keys = Arc::new(Keys::load(&s.store, ALICE).await.expect("keys"));
    let mut events = Vec::new();
    let reports = sync(
        &mut session,
        &s.archive,
        keys,
        &SyncOptions {
            account: ALICE.into(),
            mailbox: mailbox.map(str::to_string),
            workers: 2,
            learn: Some(s.store.clone()),
        },
        &mut |p: Progress| events.push(p),
    )
    .await
    .expect("sync");
    session.logout().await;
    let archived = events
        .iter()
        .filter(|e| matches!(e, Progress::Archived { .. }))
        .count() as u64;
    let total: u64 = reports
        .iter()
        .map(|r| r.indexed + r.linked + r.not_indexed)
        .sum();
    assert_eq!(archived, total, "one progress event per archived message");
    reports
}

fn report<'a>(reports: &'a [MailboxReport], name: &str) -> &'a MailboxReport {
    reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no report for {name} in {reports:?}"))
}

async fn hits(a: &Archive, query: &str) -> Vec<Location> {
    a.search(query, &SearchOptions::default())
        .await
        .expect("search")
        .into_iter()
        .map(|h| h.location)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_follows_the_mailbox() {
    let s = setup().await;
    for n in 1..=3 {
        s.dovecot
            .save("alice", "INBOX", &plain(n, &format!("plainword{n}")));
    }
    for n in 4..=5 {
        let m = encrypted(&s.bob, &s.alice, n, &format!("cipherword{n}"));
        s.dovecot.save("alice", "INBOX", &m);
    }
    s.dovecot
        .save("alice", "Archive", &plain(9, "archivedword"));

    // First run: everything, decrypted.
    let reports = run_sync(&s, None).await;
    let inbox = report(&reports, "INBOX");
    assert_eq!(
        (inbox.indexed, inbox.linked, inbox.undecryptable),
        (5, 0, 0)
    );
    assert_eq!(report(&reports, "Archive").indexed, 1);
    assert_eq!(report(&reports, "Sent").indexed, 0);
    let found = hits(&s.archive, "cipherword4").await;
    assert_eq!(found.len(), 1, "a word only inside the ciphertext is found");
    let shown = s.archive.message_at(&found[0]).await.unwrap().unwrap();
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        shown.starts_with(&format!(
            "Letterlock-Security: encrypted; signature=valid; signer={BOB}; key=tofu; fpr={}",
            s.bob.fingerprint().to_hex()
        )),
        "status header first: {shown}"
    );
    assert!(
        shown.contains("Subject: secret plan 4"),
        "protected subject restored"
    );
    assert_eq!(hits(&s.archive, "subject:\"secret plan\"").await.len(), 2);

    // Second run: nothing new is fetched or decrypted again.
    let reports = run_sync(&s, None).await;
    assert!(
        reports.iter().all(|r| r.indexed + r.linked == 0),
        "{reports:?}"
    );

    // Expunged at the provider: gone from the archive.
    let uids = s.dovecot.uids("alice", "INBOX");
    assert_eq!(uids.len(), 5);
    let uid = uids[1].to_string();
    s.dovecot
        .doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", &uid]);
    let reports = run_sync(&s, Some("INBOX")).await;
    assert_eq!(report(&reports, "INBOX").removed, 1);
    assert!(hits(&s.archive, "plainword2").await.is_empty());
    assert_eq!(hits(&s.archive, "plainword3").await.len(), 1);

    // New mail arrives: only it is fetched.
    s.dovecot.save(
        "alice",
        "INBOX",
        &encrypted(&s.bob, &s.alice, 6, "cipherword6"),
    );
    let reports = run_sync(&s, Some("inbox")).await;
    assert_eq!(report(&reports, "INBOX").indexed, 1);

    // The Archive folder is recreated: new UIDVALIDITY, same message.
    let old_validity = s.dovecot.uidvalidity("alice", "Archive");
    s.dovecot
        .doveadm(&["mailbox", "delete", "-u", "alice", "Archive"]);
    std::thread::sleep(Duration::from_secs(1)); // UIDVALIDITY is a timestamp
    s.dovecot
        .save("alice", "Archive", &plain(9, "archivedword"));
    let new_validity = s.dovecot.uidvalidity("alice", "Archive");
    assert_ne!(old_validity, new_validity);
    let reports = run_sync(&s, None).await;
    let archive_report = report(&reports, "Archive");
    assert_eq!(archive_report.renumbered, 1);
    assert_eq!(
        archive_report.linked, 1,
        "content is reused, not re-indexed"
    );
    let found = hits(&s.archive, "archivedword").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].uidvalidity, new_validity);

    // A deleted mailbox leaves the archive.
    s.dovecot
        .doveadm(&["mailbox", "delete", "-u", "alice", "Archive"]);
    let reports = run_sync(&s, None).await;
    assert_eq!(report(&reports, "Archive").removed, 1);
    assert!(hits(&s.archive, "archivedword").await.is_empty());
    let (contents, locations) = s.archive.counts().await.unwrap();
    assert_eq!((contents, locations), (5, 5), "each message archived once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_login_and_failures_are_explained() {
    let s = setup().await;
    s.dovecot.save("alice", "INBOX", &plain(1, "hello"));

    let mut session = login(&s.dovecot, Security::StartTls).await;
    let selected = session.examine("INBOX").await.expect("examine");
    assert_eq!(selected.exists, 1);
    assert_eq!(
        selected.uidvalidity,
        s.dovecot.uidvalidity("alice", "INBOX")
    );
    let sizes = session.uids_and_sizes().await.expect("sizes");
    let fetched = session.fetch_messages(&[sizes[0].0]).await.expect("fetch");
    assert_eq!(fetched[0].1, plain(1, "hello"));
    assert_eq!(fetched[0].1.len() as u32, sizes[0].1);
    session.logout().await;

    let mut session = Session::connect(&endpoint(&s.dovecot, Security::Tls))
        .await
        .expect("connecting");
    let err = session
        .login("alice", &SecretString::from("wrong"))
        .await
        .expect_err("a wrong password is rejected");
    assert!(matches!(err, UpstreamError::LoginRejected(_)), "{err}");

    let mut no_ca = endpoint(&s.dovecot, Security::Tls);
    no_ca.ca_file = None;
    let err = Session::connect(&no_ca)
        .await
        .expect_err("an unknown CA is refused");
    assert!(err.to_string().contains("ca_file"), "{err}");

    let mut missing = endpoint(&s.dovecot, Security::Tls);
    missing.ca_file = Some("/nonexistent/ca.pem".into());
    let err = Session::connect(&missing).await.expect_err("no CA file");
    assert!(
        matches!(
            err,
            UpstreamError::TlsSetup(net_edge::TlsSetupError::CaFile { .. })
        ),
        "{err}"
    );
}

/// A streamed FETCH hands over each asked message once, as it arrives, and
/// keeps what the provider says unasked meanwhile (a flag another session
/// set) for the client instead of taking it for an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_fetch_hands_over_each_message_and_keeps_the_rest() {
    let s = setup().await;
    for n in 1..=3 {
        s.dovecot.save("alice", "INBOX", &plain(n, "stream"));
    }
    let mut session = login(&s.dovecot, Security::Tls).await;
    session.examine("INBOX").await.expect("examine");
    let uids = s.dovecot.uids("alice", "INBOX");
    // Another client flags the first message: Dovecot tells this session
    // with the next command's responses.
    s.dovecot.doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        &uids[0].to_string(),
    ]);
    let mut asked = uids.clone();
    asked.push(uids[2] + 100); // never existed: simply absent
    let mut handed = Vec::new();
    session
        .fetch_messages_each(&asked, |uid, bytes| handed.push((uid, bytes)))
        .await
        .expect("fetch");
    handed.sort();
    let expected: Vec<(u32, Vec<u8>)> = uids
        .iter()
        .zip(1..=3)
        .map(|(uid, n)| (*uid, plain(n, "stream")))
        .collect();
    assert_eq!(handed, expected);
    let kept = format!("{:?}", session.take_unsolicited());
    assert!(kept.contains("Flagged"), "the flag change is kept: {kept}");
    session.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_learns_keys_from_autocrypt_headers_and_gossip() {
    const CAROL: &str = "carol@example.net";
    const DAVE: &str = "dave@example.org";
    let s = setup().await;
    let now = SystemTime::now() - Duration::from_secs(60);
    let carol = autocrypt::key::generate(CAROL, now).expect("carol's key");
    let dave = autocrypt::key::generate(DAVE, now).expect("dave's key");

    // Carol writes in the clear with her Autocrypt header.
    let carol_header = AutocryptHeader::new(CAROL, PreferEncrypt::Mutual, carol.clone());
    s.dovecot.save(
        "alice",
        "INBOX",
        &mailcrypt::add_autocrypt_header(&plain(1, "hello"), &carol_header),
    );
    // Bob writes to Alice and Dave, encrypted, gossiping Dave's key.
    let inner = format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}, {DAVE}\r\nSubject: the three of us\r\n\
         Date: Mon, 2 Nov 2026 12:00:00 +0000\r\n\r\nsee you\r\n"
    );
    let bob_header = AutocryptHeader::new(BOB, PreferEncrypt::Mutual, s.bob.clone());
    let gossip = autocrypt::gossip::headers_to_emit(&[(ALICE, &s.alice), (DAVE, &dave)], now)
        .expect("gossip");
    let message = mailcrypt::encrypt(
        inner.as_bytes(),
        &EncryptRequest {
            autocrypt: Some(&bob_header),
            gossip: &gossip,
            ..EncryptRequest::new(&s.bob, &[s.alice.clone(), dave.clone()])
        },
    )
    .expect("encrypting");
    s.dovecot.save("alice", "INBOX", &message);
    // Alice's own sent mail teaches nothing about her own key.
    let own_header = AutocryptHeader::new(ALICE, PreferEncrypt::Mutual, s.alice.clone());
    let sent = format!("From: {ALICE}\r\nTo: {CAROL}\r\nSubject: hi\r\n\r\nhi\r\n");
    s.dovecot.save(
        "alice",
        "Sent",
        &mailcrypt::add_autocrypt_header(sent.as_bytes(), &own_header),
    );

    run_sync(&s, None).await;

    let key_of = |state: Option<autocrypt::PeerState>| {
        state.and_then(|p| p.public_key.map(|k| k.fingerprint()))
    };
    let carol_state = s.store.peer_state(CAROL).await.expect("carol");
    assert_eq!(key_of(carol_state), Some(carol.fingerprint()));
    let bob_state = s.store.peer_state(BOB).await.expect("bob");
    assert_eq!(key_of(bob_state), Some(s.bob.fingerprint()));
    let dave_state = s
        .store
        .peer_state(DAVE)
        .await
        .expect("dave")
        .expect("dave is known from gossip");
    assert_eq!(
        dave_state.gossip_key.map(|k| k.fingerprint()),
        Some(dave.fingerprint())
    );
    assert!(s.store.peer_state(ALICE).await.expect("alice").is_none());
}
