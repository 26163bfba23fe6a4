//! Letterlock's local web page, for people who do not use a terminal:
//! status, contacts and their keys, verification by fingerprint or QR code,
//! key-change alerts and refused messages, and search over the archive.
//!
//! `gateway run` serves it on loopback ([`Page::serve`]); nothing is shown
//! before the person proves it is them with a one-time link from `gateway
//! web-link` (the link's token lives in the vault, so only someone who can
//! open the vault can make one). How every request is checked is
//! [`access`]: the Host header (DNS rebinding), the session cookie
//! (`HttpOnly`, `SameSite=Strict`), the Origin and a one-time CSRF token on
//! every change, and a Content-Security-Policy that allows nothing but this
//! page's own stylesheet. Pages are HTML rendered on the server with
//! [maud](https://maud.lambda.xyz) (text is escaped by construction) and
//! use no JavaScript.
//!
//! The page decides nothing itself: every change it offers is a
//! `keystore` function `keytool` calls too (`verify_fingerprint`,
//! `unverify`, `reject`, `forget`), and search is the archive's own.
//!
//! Written by hand because no crate does it: the session and CSRF store
//! (a few dozen lines over a map) and the QR code's SVG (from `qrcode`'s
//! module matrix).

pub mod access;
mod pages;
pub mod recent;
mod render;

use std::net::SocketAddr;
use std::sync::Arc;

use archive::Archive;
use keystore::Keystore;

pub use recent::{RecentWarnings, WarningLayer};

/// What the page shows about the gateway's configuration (the daemon
/// knows it; the page has no access to the configuration file).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub accounts: Vec<AccountFacts>,
    /// Listeners by name (`IMAP`, `SMTP`, `web page`) and address.
    pub listeners: Vec<(String, SocketAddr)>,
}

/// One account as configured.
#[derive(Debug, Clone)]
pub struct AccountFacts {
    pub address: String,
    pub policy: String,
    /// Where its IMAP and SMTP go, as a person reads it (`host:port (tls)`).
    pub imap: String,
    pub smtp: String,
}

/// Errors that stop the page from being served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the web page can listen only on loopback (127.0.0.1 or ::1), not {0}: it has no TLS")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the web page stopped: {0}")]
    Serve(std::io::Error),
}

/// Everything a request may need, shared by all of them.
#[derive(Clone)]
pub(crate) struct Shared {
    pub keystore: Keystore,
    pub archive: Archive,
    pub facts: Arc<Facts>,
    pub access: Arc<access::Access>,
    pub warnings: RecentWarnings,
}

/// The web page, bound and ready to serve.
pub struct Page {
    listener: tokio::net::TcpListener,
    shared: Shared,
}

impl Page {
    /// Binds `address`, which must be on loopback.
    pub async fn bind(
        address: SocketAddr,
        keystore: Keystore,
        archive: Archive,
        facts: Facts,
        warnings: RecentWarnings,
    ) -> Result<Self, WebError> {
        if !address.ip().is_loopback() {
            return Err(WebError::NotLoopback(address));
        }
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| WebError::Bind { address, source })?;
        Ok(Page {
            listener,
            shared: Shared {
                keystore,
                archive,
                facts: Arc::new(facts),
                access: Arc::new(access::Access::new()),
                warnings,
            },
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets requests in progress finish.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        let router = pages::router(self.shared);
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(WebError::Serve)
    }
}
