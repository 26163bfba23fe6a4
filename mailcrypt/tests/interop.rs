//! Interoperability with real OpenPGP peers: GnuPG 2.2 (`gpg`), Sequoia's
//! `sq` and RNP (`rnp`, Thunderbird's engine), in both directions.
//!
//! Our side is Alice with a freshly generated Letterlock key; the peer is Bob,
//! also with a Letterlock key, so the tests also show that every peer reads
//! the key format we generate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use autocrypt::key;
use common::*;
use mailcrypt::{decrypt, encrypt, DecryptContext, EncryptRequest, HeldKeys, SignatureStatus};
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;

const BODY: &str = "Grüße, Bob — the meeting moves to Thursday.";

struct Fixture {
    dir: tempfile::TempDir,
    alice: Cert,
    bob: Cert,
}

impl Fixture {
    fn new() -> Self {
        let t = SystemTime::now() - Duration::from_secs(3600);
        let dir = tempfile::tempdir().expect("temp dir");
        let alice = key::generate("alice@example.org", t).expect("key");
        let bob = key::generate("bob@example.org", t).expect("key");
        let f = Fixture { dir, alice, bob };
        f.write("alice.pub.asc", &f.alice.armored().to_vec().expect("armor"));
        f.write(
            "bob.sec.asc",
            &f.bob.as_tsk().armored().to_vec().expect("armor"),
        );
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).expect("write");
        p
    }

    /// Our encrypted message from Alice to Bob, and its armored ciphertext on disk.
    fn outgoing(&self) -> PathBuf {
        let message = format!(
            "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Thursday\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{BODY}\r\n"
        );
        let recipients = [self.bob.clone().strip_secret_key_material()];
        let req = EncryptRequest::new(&self.alice, &recipients);
        let sent = encrypt(message.as_bytes(), &req).expect("encrypt");
        self.write("outgoing.asc", &armored_part(&sent))
    }

    /// Bob's plaintext MIME entity for the peer to sign and encrypt.
    fn peer_plaintext(&self) -> PathBuf {
        let entity = format!(
            "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\nFrom: Bob <bob@example.org>\r\n\
             To: Alice <alice@example.org>\r\nSubject: Re: Thursday\r\n\r\n{BODY}\r\n"
        );
        self.write("reply.eml", entity.as_bytes())
    }

    /// Wraps the peer's ciphertext as PGP/MIME and decrypts it as Alice.
    fn incoming(&self, ciphertext: &Path) {
        let data = std::fs::read(ciphertext).expect("peer output");
        let out = self.decrypt_as_alice(&data);
        assert!(out.decrypted, "{:?} {:?}", out.refusal, out.detail);
        assert_eq!(
            out.signature,
            SignatureStatus::Valid {
                fingerprint: self.bob.fingerprint(),
                signer: "bob@example.org".into()
            }
        );
        let text = String::from_utf8_lossy(&out.message);
        assert!(text.contains(BODY));
        assert!(
            text.contains("Subject: Re: Thursday"),
            "protected subject restored"
        );
    }

    /// The peer's ciphertext `data`, as PGP/MIME, decrypted by Alice.
    fn decrypt_as_alice(&self, data: &[u8]) -> mailcrypt::Outcome {
        let message = pgp_mime("Bob <bob@example.org>", "alice@example.org", data);
        let secret = [self.alice.clone()];
        let verifiers = [self.bob.clone().strip_secret_key_material()];
        decrypt(
            &message,
            &DecryptContext {
                secret_keys: &secret,
                verifier_certs: &verifiers,
                signers: &HeldKeys::from_user_ids(&verifiers),
                autocrypt_key_verifies: true,
                now: SystemTime::now(),
            },
        )
    }
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (scripts/setup installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn gpg(f: &Fixture) -> Command {
    let home = f.path("gnupg");
    if !home.exists() {
        std::fs::create_dir(&home).expect("gnupg home");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
    }
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(&home).args([
        "--batch",
        "--no-tty",
        "--trust-model",
        "always",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    c
}

#[test]
fn gpg_reads_ours_and_we_read_gpg() {
    let f = Fixture::new();
    run(gpg(&f)
        .arg("--import")
        .arg(f.path("bob.sec.asc"))
        .arg(f.path("alice.pub.asc")));

    let ours = f.outgoing();
    let (plain, status) = run(gpg(&f).args(["--status-fd", "2", "--decrypt"]).arg(&ours));
    assert!(plain.contains(BODY), "gpg decrypted our message");
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
    assert!(
        status.contains(&format!(
            "[GNUPG:] VALIDSIG {}",
            f.alice.fingerprint().to_hex()
        )),
        "{status}"
    );

    let reply = f.peer_plaintext();
    let out = f.path("gpg.asc");
    run(gpg(&f)
        .args([
            "--armor",
            "--sign",
            "--encrypt",
            "-u",
            "bob@example.org",
            "-r",
            "alice@example.org",
            "-o",
        ])
        .arg(&out)
        .arg(&reply));
    f.incoming(&out);
}

/// gpg writes what it reads from a pipe in partial-body chunks, as mail
/// clients that stream through it send. A message much larger than the
/// decryptor's buffer is still decrypted whole with its signature checked,
/// and the same message damaged near its end (past everything a streaming
/// reader would already have handed out) yields nothing at all.
#[test]
fn large_streamed_gpg_mail_is_read_whole_and_damage_at_its_end_fails_closed() {
    let f = Fixture::new();
    run(gpg(&f)
        .arg("--import")
        .arg(f.path("bob.sec.asc"))
        .arg(f.path("alice.pub.asc")));
    let line = "The attachment follows, line by line, as a large mail carries it.\r\n";
    let mut entity = format!(
        "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
         From: Bob <bob@example.org>\r\nTo: Alice <alice@example.org>\r\n\
         Subject: Re: Thursday\r\n\r\n{BODY}\r\n"
    );
    // About 4 MiB; gpg compresses it, so it is random-looking per line.
    for n in 0..60_000 {
        entity.push_str(&format!("{n:08x} {line}"));
    }
    entity.push_str("the last line\r\n");
    let mut child = gpg(&f)
        .args(["--sign", "--encrypt", "-u", "bob@example.org"])
        .args(["-r", "alice@example.org", "--compress-algo", "none"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gpg");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(entity.as_bytes())
    });
    let out = child.wait_with_output().expect("gpg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.join().expect("writer").expect("written");
    let ciphertext = out.stdout;
    assert!(ciphertext.len() > 4_000_000, "{} bytes", ciphertext.len());

    let read = f.decrypt_as_alice(&ciphertext);
    assert!(read.decrypted, "{:?} {:?}", read.refusal, read.detail);
    assert_eq!(
        read.signature,
        SignatureStatus::Valid {
            fingerprint: f.bob.fingerprint(),
            signer: "bob@example.org".into()
        }
    );
    assert!(String::from_utf8_lossy(&read.message).ends_with("the last line\r\n"));

    let mut damaged = ciphertext.clone();
    let at = damaged.len() - 40;
    damaged[at] ^= 0x01;
    let read = f.decrypt_as_alice(&damaged);
    assert!(!read.decrypted, "damaged mail was decrypted");
    assert!(
        !String::from_utf8_lossy(&read.message).contains(line),
        "no part of the damaged plaintext is released"
    );
}

#[test]
fn sq_reads_ours_and_we_read_sq() {
    let f = Fixture::new();
    let ours = f.outgoing();
    let (plain, _) = run(Command::new("sq")
        .args(["decrypt", "--recipient-key"])
        .arg(f.path("bob.sec.asc"))
        .arg("--signer-cert")
        .arg(f.path("alice.pub.asc"))
        .arg(&ours));
    // With --signer-cert, sq fails unless the signature by that cert is good.
    assert!(plain.contains(BODY));

    let out = f.path("sq.asc");
    run(Command::new("sq")
        .args(["encrypt", "--recipient-cert"])
        .arg(f.path("alice.pub.asc"))
        .arg("--signer-key")
        .arg(f.path("bob.sec.asc"))
        .arg("--output")
        .arg(&out)
        .arg(f.peer_plaintext()));
    f.incoming(&out);
}

#[test]
fn rnp_reads_ours_and_we_read_rnp() {
    let f = Fixture::new();
    let home = f.path("rnp");
    std::fs::create_dir(&home).expect("rnp home");
    for k in ["bob.sec.asc", "alice.pub.asc"] {
        run(Command::new("rnpkeys")
            .arg("--homedir")
            .arg(&home)
            .arg("--import")
            .arg(f.path(k)));
    }
    let ours = f.outgoing();
    let decrypted = f.path("rnp.out");
    let (_, report) = run(Command::new("rnp")
        .arg("--homedir")
        .arg(&home)
        .args(["--password", "", "--decrypt"])
        .arg(&ours)
        .arg("--output")
        .arg(&decrypted));
    let plain = std::fs::read_to_string(&decrypted).expect("rnp output");
    assert!(plain.contains(BODY));
    assert!(report.contains("Good signature"), "{report}");
    let alice_id = f.alice.keyid().to_hex().to_lowercase();
    assert!(
        report.to_lowercase().contains(&alice_id),
        "signed by Alice: {report}"
    );

    let out = f.path("rnp.asc");
    run(Command::new("rnp")
        .arg("--homedir")
        .arg(&home)
        .args([
            "--password",
            "",
            "--sign",
            "--encrypt",
            "--armor",
            "-r",
            "alice@example.org",
            "-u",
            "bob@example.org",
        ])
        .arg(f.peer_plaintext())
        .arg("--output")
        .arg(&out));
    f.incoming(&out);
}
