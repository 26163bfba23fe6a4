//! `keytool`: contacts' keys — list, show, verify, trust decisions, import,
//! export, DNS discovery and Autocrypt Setup Messages.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context};
use autocrypt::setup::SetupCode;
use clap::{Args, Subcommand};
use keystore::{FingerprintCheck, KeySource, Keystore, TrustLevel};
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;

use crate::config::{self, Config};
use crate::{unlock, Answer};

/// Options every keytool command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The configuration file [default: $XDG_CONFIG_HOME/letterlock/gateway.toml]
    #[arg(long, global = true, env = "LETTERLOCK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read the vault passphrase from this file (first line)
    #[arg(long, global = true)]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every known contact with the key mail goes to and its trust
    List {
        #[arg(long)]
        json: bool,
    },
    /// One contact: current key, trust, conflicts, history
    Show {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Compare a contact's fingerprint and mark the key verified
    Verify {
        address: String,
        /// Compare with this fingerprint instead of asking (exit 0 match, 1 mismatch)
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Withdraw a verification (back to trust on first use)
    Unverify { address: String },
    /// Never use the contact's current key again
    Reject { address: String },
    /// Delete everything known about a contact
    Forget { address: String },
    /// Every key ever seen for a contact, and key events
    History {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Import certificates (armored or binary, several at once) or vCards with keys
    /// (.vcf, as Delta Chat shares contacts); `-` reads stdin
    Import { file: String },
    /// Print a contact's (or with --own, an account's) public certificate, armored
    Export {
        address: Option<String>,
        /// Export the public part of an own account key
        #[arg(long, value_name = "ADDR", conflicts_with = "address")]
        own: Option<String>,
        /// A vCard with the key instead (Delta Chat imports it as a contact)
        #[arg(long)]
        vcard: bool,
    },
    /// Look up a contact's key in DNS (OPENPGPKEY)
    Discover { address: String },
    /// Autocrypt Setup Message: move an account key to or from another client
    #[command(subcommand)]
    SetupMessage(SetupCommand),
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Write a Setup Message for an account to stdout; the setup code goes to stderr
    Export { address: String },
    /// Import an account key from a Setup Message (asks for the setup code)
    Import {
        file: PathBuf,
        /// The setup code, instead of asking
        #[arg(long, env = "LETTERLOCK_SETUP_CODE")]
        code: Option<String>,
    },
}

/// Runs one keytool command.
pub async fn run(global: &Global, command: Command) -> anyhow::Result<Answer> {
    let config_path = config::path(global.config.as_deref())?;
    let config = Config::load(&config_path)?;
    let data_dir = config.data_dir()?;
    let store = unlock::open(&data_dir, global.passphrase_file.as_deref()).await?;
    let now = SystemTime::now();
    let answer = match command {
        Command::List { json } => list(&store, json).await?,
        Command::Show { address, json } => show(&store, &address, json).await?,
        Command::Verify {
            address,
            fingerprint,
        } => verify(&store, &address, fingerprint.as_deref(), now).await?,
        Command::Unverify { address } => {
            if store.unverify(&address, now).await? {
                println!(
                    "{address}: verification withdrawn; the key is trusted on first use again"
                );
            } else {
                println!("{address}: no verified key");
            }
            Answer::Yes
        }
        Command::Reject { address } => {
            let fpr = store.reject(&address, None, now).await?;
            println!(
                "{address}: key {} rejected; it will never be used",
                grouped(&fpr)
            );
            Answer::Yes
        }
        Command::Forget { address } => {
            if !store.forget(&address).await? {
                bail!("nothing is known about {address}");
            }
            println!("{address}: forgotten");
            Answer::Yes
        }
        Command::History { address, json } => history(&store, &address, json).await?,
        Command::Import { file } => import(&store, &file, now).await?,
        Command::Export {
            address,
            own,
            vcard,
        } => export(&store, address.as_deref(), own.as_deref(), vcard).await?,
        Command::Discover { address } => {
            let discovery = config.key_discovery()?;
            let found = discovery.discover(&store, &address, now).await?;
            discovered(&address, &found, config.discovery.wkd)
        }
        Command::SetupMessage(SetupCommand::Export { address }) => {
            let id = store.identity(&address).await?;
            let code = SetupCode::generate();
            let date = httpdate::fmt_http_date(now);
            let message = autocrypt::setup::create_message(
                &id.cert,
                &id.address,
                id.prefer_encrypt,
                &code,
                &date,
            )?;
            std::io::stdout().write_all(&message)?;
            eprintln!(
                "Setup code (type it into the other client): {}",
                code.as_str()
            );
            Answer::Yes
        }
        Command::SetupMessage(SetupCommand::Import { file, code }) => {
            let message =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let code = match code {
                Some(c) => c,
                None => prompt("Setup code: ")?,
            };
            let code = SetupCode::parse(&code)?;
            let imported = autocrypt::setup::import(&message, &code)?;
            let address = imported
                .cert
                .userids()
                .find_map(|u| u.userid().email_normalized().ok().flatten())
                .ok_or_else(|| anyhow!("the key in the Setup Message has no email address"))?;
            store
                .put_identity(&address, &imported.cert, imported.prefer_encrypt, now)
                .await?;
            println!(
                "{address}: key {} imported as the account key",
                grouped(&imported.cert.fingerprint().to_hex())
            );
            Answer::Yes
        }
    };
    store.close().await;
    Ok(answer)
}

async fn list(store: &Keystore, json: bool) -> anyhow::Result<Answer> {
    let peers = store.list().await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "peers": peers }))?
        );
        return Ok(Answer::Yes);
    }
    if peers.is_empty() {
        println!("No contacts yet: keys are learned from incoming mail, `keytool import` or `keytool discover`.");
        return Ok(Answer::Yes);
    }
    println!(
        "{:<32} {:<10} {:<13} {:<40} NOTE",
        "ADDRESS", "TRUST", "PREFER", "FINGERPRINT"
    );
    for p in peers {
        let note = if p.conflicts.is_empty() {
            String::new()
        } else {
            format!("{} conflicting key(s)", p.conflicts.len())
        };
        println!(
            "{:<32} {:<10} {:<13} {:<40} {note}",
            p.address,
            p.trust.map(TrustLevel::as_str).unwrap_or("-"),
            p.prefer_encrypt,
            p.fingerprint.as_deref().unwrap_or("(no usable key)"),
        );
    }
    Ok(Answer::Yes)
}

async fn show(store: &Keystore, address: &str, json: bool) -> anyhow::Result<Answer> {
    let summary = store.summary(address).await?;
    let history = store.history(address).await?;
    let events = store.events(address).await?;
    if json {
        let doc = serde_json::json!({ "peer": summary, "keys": history, "events": events });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Answer::Yes);
    }
    println!("Address:      {}", summary.address);
    match &summary.fingerprint {
        Some(f) => println!("Key:          {}", grouped(f)),
        None => println!("Key:          none usable"),
    }
    println!(
        "Trust:        {}",
        summary.trust.map(TrustLevel::as_str).unwrap_or("-")
    );
    println!("Prefers:      {}", summary.prefer_encrypt);
    for c in &summary.conflicts {
        println!(
            "CONFLICT:     {} differs from the verified key; mail still goes to the verified one.",
            grouped(c)
        );
        println!("              Check it with the contact, then `keytool verify {address}` or `keytool reject {address}`.");
    }
    println!("Keys seen:    {}", history.len());
    Ok(Answer::Yes)
}

async fn history(store: &Keystore, address: &str, json: bool) -> anyhow::Result<Answer> {
    let keys = store.history(address).await?;
    let events = store.events(address).await?;
    if keys.is_empty() && events.is_empty() {
        bail!("nothing is known about {address}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "keys": keys, "events": events }))?
        );
        return Ok(Answer::Yes);
    }
    println!(
        "{:<40} {:<13} {:<9} {:<20} LAST SEEN",
        "FINGERPRINT", "SOURCE", "TRUST", "FIRST SEEN"
    );
    for k in &keys {
        println!(
            "{:<40} {:<13} {:<9} {:<20} {}",
            k.fingerprint,
            k.source.as_str(),
            k.trust.as_str(),
            httpdate::fmt_http_date(k.first_seen),
            httpdate::fmt_http_date(k.last_seen)
        );
    }
    println!();
    for e in &events {
        println!(
            "{}  {:?}  {} -> {}",
            httpdate::fmt_http_date(e.at),
            e.kind,
            e.old_fingerprint.as_deref().unwrap_or("-"),
            e.new_fingerprint.as_deref().unwrap_or("-")
        );
    }
    Ok(Answer::Yes)
}

async fn verify(
    store: &Keystore,
    address: &str,
    given: Option<&str>,
    now: SystemTime,
) -> anyhow::Result<Answer> {
    let candidate = store
        .verification_candidate(address)
        .await
        .with_context(|| format!("{address} has no usable key to verify"))?;
    if let Some(given) = given {
        return match store
            .verify_fingerprint(address, given, "fingerprint", now)
            .await?
        {
            FingerprintCheck::Verified(fpr) => {
                println!(
                    "{address}: fingerprint matches; key {} verified",
                    grouped(&fpr)
                );
                Ok(Answer::Yes)
            }
            FingerprintCheck::Mismatch(given) => {
                println!(
                    "{address}: MISMATCH — {} is not a key we have for this contact",
                    grouped(&given)
                );
                Ok(Answer::No)
            }
        };
    }
    let own = store.identities().await?;
    for id in &own {
        println!("Your key ({}):", id.address);
        println!("  {}", grouped(&id.cert.fingerprint().to_hex()));
    }
    println!("{address}'s key:");
    println!("  {}", grouped(&candidate));
    let uri = format!("OPENPGP4FPR:{candidate}");
    println!("  {uri}");
    if let Ok(qr) = qrcode::QrCode::new(uri.as_bytes()) {
        println!(
            "{}",
            qr.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        );
    }
    println!("Compare this with what {address} sees (in person or by phone).");
    let reply = prompt("Do the fingerprints match? [y/N] ")?;
    if matches!(reply.trim(), "y" | "Y" | "yes" | "Yes") {
        match store
            .verify_fingerprint(address, &candidate, "compared", now)
            .await?
        {
            FingerprintCheck::Verified(_) => {
                println!("{address}: key verified");
                Ok(Answer::Yes)
            }
            // The key went away (forgotten, rejected) while the person compared.
            FingerprintCheck::Mismatch(_) => {
                println!("{address}: the key changed meanwhile; not verified");
                Ok(Answer::No)
            }
        }
    } else {
        println!("{address}: not verified");
        Ok(Answer::No)
    }
}

async fn import(store: &Keystore, file: &str, now: SystemTime) -> anyhow::Result<Answer> {
    let mut data = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading standard input")?;
    } else {
        data = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    }
    if crate::vcard::is_vcard(&data) {
        return import_vcards(store, file, &data, now).await;
    }
    let mut count = 0;
    for cert in
        CertParser::from_bytes(&data).context("the input is neither OpenPGP data nor a vCard")?
    {
        let cert = match cert {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped an invalid certificate: {e}");
                continue;
            }
        };
        match store.record_key(&cert, KeySource::Import, now).await {
            Ok(addresses) => {
                count += 1;
                println!(
                    "{}: {}",
                    grouped(&cert.fingerprint().to_hex()),
                    addresses.join(", ")
                );
            }
            Err(e) => eprintln!("skipped {}: {e}", cert.fingerprint()),
        }
    }
    if count == 0 {
        bail!("no usable certificate in {file}");
    }
    Ok(Answer::Yes)
}

/// Each contact of a vCard file: its key recorded for the address the card
/// gives (the user vouches for the card, not for the key's own user IDs).
async fn import_vcards(
    store: &Keystore,
    file: &str,
    data: &[u8],
    now: SystemTime,
) -> anyhow::Result<Answer> {
    let text = std::str::from_utf8(data).with_context(|| format!("{file} is not UTF-8 text"))?;
    let mut count = 0;
    for contact in crate::vcard::parse(text) {
        let contact = match contact {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: {e}");
                continue;
            }
        };
        let fpr = contact.cert.fingerprint().to_hex();
        match store
            .record_key_for(&contact.address, &contact.cert, KeySource::Import, now)
            .await
        {
            Ok(()) => {
                count += 1;
                match &contact.name {
                    Some(name) => println!("{}: {} ({name})", grouped(&fpr), contact.address),
                    None => println!("{}: {}", grouped(&fpr), contact.address),
                }
            }
            Err(e) => eprintln!("skipped {}: {e}", contact.address),
        }
    }
    if count == 0 {
        bail!("no contact with a usable key in {file}");
    }
    Ok(Answer::Yes)
}

async fn export(
    store: &Keystore,
    address: Option<&str>,
    own: Option<&str>,
    vcard: bool,
) -> anyhow::Result<Answer> {
    let (whose, cert): (&str, Cert) = match (address, own) {
        (_, Some(own)) => (
            own,
            store.identity(own).await?.cert.strip_secret_key_material(),
        ),
        (Some(address), None) => {
            let peer = store.effective_peer(address).await?;
            let cert = peer
                .and_then(|p| p.target_key().cloned())
                .ok_or_else(|| anyhow!("{address} has no usable key"))?;
            (address, cert)
        }
        (None, None) => bail!("say whose key: keytool export ADDR, or keytool export --own ADDR"),
    };
    if vcard {
        let card = crate::vcard::render(whose, None, &cert)?;
        std::io::stdout().write_all(card.as_bytes())?;
    } else {
        std::io::stdout().write_all(&cert.armored().to_vec()?)?;
    }
    Ok(Answer::Yes)
}

fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(line.trim().to_string())
}

/// A fingerprint in groups of four, as people compare them.
pub fn grouped(fpr: &str) -> String {
    fpr.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `keytool discover` says: which method answered, with what.
fn discovered(address: &str, found: &keystore::Discovered, wkd: bool) -> Answer {
    if found.ignored > 0 {
        println!(
            "{address}: the Web Key Directory served {} key(s) without this address as a user ID; ignored",
            found.ignored
        );
    }
    if let Some(e) = &found.wkd_failed {
        println!("{address}: the Web Key Directory could not be asked: {e}");
    }
    let by = match found.source {
        Some(keystore::KeySource::Wkd) => "Web Key Directory",
        _ => "DNS (OPENPGPKEY)",
    };
    if found.certs.is_empty() {
        let asked = if wkd {
            "no OPENPGPKEY record and no key in the Web Key Directory"
        } else {
            "no OPENPGPKEY record (Web Key Directory look-ups are off: [discovery] wkd)"
        };
        println!("{address}: {asked}");
        return Answer::No;
    }
    for c in &found.certs {
        println!(
            "{address}: found {} by {by}",
            grouped(&c.fingerprint().to_hex())
        );
    }
    Answer::Yes
}
