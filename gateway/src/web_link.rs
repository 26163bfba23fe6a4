//! `gateway web-link`: a one-time login link for the local web page.
//!
//! Opening the vault (passphrase or key file) is the proof that the person
//! asking may see the page; the link's token goes into the vault, where
//! the running gateway redeems it once.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::keytool::Global;
use crate::{daemon, unlock, Answer};

/// How long a link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(10 * 60);

pub async fn run(global: &Global) -> anyhow::Result<Answer> {
    let (path, config) = Config::load_existing(global.config.as_deref())?;
    if !config.web.enabled {
        bail!(
            "the web page is off (`enabled = false` under [web] in {}); turn it on there and \
             restart `gateway run`",
            path.display()
        );
    }
    let data_dir = config.data_dir()?;
    let vault = unlock::open(&data_dir, global.passphrase_file.as_deref())
        .await
        .with_context(|| format!("opening the vault in {}", data_dir.display()))?;
    let token = vault
        .issue_web_login(LINK_LIFETIME, SystemTime::now())
        .await
        .context("recording the login link in the vault")?;
    vault.close().await;
    let listen = config.web_listen();
    println!("http://{listen}/login?token={}", token.expose_secret());
    eprintln!(
        "Open this link in a browser on this computer within {} minutes; it works once.",
        LINK_LIFETIME.as_secs() / 60
    );
    if !daemon::listening(listen) {
        eprintln!(
            "Nothing answers at {listen} yet: start the gateway (`gateway run`) first, or check \
             its log for why the web page did not start."
        );
    }
    Ok(Answer::Yes)
}
