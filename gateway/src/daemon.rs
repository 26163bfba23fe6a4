//! `gateway run`: the IMAP and SMTP proxies for every account, in one
//! process, until SIGINT or SIGTERM.
//!
//! Start-up checks everything a person could get wrong before anything
//! listens, and says which setting to change: the configuration (file and
//! line, via the TOML parser), listeners off loopback without local TLS,
//! the vault (locked, missing), an account without its key, a port taken.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use archive::Archive;
use clap::Args;
use imap_proxy::proxy::{Proxy, DEFAULT_PROVIDER_TIMEOUT};
use keystore::{Discovery, Keystore};
use net_edge::LocalCertificate;
use smtp_proxy::outgoing::Account as SmtpAccount;
use smtp_proxy::relay::Provider;
use smtp_proxy::server::Server;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::keytool::Global;
use crate::{unlock, Answer};

/// Messages in flight when a stop signal arrives get this long to finish.
const GRACE: Duration = Duration::from_secs(30);
/// An SMTP client silent for this long is disconnected (RFC 5321: 5 min).
const SMTP_IDLE: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Log lines for people (default) or one JSON object per line
    #[arg(long, value_enum, default_value = "human")]
    pub log_format: crate::LogFormat,
}

pub async fn run(global: &Global) -> anyhow::Result<Answer> {
    let (path, config) = Config::load_existing(global.config.as_deref())?;
    if config.accounts.is_empty() {
        bail!(
            "{} has no account: add one with `gateway init`",
            path.display()
        );
    }
    let (imap_listen, smtp_listen) = (config.imap_listen(), config.smtp_listen());
    for (name, address) in [("imap", imap_listen), ("smtp", smtp_listen)] {
        if !address.ip().is_loopback() && !config.local_tls {
            bail!(
                "refusing to listen on {address} ([{name}] listen in {}): passwords would cross the \
                 network in the clear. Set `local_tls = true` there, or listen on 127.0.0.1",
                path.display()
            );
        }
    }
    if config.web.enabled && !config.web_listen().ip().is_loopback() {
        bail!(
            "refusing to serve the web page on {} ([web] listen in {}): it has no TLS and is \
             meant for this computer only. Set it to 127.0.0.1 or ::1, or `enabled = false`",
            config.web_listen(),
            path.display()
        );
    }
    let data_dir = config.data_dir()?;
    let vault = unlock::open(&data_dir, global.passphrase_file.as_deref())
        .await
        .with_context(|| format!("opening the vault in {}", data_dir.display()))?;
    for account in &config.accounts {
        vault.identity(&account.address).await.with_context(|| {
            format!(
                "account {} has no key in the vault {}; run `gateway init` for it again",
                account.address,
                data_dir.display()
            )
        })?;
    }
    let archive = Archive::open(&vault).await.context("opening the archive")?;
    let certificate = local_certificate(&vault).await?;
    // A WKD setting that cannot be used (its ca_file) costs WKD, not DNS.
    let discovery = config
        .key_discovery()
        .or_else(|e| {
            warn!(error = %format!("{e:#}"), "Web Key Directory look-ups are off");
            Discovery::new(&config.dns_config())
        })
        .inspect_err(|e| warn!(error = %e, "DNS key discovery is off"))
        .ok();

    let smtp = Server::bind(
        smtp_config(&config, smtp_listen, certificate.clone()),
        vault.clone(),
        discovery,
    )
    .await
    .with_context(|| format!("starting SMTP ([smtp] listen in {})", path.display()))?;
    let imap = Proxy::bind(
        imap_config(&config, imap_listen, &certificate)?,
        vault.clone(),
        archive.clone(),
    )
    .await
    .with_context(|| format!("starting IMAP ([imap] listen in {})", path.display()))?;
    let page = web_page(&config, &path, &vault, &archive, imap_listen, smtp_listen).await?;
    info!(
        imap = %imap.local_addr()?,
        smtp = %smtp.local_addr()?,
        web = %page.as_ref().and_then(|p| p.local_addr().ok()).map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        accounts = config.accounts.len(),
        local_tls = config.local_tls,
        "gateway running"
    );

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let why = stop_signal().await;
        info!(signal = why, "stopping: finishing messages in flight");
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let imap_task = tokio::spawn(imap.run(until_stopped(stopped.clone()), GRACE));
    let smtp_task = tokio::spawn(smtp.run(until_stopped(stopped.clone()), GRACE));
    if let Some(page) = page {
        // The page is a window on the vault, not part of mail: if it
        // stops, mail goes on and the log says why.
        tokio::spawn(async move {
            if let Err(e) = page.serve(until_stopped(stopped)).await {
                warn!(error = %e, "the web page stopped");
            }
        });
    }
    let (imap_done, smtp_done) = tokio::join!(imap_task, smtp_task);
    imap_done.context("the IMAP proxy failed")?;
    smtp_done.context("the SMTP proxy failed")?;
    archive.close().await;
    vault.close().await;
    info!("gateway stopped");
    Ok(Answer::Yes)
}

/// The web page, bound, unless it is off. A port the person chose that
/// cannot be had stops the start like the other listeners'; the default
/// port taken by another program costs only the page.
async fn web_page(
    config: &Config,
    path: &Path,
    vault: &Keystore,
    archive: &Archive,
    imap_listen: SocketAddr,
    smtp_listen: SocketAddr,
) -> anyhow::Result<Option<web::Page>> {
    if !config.web.enabled {
        return Ok(None);
    }
    let listen = config.web_listen();
    let facts = web::Facts {
        accounts: config
            .accounts
            .iter()
            .map(|a| web::AccountFacts {
                address: a.address.clone(),
                policy: a.policy.as_str().to_string(),
                imap: a.imap_description(),
                smtp: a.smtp_description(),
            })
            .collect(),
        listeners: vec![
            ("IMAP (mail client)".into(), imap_listen),
            ("SMTP (mail client)".into(), smtp_listen),
            ("This page".into(), listen),
        ],
    };
    let bound = web::Page::bind(
        listen,
        vault.clone(),
        archive.clone(),
        facts,
        crate::recent_warnings().clone(),
    )
    .await;
    match bound {
        Ok(page) => Ok(Some(page)),
        Err(e @ web::WebError::Bind { .. }) if config.web.listen.is_none() => {
            warn!(
                error = %e,
                "the web page is off: its default port is taken; set `listen` under [web] in {} \
                 to another port",
                path.display()
            );
            Ok(None)
        }
        Err(e) => {
            Err(e).with_context(|| format!("starting the web page ([web] in {})", path.display()))
        }
    }
}

/// SIGINT or SIGTERM, whichever comes first.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process still stops on the default
        // action; just never return.
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// The local listeners' certificate from the vault, made (and kept) the
/// first time.
pub async fn local_certificate(vault: &Keystore) -> anyhow::Result<LocalCertificate> {
    if let Some((cert_der, key_der)) = vault.local_tls().await? {
        return Ok(LocalCertificate { cert_der, key_der });
    }
    let made = LocalCertificate::generate(&["localhost", "127.0.0.1", "::1"])
        .context("making the local TLS certificate")?;
    vault.put_local_tls(&made.cert_der, &made.key_der).await?;
    Ok(made)
}

fn smtp_config(
    config: &Config,
    listen: SocketAddr,
    certificate: LocalCertificate,
) -> smtp_proxy::server::Config {
    smtp_proxy::server::Config {
        listen,
        hostname: "localhost".into(),
        tls: config.local_tls.then_some(certificate),
        limits: Default::default(),
        idle_timeout: SMTP_IDLE,
        accounts: config
            .accounts
            .iter()
            .map(|a| smtp_proxy::server::AccountConfig {
                account: SmtpAccount {
                    address: a.address.clone(),
                    policy: a.policy.into(),
                },
                username: a.username().to_string(),
                provider: Provider {
                    endpoint: a.smtp_endpoint(),
                    timeout: smtp_proxy::relay::DEFAULT_TIMEOUT,
                },
            })
            .collect(),
    }
}

fn imap_config(
    config: &Config,
    listen: SocketAddr,
    certificate: &LocalCertificate,
) -> anyhow::Result<imap_proxy::proxy::Config> {
    let tls = if config.local_tls {
        Some(
            certificate
                .server_config()
                .context("the local TLS certificate cannot be used")?,
        )
    } else {
        None
    };
    Ok(imap_proxy::proxy::Config {
        listen,
        tls,
        provider_timeout: DEFAULT_PROVIDER_TIMEOUT,
        accounts: config
            .accounts
            .iter()
            .map(|a| imap_proxy::proxy::AccountConfig {
                address: autocrypt::normalize_addr(&a.address),
                username: a.username().to_string(),
                provider: a.imap_endpoint(),
            })
            .collect(),
    })
}

/// Whether something accepts connections at `address` (for `status`).
pub fn listening(address: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// The size of a file, 0 if absent.
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
