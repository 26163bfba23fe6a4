//! `gateway archive sync`: fetch, decrypt and index mail from the provider.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use archive::Archive;
use clap::Args;
use imap_proxy::sync::{sync, MailboxReport, Progress, SyncOptions};
use imap_proxy::upstream::Session;
use imap_proxy::view::Keys;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use crate::config::{self, Account, Config};
use crate::keytool::Global;
use crate::{unlock, Answer};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this account (default: every account)
    #[arg(long)]
    pub account: Option<String>,
    /// Only this mailbox (default: every mailbox)
    #[arg(long)]
    pub mailbox: Option<String>,
}

pub async fn run(global: &Global, args: SyncArgs) -> anyhow::Result<Answer> {
    let config = Config::load(&config::path(global.config.as_deref())?)?;
    let accounts: Vec<&Account> = match &args.account {
        Some(address) => vec![config
            .accounts
            .iter()
            .find(|a| autocrypt::addr_eq(&a.address, address))
            .ok_or_else(|| {
                anyhow!(
                    "there is no account {address} in the configuration; `gateway init` adds one"
                )
            })?],
        None => config.accounts.iter().collect(),
    };
    if accounts.is_empty() {
        bail!("the configuration has no account yet; add one with `gateway init`");
    }
    let vault = unlock::open(&config.data_dir()?, global.passphrase_file.as_deref()).await?;
    let archive = Archive::open(&vault).await?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for account in accounts {
        let endpoint = account.imap_endpoint();
        let username = account.username();
        let password = unlock::upstream_password(&account.address, &endpoint.host)?;
        let keys = Keys::load(&vault, &account.address)
            .await
            .with_context(|| format!("loading the keys of {}", account.address))?;
        let mut session = Session::connect(&endpoint)
            .await
            .with_context(|| format!("account {}", account.address))?;
        session
            .login(username, &password)
            .await
            .with_context(|| format!("logging in to {} as {username}", endpoint.host))?;
        let mut display = Display::new();
        let reports = sync(
            &mut session,
            &archive,
            Arc::new(keys),
            &SyncOptions {
                account: autocrypt::normalize_addr(&account.address),
                mailbox: args.mailbox.clone(),
                workers,
                learn: Some(vault.clone()),
            },
            &mut |p| display.show(p),
        )
        .await
        .with_context(|| format!("syncing {}", account.address))?;
        display.finish();
        session.logout().await;
        print_summary(&account.address, &reports);
    }
    archive.close().await;
    vault.close().await;
    Ok(Answer::Yes)
}

fn print_summary(account: &str, reports: &[MailboxReport]) {
    println!("{account}:");
    for r in reports {
        let mut parts = vec![format!("{} new", r.indexed + r.not_indexed + r.linked)];
        if r.undecryptable > 0 {
            parts.push(format!("{} could not be decrypted", r.undecryptable));
        }
        if r.not_indexed > 0 {
            parts.push(format!("{} not indexable", r.not_indexed));
        }
        if r.skipped > 0 {
            parts.push(format!("{} too large, skipped", r.skipped));
        }
        if r.removed > 0 {
            parts.push(format!("{} removed (expunged)", r.removed));
        }
        if r.renumbered > 0 {
            parts.push(format!("{} renumbered (UIDVALIDITY changed)", r.renumbered));
        }
        println!("  {}: {}", r.name, parts.join(", "));
    }
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct Display {
    terminal: bool,
    bar: Option<ProgressBar>,
    mailbox: String,
    done: u64,
    total: u64,
    last_line: Instant,
}

impl Display {
    fn new() -> Self {
        Display {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            mailbox: String::new(),
            done: 0,
            total: 0,
            last_line: Instant::now(),
        }
    }

    fn show(&mut self, progress: Progress) {
        match progress {
            Progress::Mailbox { name, new, removed } => {
                self.finish();
                info!(mailbox = %name, new, removed, "syncing");
                self.mailbox = name;
                self.done = 0;
                self.total = new;
                if self.terminal && new > 0 {
                    let bar = ProgressBar::new(new);
                    if let Ok(style) = ProgressStyle::with_template(
                        "{msg:>12} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_message(self.mailbox.clone());
                    self.bar = Some(bar);
                }
            }
            Progress::Archived { .. } => {
                self.done += 1;
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                } else if self.last_line.elapsed() >= Duration::from_secs(2) {
                    self.last_line = Instant::now();
                    info!(mailbox = %self.mailbox, done = self.done, total = self.total, "archived");
                }
            }
            Progress::Skipped {
                mailbox,
                uid,
                reason,
            } => {
                let line = format!("{mailbox} UID {uid} skipped: {reason}");
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => info!("{line}"),
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        if self.total > 0 && !self.terminal {
            info!(mailbox = %self.mailbox, done = self.done, total = self.total, "archived");
        }
        self.total = 0;
    }
}
