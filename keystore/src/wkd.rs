//! Key discovery by the Web Key Directory (draft-koch-openpgp-webkey-service):
//! an HTTPS GET of `…/hu/<z-base-32 of SHA-1 of the lower-cased local part>`.
//!
//! The advanced method asks `openpgpkey.DOMAIN` under
//! `/.well-known/openpgpkey/DOMAIN/hu/…`; the direct method asks `DOMAIN`
//! under `/.well-known/openpgpkey/hu/…`, and only when the `openpgpkey`
//! sub-domain does not exist (the draft's rule: a sub-domain that exists
//! but fails is a failure, not a reason to ask elsewhere). What vouches for
//! the answer is the server's WebPKI certificate, so host names are looked
//! up without requiring DNSSEC. Redirects are not followed.
//!
//! The request is one HTTP/1.1 exchange on hyper's client connection over
//! tokio-rustls, with the vault's resolver doing the look-ups (so `[dns]
//! nameservers` applies here too); no HTTP client with its own resolver
//! and connection pool is needed for one request per unknown recipient.
//! z-base-32 is written by hand: it is twelve lines, and no maintained
//! crate offers it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::net::{DnsError as ResolverError, NetError};
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha1::{Digest as _, Sha1};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::{DnsConfig, KeystoreError};

/// The most a key answer may be (a certificate with many signatures is
/// tens of KiB; more is not a key).
const MAX_ANSWER: usize = 1024 * 1024;

/// How long one whole WKD look-up may take (host look-up, connection, TLS,
/// answer): a recipient's server that hangs must not hold a message up.
pub const WKD_PATIENCE: Duration = Duration::from_secs(8);

/// The z-base-32 alphabet (RFC 6189 §5.1.6).
const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// The WKD hash of a local part: z-base-32 of the SHA-1 of its ASCII
/// lower-case form (32 characters).
pub fn wkd_hash(local: &str) -> String {
    let digest = Sha1::digest(local.to_ascii_lowercase().as_bytes());
    let mut out = String::with_capacity(32);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in digest {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ZBASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ZBASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Where one method looks for an address's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WkdUrl {
    pub host: String,
    /// Path and query, as sent.
    pub path: String,
}

impl std::fmt::Display for WkdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}{}", self.host, self.path)
    }
}

/// The advanced and the direct method's URLs for an address, or `None` if
/// it is not one.
pub fn wkd_urls(address: &str) -> Option<(WkdUrl, WkdUrl)> {
    let (local, domain) = address.trim().rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty() || domain.is_empty() || !domain.bytes().all(is_host_byte) {
        return None;
    }
    let hash = wkd_hash(local);
    let query = encode_uri_component(local);
    Some((
        WkdUrl {
            host: format!("openpgpkey.{domain}"),
            path: format!("/.well-known/openpgpkey/{domain}/hu/{hash}?l={query}"),
        },
        WkdUrl {
            host: domain,
            path: format!("/.well-known/openpgpkey/hu/{hash}?l={query}"),
        },
    ))
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// RFC 3986 percent-encoding of everything but unreserved characters: the
/// WKD query here, and the query values and URIs other crates write (the web
/// page's links, the Thunderbird profile's folder URIs).
pub fn encode_uri_component(s: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// Why a WKD look-up gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum WkdError {
    #[error("looking up {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: NetError,
    },
    #[error("{host} has no address to connect to")]
    NoAddress { host: String },
    #[error("connecting to {host}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} is not a name a TLS certificate can be checked for")]
    Name { host: String },
    #[error("the TLS handshake with {host} failed (its certificate is not trusted, or it does not speak TLS)")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP with {host} failed")]
    Http {
        host: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the answer of {url} is larger than {} KiB; not a key", MAX_ANSWER / 1024)]
    TooLarge { url: String },
    #[error("{host} did not answer within {} s", WKD_PATIENCE.as_secs())]
    Timeout { host: String },
}

/// What a WKD server said about an address.
#[derive(Debug)]
pub enum WkdAnswer {
    /// The key data it serves (binary or armored).
    Found(Bytes),
    /// It has no key for the address (HTTP 404).
    NotFound,
}

/// A WKD client: the TLS settings to check servers with and the resolver
/// to find them.
#[derive(Clone)]
pub struct WkdClient {
    tls: Arc<ClientConfig>,
    resolver: TokioResolver,
    /// The port servers are asked on: 443, as the draft says; tests serve
    /// their directory elsewhere.
    port: u16,
}

impl WkdClient {
    /// A client that checks servers' certificates with `tls` and finds them
    /// through the configured name servers (without requiring DNSSEC: the
    /// certificate is what vouches for the server).
    pub fn new(tls: Arc<ClientConfig>, dns: &DnsConfig) -> Result<Self, KeystoreError> {
        Ok(WkdClient {
            tls,
            resolver: crate::discovery::resolver(dns, false)?,
            port: 443,
        })
    }

    /// Asks servers on another port than 443 (a test's directory).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Looks an address up, advanced method first, within [`WKD_PATIENCE`].
    pub async fn look_up(&self, address: &str) -> Result<Option<WkdAnswer>, WkdError> {
        let Some((advanced, direct)) = wkd_urls(address) else {
            return Ok(None);
        };
        let host = advanced.host.clone();
        tokio::time::timeout(WKD_PATIENCE, async {
            let (url, addresses) = match self.addresses(&advanced.host).await? {
                Some(found) => (advanced, found),
                None => match self.addresses(&direct.host).await? {
                    Some(found) => (direct, found),
                    None => {
                        return Err(WkdError::NoAddress {
                            host: direct.host.clone(),
                        })
                    }
                },
            };
            self.get(&url, &addresses).await.map(Some)
        })
        .await
        .map_err(|_| WkdError::Timeout { host })?
    }

    /// The addresses of a host; `None` if the name does not exist (or has
    /// no address records).
    async fn addresses(&self, host: &str) -> Result<Option<Vec<SocketAddr>>, WkdError> {
        // A fully qualified name: no search domains of the system's.
        match self.resolver.lookup_ip(format!("{host}.")).await {
            Ok(ips) => Ok(Some(
                ips.iter()
                    .map(|ip| SocketAddr::new(ip, self.port))
                    .collect(),
            )),
            Err(NetError::Dns(ResolverError::NoRecordsFound(_))) => Ok(None),
            Err(source) => Err(WkdError::Resolve {
                host: host.to_string(),
                source,
            }),
        }
    }

    /// One GET over one connection to the first address that answers.
    async fn get(&self, url: &WkdUrl, addresses: &[SocketAddr]) -> Result<WkdAnswer, WkdError> {
        let host = url.host.clone();
        // The path and host were checked when the URL was made.
        let request = hyper::Request::get(url.path.as_str())
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::USER_AGENT, "letterlock")
            .body(Empty::<Bytes>::new())
            .map_err(|_| WkdError::Name { host: host.clone() })?;
        let mut last = None;
        let mut tcp = None;
        for address in addresses {
            match tokio::net::TcpStream::connect(address).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(tcp) = tcp else {
            return Err(match last {
                Some(source) => WkdError::Connect { host, source },
                None => WkdError::NoAddress { host },
            });
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|_| WkdError::Name { host: host.clone() })?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|source| WkdError::Tls {
                host: host.clone(),
                source,
            })?;
        let http = |source| WkdError::Http {
            host: host.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        // Drives the connection while the request runs; ends with it.
        let driving = tokio::spawn(connection);
        let answer = async {
            let response = sender.send_request(request).await.map_err(http)?;
            match response.status().as_u16() {
                200 => {}
                404 => return Ok(WkdAnswer::NotFound),
                status => {
                    return Err(WkdError::Status {
                        url: url.to_string(),
                        status,
                    })
                }
            }
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(e) => http(*e),
                    Err(_) => WkdError::TooLarge {
                        url: url.to_string(),
                    },
                })?;
            Ok(WkdAnswer::Found(body.to_bytes()))
        }
        .await;
        driving.abort();
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_urls_follow_the_draft() {
        // draft-koch-openpgp-webkey-service, section 3.1.
        assert_eq!(wkd_hash("Joe.Doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
        let (advanced, direct) = wkd_urls("Joe.Doe@Example.ORG").expect("an address");
        assert_eq!(
            advanced.to_string(),
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert_eq!(
            direct.to_string(),
            "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
    }

    #[test]
    fn odd_addresses_are_encoded_or_refused() {
        let (_, direct) = wkd_urls("a b+c@example.org").expect("an address");
        assert!(direct.path.ends_with("?l=a%20b%2Bc"), "{}", direct.path);
        assert_eq!(wkd_urls("no-at-sign"), None);
        assert_eq!(wkd_urls("x@exa/mple.org"), None);
        assert_eq!(wkd_urls("@example.org"), None);
        assert_eq!(wkd_urls("x@"), None);
    }
}
