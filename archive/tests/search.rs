//! Queries over archived messages, encryption at rest, hostile input.

use archive::{content_hash, Archive, Field, Location, Order, SearchOptions, Stored};
use keystore::{Keystore, Unlock};

fn loc(mailbox: &str, uid: u32) -> Location {
    Location {
        account: "alice@example.org".into(),
        mailbox: mailbox.into(),
        uidvalidity: 7,
        uid,
    }
}

const GREETING: &str = "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n\
Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
Viele Gr=FC=DFe und bis bald. Die Verschl=FCsselung funktioniert.\r\n";

const PLAN: &str = "From: Bob <bob@example.org>\r\n\
To: Alice <alice@example.org>, carol@example.org\r\n\
Subject: The plan\r\n\
Date: Wed, 01 May 2024 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>We meet at the <b>old lighthouse</b> at midnight.</p><p>encryption matters</p></body></html>\r\n\
--b\r\nContent-Type: application/pdf; name=\"quarterly-figures.pdf\"\r\nContent-Disposition: attachment; filename=\"quarterly-figures.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
--b--\r\n";

const DRAFT: &str =
    "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: old lighthouse photos\r\n\
Date: Sun, 01 Dec 2024 10:00:00 +0000\r\n\r\nThe lighthouse is old but not at midnight.\r\n";

async fn archive_with_messages() -> (tempfile::TempDir, Keystore, Archive) {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let archive = Archive::open(&vault).await.expect("archive");
    // GREETING and PLAN stand for decrypted messages: the provider only had ciphertext.
    for (i, (m, enc)) in [(GREETING, true), (PLAN, true), (DRAFT, false)]
        .into_iter()
        .enumerate()
    {
        let hash = content_hash(format!("ciphertext {i}").as_bytes());
        let stored = archive
            .store(&loc("INBOX", i as u32 + 1), &hash, m.as_bytes(), enc)
            .await
            .expect("store");
        assert!(
            matches!(stored, Stored::Indexed { note: None }),
            "{stored:?}"
        );
    }
    (dir, vault, archive)
}

async fn uids(archive: &Archive, q: &str) -> Vec<u32> {
    let opts = SearchOptions {
        order: Order::NewestFirst,
        ..SearchOptions::default()
    };
    archive
        .search(q, &opts)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .iter()
        .map(|h| h.location.uid)
        .collect()
}

#[tokio::test]
async fn queries_find_what_they_should() {
    let (_dir, _vault, archive) = archive_with_messages().await;
    // Non-ASCII, decoded from QP/Latin-1 and RFC 2047, folded both ways.
    assert_eq!(uids(&archive, "grusse").await, [1]);
    assert_eq!(uids(&archive, "GRÜSSE").await, [1]);
    assert_eq!(uids(&archive, "Grüße").await, [1]);
    assert_eq!(uids(&archive, "verschlusselung").await, [1]);
    // Phrase, prefix, boolean.
    assert_eq!(uids(&archive, "\"old lighthouse\"").await, [3, 2]);
    assert_eq!(uids(&archive, "\"lighthouse at midnight\"").await, [2]);
    assert_eq!(uids(&archive, "encr*").await, [2]);
    assert_eq!(uids(&archive, "lighthouse NOT photos").await, [2]);
    assert_eq!(uids(&archive, "lighthouse -photos").await, [2]);
    assert_eq!(uids(&archive, "grusse OR photos").await, [3, 1]);
    assert_eq!(uids(&archive, "(grusse OR photos) midnight").await, [3]);
    // Fields.
    assert_eq!(uids(&archive, "from:bob").await, [2]);
    assert_eq!(uids(&archive, "from:müller").await, [1]);
    assert_eq!(uids(&archive, "to:carol").await, [2]);
    assert_eq!(uids(&archive, "subject:plan").await, [2]);
    assert_eq!(uids(&archive, "has:attachment").await, [2]);
    assert_eq!(uids(&archive, "lighthouse after:2024-06-01").await, [3]);
    assert_eq!(uids(&archive, "lighthouse before:2024-06-01").await, [2]);
    // Words only in an attachment name; words only in an HTML body.
    assert_eq!(uids(&archive, "quarterly").await, [2]);
    assert_eq!(uids(&archive, "midnight").await, [3, 2]);
    assert!(uids(&archive, "nothing-like-this").await.is_empty());

    let hits = archive
        .search("lighthouse midnight", &SearchOptions::default())
        .await
        .expect("search");
    assert!(
        hits.iter()
            .all(|h| h.snippet.contains('[') && h.snippet.contains(']')),
        "{hits:?}"
    );
    assert_eq!(
        hits.iter()
            .find(|h| h.location.uid == 2)
            .map(|h| h.subject.as_str()),
        Some("The plan")
    );
    let limited = SearchOptions {
        limit: Some(1),
        mailbox: Some("INBOX".into()),
        ..SearchOptions::default()
    };
    assert_eq!(
        archive
            .search("lighthouse", &limited)
            .await
            .expect("search")
            .len(),
        1
    );
    assert!(archive
        .search("a OR", &SearchOptions::default())
        .await
        .is_err());
}

async fn imap_uids(archive: &Archive, field: Field, text: &str) -> Option<Vec<u32>> {
    archive
        .encrypted_uids_with(("alice@example.org", "INBOX", 7), field, text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn imap_text_criteria_are_answered_from_the_index_for_encrypted_mail_only() {
    let (_dir, _vault, archive) = archive_with_messages().await;
    let some = |v: &[u32]| Some(v.to_vec());
    // Words in order, the last a prefix; folded like `gateway search`.
    assert_eq!(
        imap_uids(&archive, Field::Any, "old lighth").await,
        some(&[2])
    );
    assert_eq!(
        imap_uids(&archive, Field::Any, "GRÜSSE aus k").await,
        some(&[1])
    );
    assert_eq!(
        imap_uids(&archive, Field::Body, "verschl").await,
        some(&[1])
    );
    assert_eq!(
        imap_uids(&archive, Field::Body, "at midnight").await,
        some(&[2])
    );
    // DRAFT (uid 3) says "lighthouse" too, but the provider can search it.
    assert_eq!(
        imap_uids(&archive, Field::Any, "lighthouse").await,
        some(&[2])
    );
    // Each field on its own.
    assert_eq!(
        imap_uids(&archive, Field::Subject, "plan").await,
        some(&[2])
    );
    assert_eq!(
        imap_uids(&archive, Field::Subject, "midnight").await,
        some(&[])
    );
    assert_eq!(
        imap_uids(&archive, Field::Sender, "juergen@example").await,
        some(&[1])
    );
    assert_eq!(
        imap_uids(&archive, Field::Sender, "müller").await,
        some(&[1])
    );
    assert_eq!(
        imap_uids(&archive, Field::Recipients, "carol").await,
        some(&[2])
    );
    assert_eq!(imap_uids(&archive, Field::Body, "plan").await, some(&[]));
    // Word semantics: the inside of a word is not a match.
    assert_eq!(
        imap_uids(&archive, Field::Any, "ighthouse").await,
        some(&[])
    );
    // What the index cannot answer, and input that looks like FTS5 syntax.
    assert_eq!(imap_uids(&archive, Field::Any, "--").await, None);
    assert_eq!(
        imap_uids(&archive, Field::Any, "plan\" OR \"x*").await,
        some(&[])
    );
    // Another mailbox or UIDVALIDITY has nothing.
    assert_eq!(
        archive
            .encrypted_uids_with(("alice@example.org", "INBOX", 8), Field::Any, "plan")
            .await
            .expect("search"),
        Some(Vec::new())
    );
}

#[tokio::test]
async fn moved_messages_share_content_and_expunged_ones_disappear() {
    let (_dir, _vault, archive) = archive_with_messages().await;
    let hash = content_hash(b"ciphertext 1");
    assert!(
        archive
            .message_by_hash(&hash)
            .await
            .expect("lookup")
            .is_some(),
        "no second decryption needed"
    );
    assert_eq!(
        archive
            .store(&loc("Archive", 40), &hash, PLAN.as_bytes(), true)
            .await
            .expect("store"),
        Stored::Linked
    );
    assert_eq!(uids(&archive, "quarterly").await.len(), 2);
    archive.remove(&[loc("INBOX", 2)]).await.expect("expunge");
    assert_eq!(uids(&archive, "quarterly").await, [40]);
    archive
        .remove(&[loc("Archive", 40)])
        .await
        .expect("expunge");
    assert!(uids(&archive, "quarterly").await.is_empty());
    assert!(
        archive
            .message_by_hash(&hash)
            .await
            .expect("lookup")
            .is_none(),
        "content without location is deleted"
    );
    assert_eq!(
        archive
            .drop_stale_uidvalidity("alice@example.org", "INBOX", 8)
            .await
            .expect("drop"),
        2
    );
    assert_eq!(archive.counts().await.expect("counts"), (0, 0));
}

#[tokio::test]
async fn database_files_hold_no_indexed_words() {
    let (dir, vault, archive) = archive_with_messages().await;
    let needles: &[&[u8]] = &[
        b"lighthouse",
        b"midnight",
        b"quarterly",
        b"Viele",
        b"juergen@example.de",
        b"The plan",
        b"grusse",
    ];
    for pass in 0..2 {
        for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            // SQLite removes its -wal/-shm/-journal files when the last connection
            // closes, so a file listed a moment ago may be gone: nothing to scan then.
            let data = match std::fs::read(entry.path()) {
                Ok(data) => data,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("read {}: {e}", entry.path().display()),
            };
            for n in needles {
                assert!(
                    !data.windows(n.len()).any(|w| w == *n),
                    "pass {pass}: {} holds {:?}",
                    entry.path().display(),
                    String::from_utf8_lossy(n)
                );
            }
        }
        if pass == 0 {
            archive.clone().close().await;
            vault.clone().close().await;
        }
    }
}

#[tokio::test]
async fn hostile_messages_are_bounded() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let archive = Archive::open(&vault).await.expect("archive");
    let mut html = b"From: x@y\r\nSubject: big\r\nContent-Type: text/html\r\n\r\n<p>".to_vec();
    html.extend(std::iter::repeat_n(b"word ".as_slice(), 10 * 1024 * 1024).flatten());
    let mut nested = String::from("From: x@y\r\nSubject: deep\r\n");
    for i in 0..200 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\ndeepest\r\n");
    let bad_charset = "From: x@y\r\nSubject: =?x-unknown?Q?abc?=\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\r\n";
    for (i, m) in [
        html,
        nested.into_bytes(),
        bad_charset.as_bytes().to_vec(),
        vec![0xff; 1000],
        Vec::new(),
    ]
    .iter()
    .enumerate()
    {
        let stored = archive
            .store(&loc("INBOX", i as u32 + 1), &content_hash(m), m, false)
            .await
            .expect("store never fails on content");
        if i == 0 {
            assert!(
                matches!(stored, Stored::Indexed { note: Some(_) }),
                "the 50 MB HTML is indexed in part: {stored:?}"
            );
        }
    }
    // A word repeated 200,000 times: the search (and its snippet) stays fast.
    assert_eq!(uids(&archive, "word").await, [1]);
    assert_eq!(uids(&archive, "qapla").await, [3]);
}

/// A header sync is answered from the header sections with the whole
/// sizes; an expunged message leaves no header behind.
#[tokio::test]
async fn header_sections_and_sizes_come_without_the_messages_and_go_with_them() {
    let (_dir, _vault, archive) = archive_with_messages().await;
    let mut found = archive
        .headers_at("alice@example.org", "INBOX", 7, &[1, 2, 3, 9])
        .await
        .expect("headers");
    found.sort();
    assert_eq!(found.len(), 3, "UID 9 is not archived");
    for ((uid, header, size), whole) in found.iter().zip([GREETING, PLAN, DRAFT]) {
        assert_eq!(*size as usize, whole.len(), "UID {uid}");
        assert_eq!(
            header.as_slice(),
            letterlock_mime::header::header_section(whole.as_bytes())
        );
        assert!(header.ends_with(b"\r\n\r\n"));
    }
    archive.remove(&[loc("INBOX", 2)]).await.expect("remove");
    let left = archive
        .headers_at("alice@example.org", "INBOX", 7, &[1, 2, 3])
        .await
        .expect("headers");
    assert_eq!(left.len(), 2);
}

/// Stores that arrive together are committed together, and each caller
/// hears its own answer: new content indexed, the same content a second
/// time linked, every message findable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_at_once_are_committed_in_groups_each_with_its_own_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Keystore::create(dir.path(), Unlock::KeyFile)
        .await
        .expect("vault");
    let archive = Archive::open(&vault).await.expect("archive");
    let mut running = tokio::task::JoinSet::new();
    for uid in 1..=300u32 {
        let archive = archive.clone();
        running.spawn(async move {
            // Every third message is the same content as the one before it.
            let content = if uid % 3 == 0 { uid - 1 } else { uid };
            let message = format!(
                "From: bob@example.org\r\nSubject: note {content}\r\n\r\nword{content} body\r\n"
            );
            let hash = content_hash(format!("ciphertext {content}").as_bytes());
            let stored = archive
                .store(&loc("INBOX", uid), &hash, message.as_bytes(), true)
                .await
                .expect("store");
            (uid, stored)
        });
    }
    let mut linked = 0;
    while let Some(done) = running.join_next().await {
        let (uid, stored) = done.expect("task");
        match stored {
            Stored::Linked => linked += 1,
            Stored::Indexed { note: None } => {}
            other => panic!("UID {uid}: {other:?}"),
        }
    }
    assert_eq!(linked, 100, "each repeated content linked once");
    assert_eq!(
        archive
            .uids("alice@example.org", "INBOX", 7)
            .await
            .expect("uids")
            .len(),
        300
    );
    for content in [2u32, 149, 299] {
        let hits = archive
            .search(&format!("word{content}"), &SearchOptions::default())
            .await
            .expect("search");
        assert_eq!(hits.len(), 2, "word{content}: the content at both UIDs");
    }
}
