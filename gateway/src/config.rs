//! The configuration file (`gateway.toml`, SPEC.md "Config") and where it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

/// The whole configuration. Unknown keys are errors, so a typo does not
/// silently fall back to a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub imap: Listener,
    #[serde(default)]
    pub smtp: Listener,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default, rename = "account")]
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    #[serde(default = "yes")]
    pub require_dnssec: bool,
    /// A DNSSEC trust anchor file instead of the built-in root keys.
    pub trust_anchor: Option<PathBuf>,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            nameservers: Vec::new(),
            require_dnssec: true,
            trust_anchor: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub address: String,
    pub username: Option<String>,
    #[serde(default = "opportunistic")]
    pub policy: String,
    pub imap: Upstream,
    pub smtp: Upstream,
    pub ca_file: Option<PathBuf>,
}

fn opportunistic() -> String {
    "opportunistic".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub security: String,
}

/// Where the configuration file is: `--config`, else `LETTERLOCK_CONFIG`
/// (clap fills that in), else `$XDG_CONFIG_HOME/letterlock/gateway.toml`.
pub fn path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    Ok(xdg("XDG_CONFIG_HOME", ".config")?.join("letterlock/gateway.toml"))
}

fn xdg(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow!("neither {var} nor HOME is set; use --config"))?;
    Ok(PathBuf::from(home).join(fallback))
}

impl Config {
    /// Reads the configuration; a missing file is an empty configuration.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the configuration {}", path.display()))
            }
        };
        toml::from_str(&text)
            .map_err(|e| anyhow!("the configuration {} is invalid: {e}", path.display()))
    }

    /// The data directory: `data_dir` from the file, else `$XDG_DATA_HOME/letterlock`.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(xdg("XDG_DATA_HOME", ".local/share")?.join("letterlock")),
        }
    }

    pub fn dns_config(&self) -> keystore::DnsConfig {
        keystore::DnsConfig {
            nameservers: self.dns.nameservers.clone(),
            require_dnssec: self.dns.require_dnssec,
            trust_anchor: self.dns.trust_anchor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_sample() {
        let text = r#"
data_dir = "/home/alice/.local/share/letterlock"
[imap]
listen = "127.0.0.1:1143"
[smtp]
listen = "127.0.0.1:1587"
[dns]
nameservers = []
require_dnssec = true
[[account]]
address = "alice@example.org"
username = "alice@example.org"
policy = "opportunistic"
imap = { host = "imap.example.org", port = 993, security = "tls" }
smtp = { host = "smtp.example.org", port = 465, security = "tls" }
"#;
        let c: Config = toml::from_str(text).expect("valid");
        assert_eq!(c.accounts.len(), 1);
        assert!(c.dns.require_dnssec);
        let typo = toml::from_str::<Config>("data_dri = \"/x\"");
        assert!(typo.is_err());
    }
}
