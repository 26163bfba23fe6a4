//! `gateway status`: what is configured, whether it is running, and what
//! the vault and the archive hold — for a person, or `--json` for scripts.

use clap::Args;
use serde::Serialize;

use crate::config::Config;
use crate::keytool::Global;
use crate::{daemon, unlock, Answer};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Status {
    config: String,
    data_dir: String,
    listeners: Vec<Listener>,
    local_tls: bool,
    /// SHA-256 of the local certificate, colon-separated.
    certificate_sha256: Option<String>,
    accounts: Vec<AccountStatus>,
    contacts: usize,
    contacts_with_conflicts: usize,
    archive_messages: i64,
    archive_locations: i64,
    archive_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Listener {
    protocol: &'static str,
    address: String,
    running: bool,
}

#[derive(Debug, Serialize)]
struct AccountStatus {
    address: String,
    username: String,
    policy: &'static str,
    fingerprint: Option<String>,
    imap: String,
    smtp: String,
}

pub async fn run(global: &Global, args: StatusArgs) -> anyhow::Result<Answer> {
    let (path, config) = Config::load_existing(global.config.as_deref())?;
    let data_dir = config.data_dir()?;
    let vault = unlock::open(&data_dir, global.passphrase_file.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("opening the vault in {}: {e}", data_dir.display()))?;
    let certificate = vault
        .local_tls()
        .await?
        .map(|(cert_der, key_der)| net_edge::LocalCertificate { cert_der, key_der }.fingerprint());
    let mut accounts = Vec::new();
    for a in &config.accounts {
        accounts.push(AccountStatus {
            address: a.address.clone(),
            username: a.username().to_string(),
            policy: a.policy.as_str(),
            fingerprint: vault
                .identity(&a.address)
                .await
                .ok()
                .map(|i| i.cert.fingerprint().to_hex()),
            imap: a.imap_description(),
            smtp: a.smtp_description(),
        });
    }
    let peers = vault.list().await?;
    let archive = archive::Archive::open(&vault).await?;
    let (messages, locations) = archive.counts().await?;
    archive.close().await;
    vault.close().await;
    let archive_bytes = ["archive.db", "archive.db-wal"]
        .iter()
        .map(|f| daemon::file_size(&data_dir.join(f)))
        .sum();
    let status = Status {
        config: path.display().to_string(),
        data_dir: data_dir.display().to_string(),
        listeners: [
            Some(("imap", config.imap_listen())),
            Some(("smtp", config.smtp_listen())),
            config.web.enabled.then(|| ("web", config.web_listen())),
        ]
        .into_iter()
        .flatten()
        .map(|(protocol, address)| Listener {
            protocol,
            address: address.to_string(),
            running: daemon::listening(address),
        })
        .collect(),
        local_tls: config.local_tls,
        certificate_sha256: certificate,
        accounts,
        contacts: peers.len(),
        contacts_with_conflicts: peers.iter().filter(|p| !p.conflicts.is_empty()).count(),
        archive_messages: messages,
        archive_locations: locations,
        archive_bytes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(Answer::Yes);
    }
    println!("Configuration   {}", status.config);
    println!("Data directory  {}", status.data_dir);
    for l in &status.listeners {
        println!(
            "{:<15} {}  {}",
            l.protocol.to_uppercase(),
            l.address,
            if l.running { "running" } else { "not running" }
        );
    }
    println!(
        "Local TLS       {}",
        if status.local_tls {
            "on (STARTTLS)"
        } else {
            "off"
        }
    );
    if let Some(f) = &status.certificate_sha256 {
        println!("Certificate     SHA-256 {f}");
    }
    for a in &status.accounts {
        println!(
            "Account         {} (login {}, policy {})",
            a.address, a.username, a.policy
        );
        println!(
            "  own key       {}",
            a.fingerprint
                .as_deref()
                .unwrap_or("MISSING: run `gateway init` for it again")
        );
        println!("  provider      IMAP {}, SMTP {}", a.imap, a.smtp);
    }
    println!(
        "Contacts        {} known, {} with conflicting keys (see `keytool list`)",
        status.contacts, status.contacts_with_conflicts
    );
    println!(
        "Archive         {} messages in {} places, {:.1} MiB",
        status.archive_messages,
        status.archive_locations,
        status.archive_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(Answer::Yes)
}
