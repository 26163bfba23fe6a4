//! `gateway init`: adds an account — its key in the vault (created on first
//! use), its entry in the configuration — and prints what to type into the
//! mail client. Every setting can come from a flag; on a terminal the
//! missing ones are asked for, elsewhere their absence is an error that
//! names the flag.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use autocrypt::PreferEncrypt;
use clap::Args;
use keystore::{Keystore, Unlock};
use secrecy::{ExposeSecret, SecretString};

use net_edge::{CertificateFingerprint, CertificateRejected, Endpoint};

use crate::config::{self, Account, Config, Policy, ProviderPin, Security, Upstream};
use crate::keytool::Global;
use crate::{daemon, unlock, Answer};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The account's email address
    #[arg(long)]
    pub address: Option<String>,
    /// The provider's IMAP server, HOST:PORT (e.g. imap.example.org:993)
    #[arg(long, value_name = "HOST:PORT")]
    pub imap: Option<String>,
    /// The provider's SMTP submission server, HOST:PORT (e.g. smtp.example.org:465)
    #[arg(long, value_name = "HOST:PORT")]
    pub smtp: Option<String>,
    /// How the IMAP connection is secured [default: from the port: 143 starttls, else tls]
    #[arg(long, value_enum)]
    pub imap_security: Option<Security>,
    /// How the SMTP connection is secured [default: from the port: 587/25 starttls, else tls]
    #[arg(long, value_enum)]
    pub smtp_security: Option<Security>,
    /// The login name at the provider [default: the address]
    #[arg(long)]
    pub username: Option<String>,
    /// An extra trust anchor (PEM) for a provider with a private certificate
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Trust the provider certificate with this SHA-256 fingerprint although it does not verify
    /// (a self-signed home server), as `openssl x509 -noout -fingerprint -sha256` prints it
    #[arg(long, value_name = "SHA256-FPR")]
    pub trust_provider_cert: Option<CertificateFingerprint>,
    /// When to encrypt outgoing mail
    #[arg(long, value_enum, default_value = "opportunistic")]
    pub policy: Policy,
    /// Create the vault without a passphrase (a random key file, 0600, in the data directory)
    #[arg(long, conflicts_with = "passphrase_file")]
    pub no_passphrase: bool,
}

pub async fn run(global: &Global, args: InitArgs) -> anyhow::Result<Answer> {
    let path = config::path(global.config.as_deref())?;
    let mut config = Config::load(&path)?;
    let interactive = std::io::stdin().is_terminal();

    let address = value(args.address, "--address", "Your email address", interactive)?;
    let address = address.trim().to_string();
    if !looks_like_address(&address) {
        bail!("\"{address}\" is not an email address (like alice@example.org)");
    }
    if config.account(&address).is_some() {
        bail!(
            "{address} is already an account in {}; edit that file to change its settings",
            path.display()
        );
    }
    let imap = value(
        args.imap,
        "--imap",
        "Your provider's IMAP server (host:port, e.g. imap.example.org:993)",
        interactive,
    )?;
    let smtp = value(
        args.smtp,
        "--smtp",
        "Your provider's SMTP submission server (host:port, e.g. smtp.example.org:465)",
        interactive,
    )?;
    let imap = upstream(&imap, "--imap", args.imap_security, &[143])?;
    let smtp = upstream(&smtp, "--smtp", args.smtp_security, &[587, 25])?;
    let username = args.username.unwrap_or_else(|| address.clone());
    if let Some(other) = config.accounts.iter().find(|a| a.username() == username) {
        bail!(
            "the login name {username} already selects the account {}; give this one its own with --username",
            other.address
        );
    }
    if let Some(ca) = &args.ca_file {
        if !ca.is_file() {
            bail!("--ca-file {}: no such file", ca.display());
        }
    }
    let ca_file = args
        .ca_file
        .map(|ca| std::fs::canonicalize(&ca).unwrap_or(ca));
    let mut account = Account {
        address: address.clone(),
        username: Some(username.clone()),
        policy: args.policy,
        imap,
        smtp,
        ca_file,
        provider_cert_sha256: None,
    };
    account.provider_cert_sha256 =
        provider_pin(&account, args.trust_provider_cert, interactive).await?;

    let data_dir = config.data_dir()?;
    let vault = if keystore::vault::exists(&data_dir) {
        unlock::open(&data_dir, global.passphrase_file.as_deref())
            .await
            .with_context(|| format!("opening the vault in {}", data_dir.display()))?
    } else {
        let unlock = if args.no_passphrase {
            Unlock::KeyFile
        } else {
            Unlock::Passphrase(new_passphrase(global, interactive)?)
        };
        let vault = Keystore::create(&data_dir, unlock)
            .await
            .with_context(|| format!("creating the vault in {}", data_dir.display()))?;
        println!("Created the vault in {}", data_dir.display());
        vault
    };
    let now = SystemTime::now();
    let fingerprint = match vault.identity(&address).await {
        Ok(existing) => {
            println!("{address} already has a key in the vault; it is kept.");
            existing.cert.fingerprint().to_hex()
        }
        Err(_) => {
            let cert = autocrypt::key::generate(&address, now)
                .map_err(|e| anyhow!("making the key for {address}: {e}"))?;
            vault
                .put_identity(&address, &cert, PreferEncrypt::Mutual, now)
                .await?;
            cert.fingerprint().to_hex()
        }
    };
    let certificate = daemon::local_certificate(&vault).await?;
    vault.close().await;

    config.data_dir = Some(data_dir);
    config.accounts.push(account);
    config.save(&path)?;

    let security = if config.local_tls { "STARTTLS" } else { "None" };
    let (imap_at, smtp_at) = (config.imap_listen(), config.smtp_listen());
    println!("Added {address} to {}", path.display());
    println!("Its key: {fingerprint}");
    println!();
    println!("In Thunderbird: Account Settings > Account Actions > Add Mail Account, enter your");
    println!("name, {address} and your provider password, then \"Configure manually\":");
    println!(
        "  Incoming: IMAP  server {}  port {}  connection security {security}  authentication \"Normal password\"  username {username}",
        imap_at.ip(),
        imap_at.port()
    );
    println!(
        "  Outgoing: SMTP  server {}  port {}  connection security {security}  authentication \"Normal password\"  username {username}",
        smtp_at.ip(),
        smtp_at.port()
    );
    println!("  The password stays your provider password: the gateway passes it on and never stores it.");
    println!(
        "  Then in Account Settings > End-To-End Encryption choose \"None\": the gateway encrypts."
    );
    if config.local_tls {
        println!(
            "  Thunderbird will ask you to accept the gateway's certificate; its SHA-256 fingerprint is\n  {}",
            certificate.fingerprint()
        );
    }
    println!();
    println!("Start the gateway with: gateway run");
    if config.web.enabled {
        println!(
            "Contacts, fingerprints and alerts in a browser: `gateway web-link` prints a login \
             link for http://{}/",
            config.web_listen()
        );
    }
    Ok(Answer::Yes)
}

/// How long `init` waits for each of the provider's servers to show its
/// certificate.
const PROBE_PATIENCE: Duration = Duration::from_secs(15);

/// The certificate pin for the account: the provider's IMAP and SMTP
/// servers are asked for their certificates and checked as the proxies will
/// check them. One that does not verify is shown, and trusted by its
/// fingerprint only if the person says so on a terminal or gave that
/// fingerprint with --trust-provider-cert. A server that cannot be reached
/// now is said and not held against the account: the proxies check at
/// every connection.
async fn provider_pin(
    account: &Account,
    given: Option<CertificateFingerprint>,
    interactive: bool,
) -> anyhow::Result<Option<ProviderPin>> {
    let mut pin = given;
    for (server, mut endpoint) in [
        (Server::Imap, account.imap_endpoint()),
        (Server::Smtp, account.smtp_endpoint()),
    ] {
        if endpoint.security == net_edge::Security::Plain {
            continue;
        }
        let name = server.name();
        endpoint.pinned = pin;
        let rejected = match probe(server, &endpoint).await {
            Probe::Trusted => continue,
            Probe::Failed(why) => {
                eprintln!(
                    "Could not check the certificate of the {name} server {}:{} now ({why}); the gateway checks it at every connection.",
                    endpoint.host, endpoint.port
                );
                continue;
            }
            Probe::Rejected(rejected) => rejected,
        };
        let presented = rejected.presented();
        if let Some(pinned) = pin {
            bail!(
                "the {name} server {}:{} presents a certificate ({presented}) that does not verify and is not the one trusted with {} ({pinned}); nothing was changed",
                endpoint.host,
                endpoint.port,
                if given == Some(pinned) { "--trust-provider-cert" } else { "the IMAP server's" },
            );
        }
        if !interactive {
            bail!(
                "{rejected}\nNot on a terminal, so this cannot be asked: if that is your server's certificate, run init again with --trust-provider-cert {}",
                presented.fingerprint
            );
        }
        println!(
            "The {name} server {}:{} presents a certificate that does not verify:",
            endpoint.host, endpoint.port
        );
        println!("  subject  {}", presented.subject);
        println!("  issuer   {}", presented.issuer);
        println!("  SHA-256  {}", presented.fingerprint);
        println!("Trust it only if your server shows the same fingerprint");
        println!("(on the server: openssl x509 -noout -fingerprint -sha256 -in CERTIFICATE.pem).");
        if !yes("Trust this certificate for this account? [y/N] ")? {
            bail!("the provider's certificate was not trusted; nothing was changed");
        }
        pin = Some(presented.fingerprint);
    }
    Ok(pin.map(ProviderPin))
}

/// Which of the provider's servers is checked.
#[derive(Clone, Copy)]
enum Server {
    Imap,
    Smtp,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Imap => "IMAP",
            Server::Smtp => "SMTP",
        }
    }
}

/// What a provider server's certificate check came to.
enum Probe {
    Trusted,
    Failed(String),
    Rejected(CertificateRejected),
}

/// Connects as the proxy would (TLS or STARTTLS) and stops after the
/// handshake; no password is sent.
async fn probe(server: Server, endpoint: &Endpoint) -> Probe {
    let outcome = match server {
        Server::Imap => tokio::time::timeout(
            PROBE_PATIENCE,
            imap_proxy::upstream::Session::connect(endpoint),
        )
        .await
        .map(|connected| match connected {
            Ok(session) => {
                drop(session);
                Probe::Trusted
            }
            Err(imap_proxy::upstream::UpstreamError::Certificate { rejected, .. }) => {
                Probe::Rejected(*rejected)
            }
            Err(e) => Probe::Failed(net_edge::describe(&e)),
        }),
        Server::Smtp => tokio::time::timeout(
            PROBE_PATIENCE,
            smtp_proxy::relay::check_tls(endpoint, PROBE_PATIENCE),
        )
        .await
        .map(|checked| match checked {
            Ok(()) => Probe::Trusted,
            Err(smtp_proxy::relay::ProviderTlsError::Rejected(rejected)) => {
                Probe::Rejected(rejected)
            }
            Err(e) => Probe::Failed(e.to_string()),
        }),
    };
    outcome.unwrap_or_else(|_| Probe::Failed("no answer".into()))
}

/// A yes/no question on the terminal; anything but y/yes is no.
fn yes(question: &str) -> anyhow::Result<bool> {
    let answer = ask(question)?;
    Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// A prompt on the terminal and the line typed, trimmed.
fn ask(prompt: &str) -> anyhow::Result<String> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// A flag's value, or the answer to a prompt on a terminal.
fn value(
    given: Option<String>,
    flag: &str,
    prompt: &str,
    interactive: bool,
) -> anyhow::Result<String> {
    if let Some(v) = given {
        return Ok(v);
    }
    if !interactive {
        bail!("{flag} is missing (not on a terminal, so it cannot be asked for)");
    }
    let line = ask(&format!("{prompt}: "))?;
    if line.is_empty() {
        bail!("{flag} is needed");
    }
    Ok(line)
}

fn looks_like_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && (domain.contains('.') || domain == "localhost")
                && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// `HOST:PORT` with the security given or implied by the port.
fn upstream(
    text: &str,
    flag: &str,
    security: Option<Security>,
    starttls_ports: &[u16],
) -> anyhow::Result<Upstream> {
    let (host, port) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{flag} {text}: give HOST:PORT, e.g. mail.example.org:993"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("{flag} {text}: \"{port}\" is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{flag} {text}: the host name is missing");
    }
    let security = security.unwrap_or(if starttls_ports.contains(&port) {
        Security::Starttls
    } else {
        Security::Tls
    });
    Ok(Upstream {
        host: host.to_string(),
        port,
        security,
    })
}

/// The passphrase for a new vault: file, environment, or typed twice.
fn new_passphrase(global: &Global, interactive: bool) -> anyhow::Result<SecretString> {
    if global.passphrase_file.is_some() || std::env::var_os("LETTERLOCK_PASSPHRASE").is_some() {
        let p = unlock::passphrase(global.passphrase_file.as_deref())?;
        if p.expose_secret().is_empty() {
            bail!("the vault passphrase is empty; use --no-passphrase if that is what you want");
        }
        return Ok(p);
    }
    if !interactive {
        bail!(
            "a new vault needs a passphrase: give --passphrase-file, set LETTERLOCK_PASSPHRASE, \
             or use --no-passphrase (a key file in the data directory)"
        );
    }
    let first = rpassword::prompt_password("New vault passphrase: ")?;
    let second = rpassword::prompt_password("The same passphrase again: ")?;
    if first != second {
        bail!("the two passphrases differ; nothing was created");
    }
    if first.is_empty() {
        bail!("the passphrase is empty; use --no-passphrase if that is what you want");
    }
    Ok(SecretString::from(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_security() {
        let u = upstream("imap.example.org:993", "--imap", None, &[143]).expect("ok");
        assert_eq!(
            (u.host.as_str(), u.port, u.security),
            ("imap.example.org", 993, Security::Tls)
        );
        let u = upstream("smtp.example.org:587", "--smtp", None, &[587, 25]).expect("ok");
        assert_eq!(u.security, Security::Starttls);
        let u = upstream("[::1]:1143", "--imap", Some(Security::Plain), &[143]).expect("ok");
        assert_eq!((u.host.as_str(), u.security), ("::1", Security::Plain));
        for bad in ["imap.example.org", "host:port", ":993"] {
            let e = upstream(bad, "--imap", None, &[])
                .expect_err(bad)
                .to_string();
            assert!(e.starts_with("--imap"), "{e}");
        }
    }

    #[test]
    fn addresses() {
        assert!(looks_like_address("alice@example.org"));
        assert!(looks_like_address("bob@localhost"));
        for bad in ["alice", "@example.org", "alice@example", "Alice <a@b.org>"] {
            assert!(!looks_like_address(bad), "{bad}");
        }
    }
}
