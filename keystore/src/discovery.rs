//! Key discovery: DNS OPENPGPKEY records (RFC 7929), then, where enabled,
//! the Web Key Directory ([`crate::wkd`]).
//!
//! Only DNS answers that DNSSEC validated are accepted unless the
//! configuration says `require_dnssec = false`: an unvalidated answer is as
//! good as one an attacker on the path made up. Answers — keys and "no
//! record" alike — are cached in the vault: DNS for its TTL, WKD for a day
//! (a key) or an hour (none). A failed WKD look-up is not cached and is
//! reported. Either way a key is kept only if it carries the address as a
//! user ID, and is recorded for that address only; a discovered key never
//! replaces a verified one (`effective_peer`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ResolverError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use sha2::{Digest, Sha256};

use crate::error::KeystoreError;
use crate::time::{from_db, to_db};
use crate::wkd::{WkdAnswer, WkdClient, WkdError};
use crate::{KeySource, Keystore};

/// Negative answers without an SOA are cached this long.
const DEFAULT_NEGATIVE_TTL: u32 = 300;
/// Upper bound on any cached answer.
const MAX_TTL: u32 = 86_400;
/// How long a WKD server's "no key here" (HTTP 404) is believed.
const WKD_NEGATIVE_TTL: u32 = 3_600;

/// Where and how to ask DNS.
#[derive(Debug, Clone, Default)]
pub struct DnsConfig {
    /// Name servers to ask; empty means the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// Accept only DNSSEC-validated answers (the default).
    pub require_dnssec: bool,
    /// A DNSSEC trust anchor file instead of the built-in root keys.
    pub trust_anchor: Option<PathBuf>,
}

/// The owner name of the OPENPGPKEY record for an address (RFC 7929 §3):
/// SHA2-256 of the local part, truncated to 28 octets, hex, under
/// `_openpgpkey.DOMAIN`. Returns `None` for an address without `@`.
pub fn openpgpkey_name(address: &str) -> Option<String> {
    let (local, domain) = address.trim().rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    let digest = Sha256::digest(local.as_bytes());
    Some(format!(
        "{}._openpgpkey.{}.",
        hex::encode(&digest[..28]),
        domain.trim_end_matches('.').to_ascii_lowercase()
    ))
}

/// Why a DNS key lookup (or setting up the resolver) failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("reading the system resolver configuration: {0}")]
    SystemConfig(#[source] NetError),
    #[error("reading the trust anchor {}: {source}", path.display())]
    TrustAnchor {
        path: PathBuf,
        #[source]
        source: hickory_resolver::proto::serialize::txt::ParseError,
    },
    #[error("setting up the resolver: {0}")]
    Resolver(#[source] NetError),
    #[error("{0} is not an email address")]
    NotAnAddress(String),
    #[error("the OPENPGPKEY answer for {address} is not DNSSEC-validated ({proof}); refusing it (set require_dnssec = false to accept unvalidated answers)")]
    NotValidated { address: String, proof: String },
    #[error("looking up {name}: {source}")]
    Lookup {
        name: String,
        #[source]
        source: NetError,
    },
}

/// What [`Discovery::discover`] found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The keys published for the address (each carries it as a user ID).
    pub certs: Vec<Cert>,
    /// Who answered with them: [`KeySource::Dns`] or [`KeySource::Wkd`];
    /// `None` when nobody had a key.
    pub source: Option<KeySource>,
    /// Keys a WKD server served for the address that do not carry it as a
    /// user ID: left out.
    pub ignored: usize,
    /// Why WKD could not be asked, when DNS had no key and WKD failed.
    pub wkd_failed: Option<WkdError>,
}

/// Key look-ups bound to the resolver settings; WKD only when enabled
/// ([`Discovery::with_wkd`]).
pub struct Discovery {
    resolver: TokioResolver,
    require_dnssec: bool,
    wkd: Option<WkdClient>,
}

impl Discovery {
    pub fn new(config: &DnsConfig) -> Result<Self, KeystoreError> {
        Ok(Discovery {
            resolver: resolver(config, config.require_dnssec)?,
            require_dnssec: config.require_dnssec,
            wkd: None,
        })
    }

    /// Also asks the Web Key Directory for an address DNS has no key for.
    pub fn with_wkd(mut self, client: WkdClient) -> Self {
        self.wkd = Some(client);
        self
    }

    /// Looks up the keys published for `address`: DNS, then WKD where
    /// enabled, answering from the cache while it is fresh. Accepted keys
    /// are recorded with the source that answered. A DNS failure is an
    /// error unless WKD finds a key; a WKD failure is reported in
    /// [`Discovered::wkd_failed`].
    pub async fn discover(
        &self,
        store: &Keystore,
        address: &str,
        now: SystemTime,
    ) -> Result<Discovered, KeystoreError> {
        let address = autocrypt::normalize_addr(address);
        // DNS first; its failure counts only if WKD finds nothing either.
        let dns = match self.discover_dns(store, &address, now).await {
            Ok(certs) if !certs.is_empty() => {
                return Ok(Discovered {
                    certs,
                    source: Some(KeySource::Dns),
                    ..Discovered::default()
                })
            }
            other => other.map(drop),
        };
        let mut found = Discovered::default();
        if let Some(wkd) = &self.wkd {
            match self.discover_wkd(wkd, store, &address, now).await {
                Ok((certs, ignored)) => {
                    found.ignored = ignored;
                    if !certs.is_empty() {
                        found.certs = certs;
                        found.source = Some(KeySource::Wkd);
                        return Ok(found);
                    }
                }
                Err(KeystoreError::Wkd(e)) => found.wkd_failed = Some(e),
                Err(e) => return Err(e),
            }
        }
        dns.map(|_| found)
    }

    /// The WKD step: the keys for the address and how many served keys
    /// were left out for not carrying it.
    async fn discover_wkd(
        &self,
        wkd: &WkdClient,
        store: &Keystore,
        address: &str,
        now: SystemTime,
    ) -> Result<(Vec<Cert>, usize), KeystoreError> {
        if let Some(cached) = store.cached(Cache::Wkd, address, now).await? {
            return Ok((cached, 0));
        }
        let ((certs, ignored), ttl) = match wkd.look_up(address).await? {
            None => return Ok((Vec::new(), 0)),
            Some(WkdAnswer::NotFound) => ((Vec::new(), 0), WKD_NEGATIVE_TTL),
            Some(WkdAnswer::Found(bytes)) => (keys_for(&bytes, address, now), MAX_TTL),
        };
        store
            .cache(
                Cache::Wkd,
                address,
                &certs,
                now + Duration::from_secs(u64::from(ttl)),
            )
            .await?;
        for cert in &certs {
            store
                .record_key_for(address, cert, KeySource::Wkd, now)
                .await?;
        }
        Ok((certs, ignored))
    }
}

/// The certificates in published key data (binary or armored) that carry
/// `address` as a user ID, and how many others it held: a key vouches only
/// for the addresses it names, whoever serves it.
fn keys_for(data: &[u8], address: &str, now: SystemTime) -> (Vec<Cert>, usize) {
    let (keys, others): (Vec<Cert>, Vec<Cert>) = CertParser::from_bytes(data)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .partition(|c| autocrypt::key::has_userid_for(c, address, now));
    (keys, others.len())
}

/// A resolver for the configured name servers (or the system's), DNSSEC
/// validation on or off.
pub(crate) fn resolver(config: &DnsConfig, validate: bool) -> Result<TokioResolver, KeystoreError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if config.nameservers.is_empty() {
        TokioResolver::builder(provider).map_err(DnsError::SystemConfig)?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let connections = [ProtocolConfig::Udp, ProtocolConfig::Tcp]
                    .into_iter()
                    .map(|p| {
                        let mut c = ConnectionConfig::new(p);
                        c.port = addr.port();
                        c
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            provider,
        )
    };
    if let Some(path) = &config.trust_anchor {
        // The resolver only honours anchors handed to the builder; a path
        // in its options is not read.
        let anchors = TrustAnchors::from_file(path).map_err(|source| DnsError::TrustAnchor {
            path: path.clone(),
            source,
        })?;
        builder = builder.with_trust_anchor(std::sync::Arc::new(anchors));
    }
    let options = builder.options_mut();
    options.validate = validate;
    options.attempts = 1;
    options.timeout = Duration::from_secs(5);
    Ok(builder.build().map_err(DnsError::Resolver)?)
}

impl Discovery {
    /// The DNS step (RFC 7929), cached for the answer's TTL.
    async fn discover_dns(
        &self,
        store: &Keystore,
        address: &str,
        now: SystemTime,
    ) -> Result<Vec<Cert>, KeystoreError> {
        let address = address.to_string();
        if let Some(cached) = store.cached(Cache::Dns, &address, now).await? {
            return Ok(cached);
        }
        let name =
            openpgpkey_name(&address).ok_or_else(|| DnsError::NotAnAddress(address.clone()))?;
        let (certs, ttl) = match self
            .resolver
            .lookup(name.as_str(), RecordType::OPENPGPKEY)
            .await
        {
            Ok(lookup) => {
                let mut certs = Vec::new();
                let mut ttl = MAX_TTL;
                for record in lookup.answers() {
                    let RData::OPENPGPKEY(key) = &record.data else {
                        continue;
                    };
                    if self.require_dnssec && record.proof != Proof::Secure {
                        return Err(DnsError::NotValidated {
                            address,
                            proof: record.proof.to_string(),
                        }
                        .into());
                    }
                    ttl = ttl.min(record.ttl);
                    certs.extend(keys_for(&key.public_key, &address, now).0);
                }
                (certs, ttl)
            }
            Err(NetError::Dns(ResolverError::NoRecordsFound(no))) => (
                Vec::new(),
                no.negative_ttl.unwrap_or(DEFAULT_NEGATIVE_TTL).min(MAX_TTL),
            ),
            Err(source) => return Err(DnsError::Lookup { name, source }.into()),
        };
        store
            .cache(
                Cache::Dns,
                &address,
                &certs,
                now + Duration::from_secs(u64::from(ttl)),
            )
            .await?;
        for cert in &certs {
            store
                .record_key_for(&address, cert, KeySource::Dns, now)
                .await?;
        }
        Ok(certs)
    }
}

/// Which answers a cache row holds.
#[derive(Debug, Clone, Copy)]
enum Cache {
    Dns,
    Wkd,
}

impl Cache {
    fn table(self) -> &'static str {
        match self {
            Cache::Dns => "dns_cache",
            Cache::Wkd => "wkd_cache",
        }
    }
}

impl Keystore {
    async fn cached(
        &self,
        cache: Cache,
        address: &str,
        now: SystemTime,
    ) -> Result<Option<Vec<Cert>>, KeystoreError> {
        let sql = format!(
            "SELECT certs, expires FROM {} WHERE address = ?",
            cache.table()
        );
        let row: Option<(Option<Vec<u8>>, i64)> = sqlx::query_as(&sql)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some((certs, expires)) if from_db(expires) > now => Ok(Some(match certs {
                Some(bytes) => CertParser::from_bytes(&bytes)?
                    .filter_map(Result::ok)
                    .collect(),
                None => Vec::new(),
            })),
            _ => Ok(None),
        }
    }

    async fn cache(
        &self,
        cache: Cache,
        address: &str,
        certs: &[Cert],
        expires: SystemTime,
    ) -> Result<(), KeystoreError> {
        let bytes = if certs.is_empty() {
            None
        } else {
            let mut all = Vec::new();
            for c in certs {
                all.extend(c.to_vec()?);
            }
            Some(all)
        };
        let sql = format!(
            "INSERT INTO {} (address, certs, expires) VALUES (?, ?, ?)
             ON CONFLICT (address) DO UPDATE SET certs = excluded.certs, expires = excluded.expires",
            cache.table()
        );
        sqlx::query(&sql)
            .bind(address)
            .bind(bytes)
            .bind(to_db(expires))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_name_follows_rfc_7929() {
        // RFC 7929 §3 example: hugh@example.com.
        assert_eq!(
            openpgpkey_name("hugh@example.com").as_deref(),
            Some(
                "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._openpgpkey.example.com."
            )
        );
        assert_eq!(openpgpkey_name("no-at-sign"), None);
    }
}
