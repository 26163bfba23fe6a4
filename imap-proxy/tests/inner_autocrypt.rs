//! Keys that arrive inside the encryption (Delta Chat, RFC 9788's
//! direction): the rules of `imap_proxy::ingest::read` against a real vault.
//! An `Autocrypt:` header inside whose addr is the inner From announces the
//! sender's key and wins over the outer one; the protected Date dates it;
//! it verifies its own message only under trust on first use; a header for
//! another address teaches nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autocrypt::{AutocryptHeader, PreferEncrypt};
use imap_proxy::ingest::read;
use imap_proxy::view::Keys;
use keystore::{KeySource, Keystore};
use sequoia_openpgp::Cert;

const ME: &str = "me@example.org";
const DAVE: &str = "dave@example.org";

struct World {
    _dir: tempfile::TempDir,
    store: Keystore,
    me: Cert,
    /// A little in the past, so every message is dated before "now".
    start: SystemTime,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = SystemTime::now() - Duration::from_secs(30 * 86_400);
        let (store, me) = common::vault_with_identity(dir.path(), ME, start).await;
        World {
            _dir: dir,
            store,
            me,
            start,
        }
    }

    /// What the user sees of `message`, and its status header.
    async fn read(&self, message: Vec<u8>) -> String {
        let keys = Arc::new(Keys::load(&self.store, ME).await.expect("keys"));
        let (view, _) = read(Some(&self.store), keys, ME, message)
            .await
            .expect("read");
        view.status.unwrap_or_default()
    }

    /// The key mail to `address` is encrypted to.
    async fn encrypts_to(&self, address: &str) -> Option<sequoia_openpgp::Fingerprint> {
        let peer = self.store.effective_peer(address).await.expect("peer")?;
        peer.target_key().map(|c| c.fingerprint())
    }

    async fn held_fpr(&self, address: &str) -> Option<String> {
        self.store
            .signing_key(address)
            .await
            .expect("lookup")
            .map(|k| k.cert.fingerprint().to_hex())
    }
}

fn rfc2822(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("time").as_secs() as i64;
    mail_parser::DateTime::from_timestamp(secs).to_rfc822()
}

fn header(addr: &str, cert: &Cert, at: SystemTime) -> String {
    let key = autocrypt::key::minimize(cert, addr, at).expect("minimal key");
    AutocryptHeader::new(addr, PreferEncrypt::Mutual, key).render("\r\n")
}

/// A message as Delta Chat sends it: signed by `signer`, encrypted to me,
/// its real Date and (if given) an Autocrypt header only inside, and an
/// outer Date `outer_age` older than the real one.
struct Mail<'a> {
    signer: &'a Cert,
    from: &'a str,
    date: SystemTime,
    outer_age: Duration,
    inner_autocrypt: Option<String>,
    outer_autocrypt: Option<String>,
}

impl<'a> Mail<'a> {
    /// Dave's mail as Delta Chat sends it: signed by `signer`, announcing
    /// `announced` inside (if any), the outer Date as it was.
    fn dave(signer: &'a Cert, date: SystemTime, announced: Option<&Cert>) -> Self {
        Mail {
            signer,
            from: DAVE,
            date,
            outer_age: Duration::ZERO,
            inner_autocrypt: announced.map(|c| header(DAVE, c, date)),
            outer_autocrypt: None,
        }
    }

    fn encrypt(&self, me: &Cert) -> Vec<u8> {
        let mut plain = format!(
            "From: {}\r\nTo: {ME}\r\nDate: {}\r\nSubject: hello\r\nMessage-ID: <{}@example.org>\r\n",
            self.from,
            rfc2822(self.date),
            self.date
                .duration_since(UNIX_EPOCH)
                .expect("time")
                .as_nanos()
        );
        if let Some(h) = &self.inner_autocrypt {
            plain.push_str(&format!("Autocrypt: {h}\r\n"));
        }
        plain.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\nhi from the inside\r\n");
        let public = me.clone().strip_secret_key_material();
        let out = mailcrypt::encrypt(
            plain.as_bytes(),
            &mailcrypt::EncryptRequest {
                pad: false,
                now: self.date,
                ..mailcrypt::EncryptRequest::new(self.signer, std::slice::from_ref(&public))
            },
        )
        .expect("encrypt");
        // The outer header as Delta Chat sends it: the Date moved into the
        // past, no Autocrypt header (unless the test wants one).
        let text = String::from_utf8(out).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("header");
        let mut outer = String::new();
        let mut lines = head.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            let is_autocrypt = line.to_ascii_lowercase().starts_with("autocrypt:");
            if is_autocrypt {
                while lines.peek().is_some_and(|l| l.starts_with(' ')) {
                    lines.next();
                }
                continue;
            }
            if line.starts_with("Date:") {
                outer.push_str(&format!(
                    "Date: {}\r\n",
                    rfc2822(self.date - self.outer_age)
                ));
            } else {
                outer.push_str(line);
                outer.push_str("\r\n");
            }
        }
        if let Some(h) = &self.outer_autocrypt {
            outer.push_str(&format!("Autocrypt: {h}\r\n"));
        }
        format!("{outer}\r\n{body}").into_bytes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_key_inside_is_learned_and_verifies_its_message() {
    let w = World::new().await;
    let dave = autocrypt::key::generate(DAVE, w.start).expect("dave");
    let date = w.start + Duration::from_secs(86_400);
    let mail = Mail {
        outer_age: Duration::from_secs(3 * 86_400),
        ..Mail::dave(&dave, date, Some(&dave))
    };
    let status = w.read(mail.encrypt(&w.me)).await;
    assert!(
        status.starts_with(&format!(
            "encrypted; signature=valid; signer={DAVE}; key=tofu; fpr={}",
            dave.fingerprint().to_hex()
        )),
        "{status}"
    );
    assert_eq!(w.held_fpr(DAVE).await, Some(dave.fingerprint().to_hex()));
    // Dated by the protected Date, not the outer one three days older.
    let peer = w
        .store
        .effective_peer(DAVE)
        .await
        .expect("peer")
        .expect("dave");
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("t").as_secs();
    assert_eq!(peer.autocrypt_timestamp.map(secs), Some(secs(date)));

    // Read again (another session, a restart): the same verdict, nothing new.
    let again = w.read(mail.encrypt(&w.me)).await;
    assert!(again.starts_with("encrypted; signature=valid"), "{again}");
    assert_eq!(w.store.history(DAVE).await.expect("history").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_inside_replaces_the_old_one_and_says_so() {
    let w = World::new().await;
    let old = autocrypt::key::generate(DAVE, w.start).expect("old");
    let first = w.start + Duration::from_secs(86_400);
    let status = w
        .read(Mail::dave(&old, first, Some(&old)).encrypt(&w.me))
        .await;
    assert!(status.contains("key=tofu"), "{status}");
    // Dave reinstalls: a new key, announced only inside.
    let new = autocrypt::key::generate(DAVE, first).expect("new");
    let later = first + Duration::from_secs(86_400);
    let status = w
        .read(
            Mail {
                outer_age: Duration::from_secs(2 * 86_400),
                ..Mail::dave(&new, later, Some(&new))
            }
            .encrypt(&w.me),
        )
        .await;
    assert!(
        status.starts_with(&format!(
            "encrypted; signature=valid; signer={DAVE}; key=changed; fpr={}",
            new.fingerprint().to_hex()
        )),
        "{status}"
    );
    // What the gateway encrypts to from now on.
    assert_eq!(w.encrypts_to(DAVE).await, Some(new.fingerprint()));
    // An older cleartext mail (its Date between the two) cannot bring the
    // old key back: the protected Date of the newer one counts.
    let stale = format!(
        "From: {DAVE}\r\nTo: {ME}\r\nDate: {}\r\nAutocrypt: {}\r\nSubject: old\r\n\r\nold\r\n",
        rfc2822(first + Duration::from_secs(3600)),
        header(DAVE, &old, first)
    );
    w.read(stale.into_bytes()).await;
    assert_eq!(w.encrypts_to(DAVE).await, Some(new.fingerprint()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_inside_for_a_verified_contact_stays_a_conflict() {
    let w = World::new().await;
    let dave = autocrypt::key::generate(DAVE, w.start).expect("dave");
    w.store
        .record_key(&dave, KeySource::Import, w.start)
        .await
        .expect("import");
    w.store
        .verify(DAVE, &dave.fingerprint().to_hex(), "test", w.start)
        .await
        .expect("verify");
    // Someone else, with a key of their own, writes as Dave.
    let other = autocrypt::key::generate(DAVE, w.start).expect("other");
    let date = w.start + Duration::from_secs(86_400);
    let status = w
        .read(Mail::dave(&other, date, Some(&other)).encrypt(&w.me))
        .await;
    assert!(!status.contains("signature=valid"), "{status}");
    assert!(status.contains("autocrypt=conflict"), "{status}");
    assert_eq!(w.held_fpr(DAVE).await, Some(dave.fingerprint().to_hex()));
    // And again: the conflicting key never starts to count.
    let status = w
        .read(Mail::dave(&other, date + Duration::from_secs(60), None).encrypt(&w.me))
        .await;
    assert!(!status.contains("signature=valid"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_inside_wins_over_the_one_outside() {
    let w = World::new().await;
    let dave = autocrypt::key::generate(DAVE, w.start).expect("dave");
    // Whoever carried the mail put another key in the outer header.
    let swapped = autocrypt::key::generate(DAVE, w.start).expect("swapped");
    let date = w.start + Duration::from_secs(86_400);
    let status = w
        .read(
            Mail {
                outer_autocrypt: Some(header(DAVE, &swapped, date)),
                ..Mail::dave(&dave, date, Some(&dave))
            }
            .encrypt(&w.me),
        )
        .await;
    assert!(
        status.starts_with("encrypted; signature=valid") && status.contains("key=tofu"),
        "{status}"
    );
    let history = w.store.history(DAVE).await.expect("history");
    assert_eq!(
        history.len(),
        1,
        "the outer key was not recorded: {history:?}"
    );
    assert_eq!(history[0].cert.fingerprint(), dave.fingerprint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_inside_for_someone_else_teaches_nothing() {
    let w = World::new().await;
    let dave = autocrypt::key::generate(DAVE, w.start).expect("dave");
    let carol = autocrypt::key::generate("carol@example.org", w.start).expect("carol");
    let date = w.start + Duration::from_secs(86_400);
    let status = w
        .read(
            Mail {
                inner_autocrypt: Some(header("carol@example.org", &carol, date)),
                ..Mail::dave(&dave, date, None)
            }
            .encrypt(&w.me),
        )
        .await;
    assert!(
        status.starts_with("encrypted; signature=unknown-key"),
        "{status}"
    );
    assert!(w.held_fpr("carol@example.org").await.is_none());
    assert!(w.held_fpr(DAVE).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level_1_mail_with_the_header_outside_still_teaches() {
    // Autocrypt Level 1 peers (and Letterlock before) put the header
    // outside only, with the protected header inside.
    let w = World::new().await;
    let dave = autocrypt::key::generate(DAVE, w.start).expect("dave");
    let date = w.start + Duration::from_secs(86_400);
    let status = w
        .read(
            Mail {
                outer_autocrypt: Some(header(DAVE, &dave, date)),
                ..Mail::dave(&dave, date, None)
            }
            .encrypt(&w.me),
        )
        .await;
    assert!(
        status.starts_with("encrypted; signature=valid") && status.contains("key=tofu"),
        "{status}"
    );
}
