//! IMAP proxy benchmark (BENCHMARKS.md; `scripts/bench-imap`): fetching a
//! whole mailbox of 5,000 messages, half of them encrypted, through the
//! proxy the first time (cold: every encrypted message downloaded,
//! decrypted, archived) and the second time (warm: served from the
//! archive), against the same client straight from Dovecot, in one run.
//!
//! The client is the gateway's own upstream connection (imap-next): LOGIN,
//! EXAMINE, `UID FETCH` of 200 messages at a time with `BODY.PEEK[]`. To the
//! proxy it connects over plain loopback, as a mail client on the same
//! machine would; to Dovecot over TLS. Usage:
//! `cargo run --release -p imap-proxy --example proxy_bench [MESSAGES] [ROUNDS]`
//! (run as root: the fixture starts Dovecot).

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use archive::Archive;
use autocrypt::{AutocryptHeader, PreferEncrypt};
use imap_proxy::proxy::{AccountConfig, Config, Proxy};
use imap_proxy::upstream::{Endpoint, Security, Session};
use keystore::{Keystore, Unlock};
use mailcrypt::EncryptRequest;
use secrecy::SecretString;
use testbed::Dovecot;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const BATCH: usize = 200;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let messages: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let rounds: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(3);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(messages, rounds))
}

/// A message of a few KB: some text, a signature-sized tail.
fn plain_message(n: usize) -> Vec<u8> {
    let mut body = String::new();
    for line in 0..40 {
        body.push_str(&format!(
            "Line {line} of message {n}: the quarterly numbers, the lighthouse and the plan.\r\n"
        ));
    }
    format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: message {n}\r\n\
         Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m{n}@example.org>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn run(messages: usize, rounds: usize) -> anyhow::Result<()> {
    let now = SystemTime::now() - Duration::from_secs(60);
    let alice = autocrypt::key::generate(ALICE, now)?;
    let bob = autocrypt::key::generate(BOB, now)?;
    let header = AutocryptHeader::new(BOB, PreferEncrypt::Mutual, bob.clone());
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")])).await?;

    // Messages go straight into the maildir (doveadm save per message would
    // take minutes); Dovecot picks them up as new mail.
    let new_dir = dovecot.mail_dir("alice").join("new");
    std::fs::create_dir_all(&new_dir)?;
    for n in 0..messages {
        let plain = plain_message(n);
        let bytes = if n % 2 == 0 {
            mailcrypt::encrypt(
                &plain,
                &EncryptRequest {
                    autocrypt: Some(&header),
                    ..EncryptRequest::new(&bob, std::slice::from_ref(&alice))
                },
            )?
        } else {
            plain
        };
        std::fs::write(
            new_dir.join(format!("{}.M{n}P1.bench", 1_800_000_000 + n)),
            bytes,
        )?;
    }
    let status = std::process::Command::new("chown")
        .args(["-R", "mail:mail"])
        .arg(dovecot.mail_dir("alice"))
        .status()?;
    anyhow::ensure!(status.success(), "chown of the maildir failed");

    let direct = Endpoint {
        host: "localhost".into(),
        port: dovecot.imaps_port,
        security: Security::Tls,
        ca_file: Some(dovecot.ca_file.clone()),
        pinned: None,
    };
    println!("round\tdirect_s\tcold_s\twarm_s\tcold/direct\twarm/direct");
    let mut ratios_cold = Vec::new();
    let mut ratios_warm = Vec::new();
    for round in 0..rounds {
        // A fresh vault and archive each round, so "cold" is cold.
        let dir = tempfile::tempdir()?;
        let store = Keystore::create(dir.path(), Unlock::KeyFile).await?;
        store
            .put_identity(ALICE, &alice, PreferEncrypt::Mutual, now)
            .await?;
        let archive = Archive::open(&store).await?;
        let proxy = Proxy::bind(
            Config {
                listen: "127.0.0.1:0".parse()?,
                tls: None,
                provider_timeout: imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT,
                accounts: vec![AccountConfig {
                    address: ALICE.into(),
                    username: "alice".into(),
                    provider: direct.clone(),
                }],
            },
            store.clone(),
            archive,
        )
        .await?;
        let through = Endpoint {
            host: "127.0.0.1".into(),
            port: proxy.local_addr()?.port(),
            security: Security::Plain,
            ca_file: None,
            pinned: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(proxy.run(
            async {
                let _ = stopped.await;
            },
            std::time::Duration::from_secs(1),
        ));

        let direct_s = fetch_all(&direct, messages).await?;
        let cold_s = fetch_all(&through, messages).await?;
        let warm_s = fetch_all(&through, messages).await?;
        let _ = stop.send(());
        let _ = server.await;
        ratios_cold.push(cold_s / direct_s);
        ratios_warm.push(warm_s / direct_s);
        println!(
            "{round}\t{direct_s:.2}\t{cold_s:.2}\t{warm_s:.2}\t{:.2}\t{:.2}",
            cold_s / direct_s,
            warm_s / direct_s
        );
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median\tcold/direct={:.2}\twarm/direct={:.2}",
        median(ratios_cold),
        median(ratios_warm)
    );
    Ok(())
}

/// Logs in, examines INBOX and fetches every message; seconds taken.
async fn fetch_all(endpoint: &Endpoint, expected: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut session = Session::connect(endpoint).await.context("connect")?;
    session
        .login("alice", &SecretString::from("alicepw"))
        .await
        .context("login")?;
    session.examine("INBOX").await.context("examine")?;
    let uids: Vec<u32> = session
        .uids_and_sizes()
        .await?
        .into_iter()
        .map(|(uid, _)| uid)
        .collect();
    anyhow::ensure!(
        uids.len() == expected,
        "{} of {expected} messages",
        uids.len()
    );
    let mut bytes = 0usize;
    for batch in uids.chunks(BATCH) {
        for (_, message) in session.fetch_messages(batch).await? {
            bytes += message.len();
        }
    }
    session.logout().await;
    anyhow::ensure!(bytes > 0, "nothing fetched");
    Ok(start.elapsed().as_secs_f64())
}
