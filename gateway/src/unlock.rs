//! Getting the vault passphrase: `--passphrase-file`, `LETTERLOCK_PASSPHRASE`,
//! or a prompt on the terminal — and only when the vault needs one.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{anyhow, Context};
use keystore::Keystore;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// Opens the vault in `data_dir`.
pub async fn open(data_dir: &Path, passphrase_file: Option<&Path>) -> anyhow::Result<Keystore> {
    let needs = keystore::vault::needs_passphrase(data_dir)?;
    let passphrase = if needs {
        Some(passphrase(passphrase_file)?)
    } else {
        None
    };
    Ok(Keystore::open(data_dir, passphrase.as_ref()).await?)
}

/// The passphrase from a file, the environment or the terminal.
pub fn passphrase(file: Option<&Path>) -> anyhow::Result<SecretString> {
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the passphrase file {}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        return Ok(SecretString::from(line.to_string()));
    }
    if let Ok(p) = std::env::var("LETTERLOCK_PASSPHRASE") {
        return Ok(SecretString::from(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!(
            "the vault needs its passphrase: give it with --passphrase-file or LETTERLOCK_PASSPHRASE"
        ));
    }
    let p = rpassword::prompt_password("Vault passphrase: ")
        .context("reading the passphrase from the terminal")?;
    Ok(SecretString::from(p))
}

/// The provider password of an account: `LETTERLOCK_UPSTREAM_PASSWORD`, or a
/// prompt on the terminal. It is never written anywhere (SPEC.md).
pub fn upstream_password(account: &str, host: &str) -> anyhow::Result<SecretString> {
    if let Ok(p) = std::env::var("LETTERLOCK_UPSTREAM_PASSWORD") {
        return Ok(SecretString::from(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!(
            "{account} needs its password at {host}: set LETTERLOCK_UPSTREAM_PASSWORD or run on a terminal"
        ));
    }
    let p = rpassword::prompt_password(format!("Password for {account} at {host}: "))
        .context("reading the password from the terminal")?;
    Ok(SecretString::from(p))
}
