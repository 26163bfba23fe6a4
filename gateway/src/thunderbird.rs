//! `gateway thunderbird-profile DIR`: a new Thunderbird profile that already
//! holds the gateway's accounts, so nobody types README's settings by hand.
//!
//! Thunderbird has no file its account wizard can import, and its local ISP
//! folder (`isp/` in the installation directory) needs root and changes the
//! wizard for every user of the machine. A profile is the supported unit
//! instead: `thunderbird --profile DIR` starts with it, and the profile
//! manager (`thunderbird -P`, Create Profile, Choose Folder) can adopt it.
//! The preferences are those Thunderbird's own wizard writes for the
//! settings `gateway init` prints (IMAP and SMTP on the gateway's listeners,
//! normal password, Sent, Drafts and Templates on the server, OpenPGP off),
//! written to `prefs.js` — Thunderbird's own file — rather than `user.js`,
//! which would undo at every start whatever the person changes later.
//!
//! Passwords are not written: the gateway never stores the provider password,
//! and Thunderbird asks for it once per protocol (offering its password
//! manager).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;

use crate::config::{Account, Config};
use crate::keytool::Global;
use crate::Answer;
// The user part of a folder URI (`imap://alice%40example.org@…`), encoded
// as Thunderbird encodes it.
use keystore::wkd::encode_uri_component as uri_user;

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// A new, empty folder for the profile (created if missing)
    pub dir: PathBuf,
    /// Only this account (default: every account in the configuration)
    #[arg(long, value_name = "ADDR")]
    pub account: Option<String>,
    /// The name shown beside your address in mail you send
    #[arg(long)]
    pub name: Option<String>,
}

/// Where a mail client on this machine reaches the gateway, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub imap: SocketAddr,
    pub smtp: SocketAddr,
    /// STARTTLS on both listeners (`local_tls`).
    pub starttls: bool,
}

impl Local {
    pub fn of(config: &Config) -> Self {
        Local {
            imap: reachable(config.imap_listen()),
            smtp: reachable(config.smtp_listen()),
            starttls: config.local_tls,
        }
    }
}

/// A listener on every address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Thunderbird's `prefs.js` for these accounts behind the gateway at `local`.
pub fn prefs(local: &Local, accounts: &[&Account], name: Option<&str>) -> String {
    let mut out = String::from(
        "// Thunderbird profile written by `gateway thunderbird-profile` (Letterlock).\n\
         // Thunderbird keeps this file up to date itself; change settings in Thunderbird.\n",
    );
    let mut pref = |key: &str, value: Value| {
        let _ = writeln!(out, "user_pref(\"{key}\", {value});");
    };
    let imap_host = local.imap.ip().to_string();
    let smtp_host = local.smtp.ip().to_string();
    // Thunderbird's socketType and try_ssl: 0 plain, 2 STARTTLS.
    let security = if local.starttls { 2 } else { 0 };
    let local_folders = accounts.len() + 1;
    let mut account_keys = Vec::new();
    let mut smtp_keys = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let n = i + 1;
        let user = account.username();
        account_keys.push(format!("account{n}"));
        smtp_keys.push(format!("smtp{n}"));
        pref(
            &format!("mail.account.account{n}.identities"),
            Value::Str(format!("id{n}")),
        );
        pref(
            &format!("mail.account.account{n}.server"),
            Value::Str(format!("server{n}")),
        );
        let id = format!("mail.identity.id{n}");
        if let Some(name) = name {
            pref(&format!("{id}.fullName"), Value::Str(name.into()));
        }
        pref(
            &format!("{id}.useremail"),
            Value::Str(account.address.clone()),
        );
        pref(&format!("{id}.smtpServer"), Value::Str(format!("smtp{n}")));
        pref(&format!("{id}.valid"), Value::Bool(true));
        // The gateway encrypts and decrypts; Thunderbird's own OpenPGP would
        // encrypt twice (README, "Thunderbird, step by step").
        pref(&format!("{id}.openpgp_key_id"), Value::Str(String::new()));
        pref(&format!("{id}.e2etechpref"), Value::Int(0));
        // Copies on the server, where the gateway encrypts them.
        let folder = |name: &str| format!("imap://{}@{imap_host}/{name}", uri_user(user));
        pref(&format!("{id}.fcc_folder"), Value::Str(folder("Sent")));
        pref(
            &format!("{id}.fcc_folder_picker_mode"),
            Value::Str("1".into()),
        );
        pref(&format!("{id}.draft_folder"), Value::Str(folder("Drafts")));
        pref(
            &format!("{id}.drafts_folder_picker_mode"),
            Value::Str("1".into()),
        );
        pref(
            &format!("{id}.stationery_folder"),
            Value::Str(folder("Templates")),
        );
        pref(
            &format!("{id}.tmpl_folder_picker_mode"),
            Value::Str("1".into()),
        );
        let server = format!("mail.server.server{n}");
        pref(&format!("{server}.type"), Value::Str("imap".into()));
        pref(&format!("{server}.hostname"), Value::Str(imap_host.clone()));
        pref(
            &format!("{server}.port"),
            Value::Int(local.imap.port().into()),
        );
        pref(&format!("{server}.userName"), Value::Str(user.into()));
        pref(
            &format!("{server}.name"),
            Value::Str(account.address.clone()),
        );
        pref(&format!("{server}.socketType"), Value::Int(security));
        // 3: normal password (LOGIN / AUTHENTICATE PLAIN, passed to the provider).
        pref(&format!("{server}.authMethod"), Value::Int(3));
        pref(&format!("{server}.login_at_startup"), Value::Bool(true));
        pref(&format!("{server}.check_new_mail"), Value::Bool(true));
        let dir = if i == 0 {
            imap_host.clone()
        } else {
            format!("{imap_host}-{i}")
        };
        pref(
            &format!("{server}.directory-rel"),
            Value::Str(format!("[ProfD]ImapMail/{dir}")),
        );
        let smtp = format!("mail.smtpserver.smtp{n}");
        pref(&format!("{smtp}.hostname"), Value::Str(smtp_host.clone()));
        pref(
            &format!("{smtp}.port"),
            Value::Int(local.smtp.port().into()),
        );
        pref(&format!("{smtp}.username"), Value::Str(user.into()));
        pref(&format!("{smtp}.authMethod"), Value::Int(3));
        pref(&format!("{smtp}.try_ssl"), Value::Int(security));
        pref(
            &format!("{smtp}.description"),
            Value::Str(format!("Letterlock ({})", account.address)),
        );
    }
    // Thunderbird's own local store, which every profile has.
    account_keys.push(format!("account{local_folders}"));
    pref(
        &format!("mail.account.account{local_folders}.server"),
        Value::Str(format!("server{local_folders}")),
    );
    let server = format!("mail.server.server{local_folders}");
    pref(&format!("{server}.type"), Value::Str("none".into()));
    pref(
        &format!("{server}.hostname"),
        Value::Str("Local Folders".into()),
    );
    pref(&format!("{server}.userName"), Value::Str("nobody".into()));
    pref(
        &format!("{server}.name"),
        Value::Str("Local Folders".into()),
    );
    pref(
        &format!("{server}.directory-rel"),
        Value::Str("[ProfD]Mail/Local Folders".into()),
    );
    pref(
        "mail.accountmanager.accounts",
        Value::Str(account_keys.join(",")),
    );
    pref(
        "mail.accountmanager.defaultaccount",
        Value::Str("account1".into()),
    );
    pref(
        "mail.accountmanager.localfoldersserver",
        Value::Str(format!("server{local_folders}")),
    );
    pref("mail.smtpservers", Value::Str(smtp_keys.join(",")));
    pref("mail.smtp.defaultserver", Value::Str("smtp1".into()));
    out
}

/// A preference value as `prefs.js` spells it.
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A JavaScript string literal: quotes, backslashes and control
            // characters escaped (a name may hold any of them).
            Value::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                            write!(f, "\\u{:04x}", c as u32)?
                        }
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

pub async fn run(global: &Global, args: ProfileArgs) -> anyhow::Result<Answer> {
    let (path, config) = Config::load_existing(global.config.as_deref())?;
    let accounts: Vec<&Account> = match &args.account {
        Some(address) => vec![config.account(address).with_context(|| {
            format!(
                "{address} is not an account in {}: `gateway status` lists them",
                path.display()
            )
        })?],
        None => config.accounts.iter().collect(),
    };
    if accounts.is_empty() {
        bail!(
            "{} has no account: add one with `gateway init`",
            path.display()
        );
    }
    let dir = &args.dir;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}: give a new, empty folder", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; a profile is never written over one that exists: give a new folder",
                dir.display()
            );
        }
    }
    // A profile holds mail: private to its owner.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let local = Local::of(&config);
    std::fs::write(
        dir.join("prefs.js"),
        prefs(&local, &accounts, args.name.as_deref()),
    )
    .with_context(|| format!("writing {}", dir.join("prefs.js").display()))?;
    let shown = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    let addresses: Vec<&str> = accounts.iter().map(|a| a.address.as_str()).collect();
    println!(
        "Wrote a Thunderbird profile for {} to {}",
        addresses.join(", "),
        shown.display()
    );
    println!(
        "Start Thunderbird with it:  thunderbird --profile {}",
        shown.display()
    );
    println!("(or keep it in the profile manager: thunderbird -P, Create Profile, Choose Folder).");
    println!("Thunderbird asks for your provider password once for reading and once for sending;");
    println!("the gateway passes it on and never stores it. Keep `gateway run` running.");
    if local.starttls {
        println!(
            "Thunderbird will ask you to accept the gateway's certificate: compare its fingerprint with `gateway status`."
        );
    }
    Ok(Answer::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Policy, Security, Upstream};

    fn account(address: &str, username: Option<&str>) -> Account {
        let upstream = Upstream {
            host: "mail.example.org".into(),
            port: 993,
            security: Security::Tls,
        };
        Account {
            address: address.into(),
            username: username.map(Into::into),
            policy: Policy::Opportunistic,
            imap: upstream.clone(),
            smtp: upstream,
            ca_file: None,
            provider_cert_sha256: None,
        }
    }

    fn local() -> Local {
        Local {
            imap: "127.0.0.1:1143".parse().unwrap(),
            smtp: "127.0.0.1:1587".parse().unwrap(),
            starttls: false,
        }
    }

    /// Every line a `user_pref(key, value);` call, as Thunderbird parses it.
    fn parsed(prefs: &str) -> std::collections::HashMap<String, String> {
        prefs
            .lines()
            .filter(|l| !l.starts_with("//"))
            .map(|l| {
                let inner = l
                    .strip_prefix("user_pref(\"")
                    .and_then(|l| l.strip_suffix(");"))
                    .unwrap_or_else(|| panic!("not a pref line: {l}"));
                let (key, value) = inner.split_once("\", ").expect("key, value");
                (key.to_string(), value.to_string())
            })
            .collect()
    }

    #[test]
    fn one_account_as_the_wizard_writes_it() {
        let a = account("alice@example.org", None);
        let p = parsed(&prefs(&local(), &[&a], Some("Alice")));
        assert_eq!(p["mail.accountmanager.accounts"], "\"account1,account2\"");
        assert_eq!(p["mail.server.server1.hostname"], "\"127.0.0.1\"");
        assert_eq!(p["mail.server.server1.port"], "1143");
        assert_eq!(p["mail.server.server1.socketType"], "0");
        assert_eq!(p["mail.server.server1.userName"], "\"alice@example.org\"");
        assert_eq!(p["mail.server.server1.login_at_startup"], "true");
        assert_eq!(p["mail.smtpserver.smtp1.port"], "1587");
        assert_eq!(
            p["mail.identity.id1.fcc_folder"],
            "\"imap://alice%40example.org@127.0.0.1/Sent\""
        );
        assert_eq!(p["mail.identity.id1.fullName"], "\"Alice\"");
        assert_eq!(p["mail.server.server2.type"], "\"none\"");
        assert_eq!(p["mail.accountmanager.localfoldersserver"], "\"server2\"");
    }

    #[test]
    fn every_account_gets_its_own_server_identity_and_folder() {
        let a = account("alice@example.org", None);
        let b = account("office@example.org", Some("office"));
        let p = parsed(&prefs(&local(), &[&a, &b], None));
        assert_eq!(
            p["mail.accountmanager.accounts"],
            "\"account1,account2,account3\""
        );
        assert_eq!(p["mail.server.server2.userName"], "\"office\"");
        assert_eq!(
            p["mail.server.server2.directory-rel"],
            "\"[ProfD]ImapMail/127.0.0.1-1\""
        );
        assert_eq!(p["mail.identity.id2.smtpServer"], "\"smtp2\"");
        assert_eq!(p["mail.smtpservers"], "\"smtp1,smtp2\"");
        assert_eq!(
            p["mail.identity.id2.draft_folder"],
            "\"imap://office@127.0.0.1/Drafts\""
        );
        assert!(!p.contains_key("mail.identity.id1.fullName"));
    }

    #[test]
    fn local_tls_means_starttls_and_wildcards_mean_loopback() {
        let config = Config {
            local_tls: true,
            imap: crate::config::Listener {
                listen: Some("0.0.0.0:1993".parse().unwrap()),
            },
            ..Config::default()
        };
        let local = Local::of(&config);
        assert_eq!(local.imap, "127.0.0.1:1993".parse().unwrap());
        let p = parsed(&prefs(&local, &[&account("a@example.org", None)], None));
        assert_eq!(p["mail.server.server1.socketType"], "2");
        assert_eq!(p["mail.smtpserver.smtp1.try_ssl"], "2");
    }

    #[test]
    fn strings_are_javascript_literals() {
        let a = account("a@example.org", None);
        let text = prefs(&local(), &[&a], Some("Eve \"\\\"); evil(); //\n"));
        let line = text
            .lines()
            .find(|l| l.contains("fullName"))
            .expect("fullName");
        assert_eq!(
            line,
            r#"user_pref("mail.identity.id1.fullName", "Eve \"\\\"); evil(); //\u000a");"#
        );
        assert_eq!(uri_user("a b+c@d"), "a%20b%2Bc%40d");
    }
}
