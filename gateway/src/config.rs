//! The configuration file (`gateway.toml`, SPEC.md "Config") and where it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

/// The whole configuration. Unknown keys are errors, so a typo does not
/// silently fall back to a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    /// STARTTLS on the local listeners (certificate kept in the vault). Off
    /// by default: on loopback the connection never leaves the machine. A
    /// listener on any other address needs it.
    #[serde(default)]
    pub local_tls: bool,
    #[serde(default)]
    pub imap: Listener,
    #[serde(default)]
    pub smtp: Listener,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub discovery: DiscoverySettings,
    #[serde(default)]
    pub web: WebSettings,
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

/// The local web page (contacts, verification, alerts, search).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// On by default: it shows nothing until someone who can open the
    /// vault asks `gateway web-link` for a login link, it listens on
    /// loopback only, and it is how people who do not use a terminal see
    /// key changes and refused messages at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Loopback only (the page has no TLS). Default 127.0.0.1:1180.
    pub listen: Option<SocketAddr>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            enabled: true,
            listen: None,
        }
    }
}

/// Key look-ups beyond DNS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// Web Key Directory look-ups for recipients without a key. Off by
    /// default: each asks the recipient's domain over HTTPS for a key,
    /// which tells that server whom the user is writing to.
    #[serde(default)]
    pub wkd: bool,
    /// An extra trust anchor (PEM) for WKD servers of a private CA.
    pub ca_file: Option<PathBuf>,
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
    #[serde(default)]
    pub policy: Policy,
    pub imap: Upstream,
    pub smtp: Upstream,
    pub ca_file: Option<PathBuf>,
    /// The provider certificate trusted by its SHA-256 fingerprint (a
    /// self-signed home server), for IMAP and SMTP alike.
    pub provider_cert_sha256: Option<ProviderPin>,
}

impl Account {
    /// The login name at the provider and on the local side.
    pub fn username(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.address)
    }

    /// Where and how the proxies reach the provider's IMAP server.
    /// Where its IMAP goes, as a person reads it: `host:port (security)`.
    pub fn imap_description(&self) -> String {
        self.imap.description()
    }

    /// Where its SMTP goes, likewise.
    pub fn smtp_description(&self) -> String {
        self.smtp.description()
    }

    pub fn imap_endpoint(&self) -> net_edge::Endpoint {
        self.endpoint(&self.imap)
    }

    /// Where and how the proxies reach the provider's SMTP server.
    pub fn smtp_endpoint(&self) -> net_edge::Endpoint {
        self.endpoint(&self.smtp)
    }

    fn endpoint(&self, upstream: &Upstream) -> net_edge::Endpoint {
        net_edge::Endpoint {
            host: upstream.host.clone(),
            port: upstream.port,
            security: upstream.security.into(),
            ca_file: self.ca_file.clone(),
            pinned: self.provider_cert_sha256.map(|pin| pin.0),
        }
    }
}

/// `provider_cert_sha256`: a fingerprint as openssl prints it (colons
/// optional); a malformed one is an error when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPin(pub net_edge::CertificateFingerprint);

impl Serialize for ProviderPin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for ProviderPin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map(ProviderPin)
            .map_err(serde::de::Error::custom)
    }
}

/// When outgoing mail is encrypted (SPEC.md; `smtp_proxy::decision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Opportunistic,
    Mutual,
    Required,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Opportunistic => "opportunistic",
            Policy::Mutual => "mutual",
            Policy::Required => "required",
        }
    }
}

impl From<Policy> for smtp_proxy::decision::Policy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Opportunistic => smtp_proxy::decision::Policy::Opportunistic,
            Policy::Mutual => smtp_proxy::decision::Policy::Mutual,
            Policy::Required => smtp_proxy::decision::Policy::Required,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

impl Upstream {
    fn description(&self) -> String {
        format!("{}:{} ({})", self.host, self.port, self.security.as_str())
    }
}

/// How a provider connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (IMAP 993, SMTP 465)
    Tls,
    /// STARTTLS, required (IMAP 143, SMTP 587)
    Starttls,
    /// No TLS: only for a provider on the same machine
    Plain,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::Plain => "plain",
        }
    }
}

/// The same setting as the proxies take it (one type for both sides).
impl From<Security> for imap_proxy::upstream::Security {
    fn from(s: Security) -> Self {
        match s {
            Security::Tls => Self::Tls,
            Security::Starttls => Self::StartTls,
            Security::Plain => Self::Plain,
        }
    }
}

/// The default listeners (SPEC.md).
pub const DEFAULT_IMAP_LISTEN: &str = "127.0.0.1:1143";
pub const DEFAULT_SMTP_LISTEN: &str = "127.0.0.1:1587";
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:1180";

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
    /// The configuration at `explicit` (`--config`) or the default path,
    /// which must exist: the commands that need an account say how to make
    /// one. Returns the path too, for messages that name it.
    pub fn load_existing(explicit: Option<&Path>) -> anyhow::Result<(PathBuf, Self)> {
        let path = path(explicit)?;
        if !path.exists() {
            bail!(
                "there is no configuration at {}: create it with `gateway init --address ADDR \
                 --imap HOST:PORT --smtp HOST:PORT`",
                path.display()
            );
        }
        let config = Self::load(&path)?;
        Ok((path, config))
    }

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

    /// The IMAP listener's address.
    pub fn imap_listen(&self) -> SocketAddr {
        self.imap
            .listen
            .unwrap_or_else(|| default_listen(DEFAULT_IMAP_LISTEN, 1143))
    }

    /// The SMTP listener's address.
    pub fn smtp_listen(&self) -> SocketAddr {
        self.smtp
            .listen
            .unwrap_or_else(|| default_listen(DEFAULT_SMTP_LISTEN, 1587))
    }

    /// The web page's address.
    pub fn web_listen(&self) -> SocketAddr {
        self.web
            .listen
            .unwrap_or_else(|| default_listen(DEFAULT_WEB_LISTEN, 1180))
    }

    /// The account a name or address refers to.
    pub fn account(&self, address: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| autocrypt::addr_eq(&a.address, address))
    }

    /// The whole file as `gateway init` writes it: every setting with a
    /// comment saying what it does. (A serializer would drop comments.)
    pub fn to_commented_toml(&self) -> anyhow::Result<String> {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let path_q = |p: &Path| q(&p.to_string_lossy());
        let mut out = String::from(
            "# Letterlock gateway configuration, written by `gateway init`.\n\
             # Reference: SPEC.md \"Config\". Unknown keys are errors.\n\n",
        );
        out += "# Where the vault (keys) and the archive live.\n";
        match &self.data_dir {
            Some(d) => out += &format!("data_dir = {}\n", path_q(d)),
            None => out += "# data_dir = \"~/.local/share/letterlock\"   # default: $XDG_DATA_HOME/letterlock\n",
        }
        out += "# STARTTLS on the local listeners (needed to listen on anything but loopback).\n";
        out += &format!("local_tls = {}\n\n", self.local_tls);
        out += "# Where the mail client connects.\n[imap]\n";
        out += &format!(
            "listen = {}\n\n[smtp]\n",
            q(&self.imap_listen().to_string())
        );
        out += &format!("listen = {}\n\n", q(&self.smtp_listen().to_string()));
        out += "# DNS OPENPGPKEY look-ups for recipients without a key.\n[dns]\n";
        out += "nameservers = [";
        out += &self
            .dns
            .nameservers
            .iter()
            .map(|n| q(&n.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        out += "]            # empty: the system resolver\n";
        out += &format!("require_dnssec = {}\n", self.dns.require_dnssec);
        if let Some(anchor) = &self.dns.trust_anchor {
            out += &format!("trust_anchor = {}\n", path_q(anchor));
        }
        out += "\n# Web Key Directory look-ups (HTTPS to the recipient's domain) for recipients\n\
                # that DNS has no key for. Off by default: the domain learns whom you write to.\n\
                [discovery]\n";
        out += &format!("wkd = {}\n", self.discovery.wkd);
        if let Some(ca) = &self.discovery.ca_file {
            out += &format!("ca_file = {}\n", path_q(ca));
        }
        out += "\n# The local web page: contacts, fingerprints to compare, key-change alerts,\n\
                # refused messages, search. Loopback only; `gateway web-link` prints a login link.\n\
                [web]\n";
        out += &format!("enabled = {}\n", self.web.enabled);
        match self.web.listen {
            Some(listen) => out += &format!("listen = {}\n", q(&listen.to_string())),
            None => {
                out += &format!(
                    "# listen = {}   # the default; if another program has it, the gateway runs without the page\n",
                    q(DEFAULT_WEB_LISTEN)
                )
            }
        }
        for a in &self.accounts {
            out += &account_toml(a);
        }
        self.check_reads_back(&out)?;
        Ok(out)
    }

    /// The file's new text. Without a file yet: the commented template.
    /// With one: that file edited in place (toml_edit), so what the person
    /// wrote there — comments, settings, order — stays, and only what
    /// `gateway init` adds changes: new accounts (each with its comments)
    /// and a `data_dir` the file did not name.
    pub fn updated_toml(&self, existing: Option<&str>) -> anyhow::Result<String> {
        let Some(existing) = existing else {
            return self.to_commented_toml();
        };
        let mut doc: toml_edit::DocumentMut = existing
            .parse()
            .context("the configuration is not valid TOML")?;
        if let Some(dir) = &self.data_dir {
            if !doc.contains_key("data_dir") {
                doc.insert("data_dir", toml_edit::value(dir.to_string_lossy().as_ref()));
            }
        }
        let listed: Vec<String> = doc
            .get("account")
            .and_then(toml_edit::Item::as_array_of_tables)
            .map(|tables| {
                tables
                    .iter()
                    .filter_map(|t| t.get("address").and_then(|v| v.as_str()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut position = last_table_position(&doc);
        for account in &self.accounts {
            if listed
                .iter()
                .any(|l| autocrypt::addr_eq(l, &account.address))
            {
                continue;
            }
            let one: toml_edit::DocumentMut = account_toml(account)
                .parse()
                .context("the new account's settings are not valid TOML")?;
            let mut table = one
                .get("account")
                .and_then(toml_edit::Item::as_array_of_tables)
                .and_then(|tables| tables.get(0))
                .cloned()
                .context("the new account's settings hold no [[account]]")?;
            // After everything the file holds, not where it stood in its
            // own little document.
            position += 1;
            table.set_position(position);
            let accounts = doc
                .entry("account")
                .or_insert(toml_edit::Item::ArrayOfTables(Default::default()));
            match accounts.as_array_of_tables_mut() {
                Some(accounts) => accounts.push(table),
                None => anyhow::bail!(
                    "`account` in the configuration is not a list of [[account]] tables; fix the file first"
                ),
            }
        }
        let out = doc.to_string();
        self.check_reads_back(&out)?;
        Ok(out)
    }

    /// What is written must read back as the same accounts.
    fn check_reads_back(&self, text: &str) -> anyhow::Result<()> {
        let back: Config =
            toml::from_str(text).context("the written configuration does not parse")?;
        anyhow::ensure!(
            back.accounts.len() == self.accounts.len()
                && back
                    .accounts
                    .iter()
                    .zip(&self.accounts)
                    .all(|(b, a)| autocrypt::addr_eq(&b.address, &a.address)),
            "the written configuration lost or reordered accounts"
        );
        Ok(())
    }

    /// Writes the file (0600: it names the accounts), creating its directory.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the configuration {}", path.display()))
            }
        };
        let text = self.updated_toml(existing.as_deref())?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the directory {}", dir.display()))?;
        }
        let partial = path.with_extension("toml.partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("writing {}", partial.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("replacing the configuration {}", path.display()))?;
        Ok(())
    }

    /// Key discovery as configured: DNS, and WKD where `[discovery] wkd`.
    pub fn key_discovery(&self) -> anyhow::Result<keystore::Discovery> {
        let dns = self.dns_config();
        let discovery = keystore::Discovery::new(&dns)?;
        if !self.discovery.wkd {
            return Ok(discovery);
        }
        let tls = net_edge::client_config(self.discovery.ca_file.as_deref(), None)
            .context("setting up TLS for WKD look-ups ([discovery] ca_file)")?;
        Ok(discovery.with_wkd(keystore::WkdClient::new(tls, &dns)?))
    }

    pub fn dns_config(&self) -> keystore::DnsConfig {
        keystore::DnsConfig {
            nameservers: self.dns.nameservers.clone(),
            require_dnssec: self.dns.require_dnssec,
            trust_anchor: self.dns.trust_anchor.clone(),
        }
    }
}

/// One `[[account]]` table with its comments.
fn account_toml(a: &Account) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::from("\n[[account]]\n");
    out += &format!("address = {}\n", q(&a.address));
    out += &format!(
        "username = {}   # login name at the provider and on the local side\n",
        q(a.username())
    );
    out += &format!(
        "policy = {}   # opportunistic | mutual | required\n",
        q(a.policy.as_str())
    );
    // Before the provider lines, so that the comment belongs to this table
    // (a comment after a table's last key belongs to whatever follows).
    match &a.ca_file {
        Some(ca) => out += &format!("ca_file = {}\n", q(&ca.to_string_lossy())),
        None => {
            out += "# ca_file = \"/path/ca.pem\"   # extra trust anchor for a private provider\n"
        }
    }
    match &a.provider_cert_sha256 {
        Some(pin) => {
            out += &format!(
                "provider_cert_sha256 = {}   # the provider's certificate, trusted by its fingerprint\n",
                q(&pin.0.to_string())
            )
        }
        None => {
            out += "# provider_cert_sha256 = \"AB:CD:…\"   # pinned provider certificate (self-signed home servers)\n"
        }
    }
    for (name, u) in [("imap", &a.imap), ("smtp", &a.smtp)] {
        out += &format!(
            "{name} = {{ host = {}, port = {}, security = {} }}\n",
            q(&u.host),
            u.port,
            q(u.security.as_str())
        );
    }
    out
}

/// The highest position of a table in the file (toml_edit renders tables
/// in that order).
fn last_table_position(doc: &toml_edit::DocumentMut) -> usize {
    doc.iter()
        .flat_map(|(_, item)| match item {
            toml_edit::Item::Table(t) => vec![t.position()],
            toml_edit::Item::ArrayOfTables(tables) => tables.iter().map(|t| t.position()).collect(),
            _ => Vec::new(),
        })
        .flatten()
        .max()
        .unwrap_or(0)
}

fn default_listen(text: &str, port: u16) -> SocketAddr {
    text.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], port)))
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
[web]
listen = "127.0.0.1:1180"
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
        assert!(c.web.enabled);
        assert_eq!(c.web_listen().to_string(), DEFAULT_WEB_LISTEN);
        let typo = toml::from_str::<Config>("data_dri = \"/x\"");
        assert!(typo.is_err());
    }

    #[test]
    fn the_contrib_sample_is_valid() {
        let c: Config = toml::from_str(include_str!("../../contrib/gateway.toml"))
            .expect("contrib/gateway.toml");
        assert_eq!(c.accounts.len(), 1);
        assert_eq!(c.imap_listen().to_string(), DEFAULT_IMAP_LISTEN);
    }

    #[test]
    fn a_bad_value_is_named_with_its_line() {
        let text = "[[account]]\naddress = \"a@example.org\"\n\
            imap = { host = \"h\", port = 993, security = \"tsl\" }\n\
            smtp = { host = \"h\", port = 465, security = \"tls\" }\n";
        let e = toml::from_str::<Config>(text).expect_err("tsl").to_string();
        assert!(e.contains("line 3") && e.contains("tsl"), "{e}");
    }

    /// Alice at a provider with implicit TLS for both.
    fn alice() -> Account {
        Account {
            address: "alice@example.org".into(),
            username: None,
            policy: Policy::Opportunistic,
            imap: Upstream {
                host: "imap.example.org".into(),
                port: 993,
                security: Security::Tls,
            },
            smtp: Upstream {
                host: "smtp.example.org".into(),
                port: 465,
                security: Security::Tls,
            },
            ca_file: None,
            provider_cert_sha256: None,
        }
    }

    #[test]
    fn the_commented_file_reads_back() {
        let mut c = Config {
            data_dir: Some("/data/letter \"lock\"".into()),
            ..Config::default()
        };
        c.accounts.push(Account {
            username: Some("alice".into()),
            policy: Policy::Mutual,
            smtp: Upstream {
                host: "smtp.example.org".into(),
                port: 587,
                security: Security::Starttls,
            },
            ca_file: Some("/etc/ca.pem".into()),
            provider_cert_sha256: Some(ProviderPin(net_edge::CertificateFingerprint::of(b"cert"))),
            ..alice()
        });
        let text = c.to_commented_toml().expect("written");
        assert!(
            text.contains("# opportunistic | mutual | required"),
            "{text}"
        );
        let back: Config = toml::from_str(&text).expect("reads back");
        assert_eq!(back.data_dir, c.data_dir);
        assert_eq!(back.accounts[0].username(), "alice");
        assert_eq!(back.accounts[0].policy, Policy::Mutual);
        assert_eq!(back.accounts[0].smtp.security, Security::Starttls);
        assert_eq!(
            back.accounts[0].provider_cert_sha256,
            c.accounts[0].provider_cert_sha256
        );
        assert_eq!(back.imap_listen().to_string(), DEFAULT_IMAP_LISTEN);
        let bad = text.replace("provider_cert_sha256 = \"", "provider_cert_sha256 = \"ZZ");
        let e = toml::from_str::<Config>(&bad).unwrap_err().to_string();
        assert!(e.contains("not a SHA-256 certificate fingerprint"), "{e}");
    }

    #[test]
    fn a_second_account_keeps_what_the_person_wrote() {
        let mut c = Config::default();
        c.accounts.push(alice());
        let first = c.to_commented_toml().expect("written");
        // The person edits the file: a comment of their own, another port.
        let edited = first.replace(
            "[imap]\nlisten = \"127.0.0.1:1143\"",
            "[imap]\n# moved: 1143 is taken here\nlisten = \"127.0.0.1:2143\"",
        );
        assert_ne!(edited, first, "the template changed; adjust the test");
        let mut c: Config = toml::from_str(&edited).expect("still valid");
        c.data_dir = Some("/data/letterlock".into());
        let mut bob = c.accounts[0].clone();
        bob.address = "bob@example.org".into();
        c.accounts.push(bob);
        let second = c.updated_toml(Some(&edited)).expect("updated");
        // The listeners and DNS as the person left them, byte for byte.
        let start = edited
            .find("# Where the mail client connects.")
            .expect("listeners");
        let end = edited.find("[[account]]").expect("one account");
        assert!(second.contains(edited[start..end].trim_end()), "{second}");
        assert!(
            second.contains("# moved: 1143 is taken here\nlisten = \"127.0.0.1:2143\""),
            "{second}"
        );
        assert!(
            second.contains("# opportunistic | mutual | required"),
            "{second}"
        );
        let back: Config = toml::from_str(&second).expect("reads back");
        assert_eq!(back.imap_listen().to_string(), "127.0.0.1:2143");
        assert_eq!(
            back.data_dir.as_deref(),
            Some(Path::new("/data/letterlock"))
        );
        let addresses: Vec<_> = back.accounts.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(addresses, ["alice@example.org", "bob@example.org"]);
        assert_eq!(second.matches("# ca_file = ").count(), 2, "{second}");
        // Alice's table is where it was, Bob's after it.
        assert!(second.find("alice@example.org") < second.find("bob@example.org"));
    }
}
