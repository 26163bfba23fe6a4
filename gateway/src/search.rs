//! `gateway search`: full-text search over the archive.

use std::time::{Duration, UNIX_EPOCH};

use archive::{Archive, Order, SearchOptions};
use clap::Args;

use crate::config::{self, Config};
use crate::keytool::Global;
use crate::{unlock, Answer};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words, "phrases", prefix*, AND/OR/NOT, from: to: subject: has:attachment before: after:
    pub query: String,
    /// Only this account
    #[arg(long)]
    pub account: Option<String>,
    /// Only this mailbox
    #[arg(long)]
    pub mailbox: Option<String>,
    /// At most this many results
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Newest first instead of best match first
    #[arg(long)]
    pub newest: bool,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &Global, args: SearchArgs) -> anyhow::Result<Answer> {
    let config = Config::load(&config::path(global.config.as_deref())?)?;
    let vault = unlock::open(&config.data_dir()?, global.passphrase_file.as_deref()).await?;
    let archive = Archive::open(&vault).await?;
    let options = SearchOptions {
        account: args.account,
        mailbox: args.mailbox,
        limit: Some(args.limit),
        order: if args.newest {
            Order::NewestFirst
        } else {
            Order::Relevance
        },
    };
    let hits = archive.search(&args.query, &options).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "hits": hits }))?
        );
    } else if hits.is_empty() {
        println!("No messages match.");
    } else {
        for h in &hits {
            let date = h
                .date
                .and_then(|d| u64::try_from(d).ok())
                .map(|d| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(d)))
                .unwrap_or_else(|| "(no date)".into());
            println!("{date}  {}  {}", h.from, h.subject);
            println!(
                "    {} UID {}  {}",
                h.location.mailbox,
                h.location.uid,
                h.snippet.replace(['\r', '\n'], " ")
            );
        }
    }
    archive.close().await;
    vault.close().await;
    // A search without hits still succeeded (SPEC.md).
    Ok(Answer::Yes)
}
