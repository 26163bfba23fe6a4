//! What the proxy's integration tests share: a proxy running in the test's
//! own runtime, in front of a real Dovecot (or any IMAP server).

// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use archive::Archive;
use autocrypt::PreferEncrypt;
use imap_proxy::proxy::{AccountConfig, Config, Proxy};
use imap_proxy::upstream::{Endpoint, Security};
use keystore::{Keystore, Unlock};
use sequoia_openpgp::Cert;
use testbed::Dovecot;

/// A proxy listening on loopback without TLS; stopped by [`Running::stop`]
/// or when dropped.
pub struct Running {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the proxy and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `address`, logging in as `username`, at `dovecot` over implicit TLS.
pub fn account_at(dovecot: &Dovecot, address: &str, username: &str) -> AccountConfig {
    AccountConfig {
        address: address.into(),
        username: username.into(),
        provider: Endpoint {
            host: "localhost".into(),
            port: dovecot.imaps_port,
            security: Security::Tls,
            ca_file: Some(dovecot.ca_file.clone()),
            pinned: None,
        },
    }
}

/// Binds and runs a proxy for `accounts`.
pub async fn start(
    accounts: Vec<AccountConfig>,
    provider_timeout: Duration,
    store: &Keystore,
    archive: &Archive,
) -> Running {
    let proxy = Proxy::bind(
        Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: None,
            provider_timeout,
            accounts,
        },
        store.clone(),
        archive.clone(),
    )
    .await
    .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(proxy.run(
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(1),
    ));
    Running {
        port,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Runs a Python `script` with `args`; its standard output, once it has
/// succeeded.
pub fn python(script: &str, args: &[&str]) -> Vec<u8> {
    testbed::python::run(script, args, b"")
}

/// `inner` signed by `sender` and encrypted to `recipient` (mailcrypt, as
/// a real peer would), PGP/MIME.
pub fn sealed(
    sender: &sequoia_openpgp::Cert,
    recipient: &sequoia_openpgp::Cert,
    inner: &[u8],
) -> Vec<u8> {
    mailcrypt::encrypt(
        inner,
        &mailcrypt::EncryptRequest {
            pad: false,
            ..mailcrypt::EncryptRequest::new(
                sender,
                &[recipient.clone().strip_secret_key_material()],
            )
        },
    )
    .expect("encrypt")
}

/// A fresh vault in `dir` (a key file, no passphrase) holding `address`'s
/// own key, made at `at`: where most tests start.
pub async fn vault_with_identity(dir: &Path, address: &str, at: SystemTime) -> (Keystore, Cert) {
    let store = Keystore::create(dir, Unlock::KeyFile).await.expect("vault");
    let key = autocrypt::key::generate(address, at).expect("key");
    store
        .put_identity(address, &key, PreferEncrypt::Mutual, at)
        .await
        .expect("identity");
    (store, key)
}
