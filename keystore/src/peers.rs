//! Peers: Autocrypt state, key history, trust decisions and key events.

use std::time::SystemTime;

use autocrypt::{normalize_addr, Incoming, PeerChange, PeerState, PreferEncrypt};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use serde::Serialize;
use sqlx::{Sqlite, Transaction};

use crate::error::KeystoreError;
use crate::time::{from_db, to_db};
use crate::Keystore;

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    Autocrypt,
    Gossip,
    Dns,
    Import,
    SetupMessage,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Autocrypt => "autocrypt",
            KeySource::Gossip => "gossip",
            KeySource::Dns => "dns",
            KeySource::Import => "import",
            KeySource::SetupMessage => "setup-message",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "gossip" => KeySource::Gossip,
            "dns" => KeySource::Dns,
            "import" => KeySource::Import,
            "setup-message" => KeySource::SetupMessage,
            _ => KeySource::Autocrypt,
        }
    }
}

/// How far one (address, key) is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustLevel {
    /// Trust on first use: learned, never checked by the user.
    Tofu,
    /// The user compared the fingerprint (`keytool verify`).
    Verified,
    /// The user said this key is not the peer's. It is never used.
    Rejected,
}

impl TrustLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Tofu => "tofu",
            TrustLevel::Verified => "verified",
            TrustLevel::Rejected => "rejected",
        }
    }
}

/// What the key in an incoming message means, for the status header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// No Autocrypt key in the message.
    None,
    /// The peer's key as before (or the first one), trust on first use.
    Tofu,
    /// The key the user verified.
    Verified,
    /// An unverified peer's key changed with this message.
    Changed,
    /// A key different from the verified one: stored, not used.
    Conflict,
    /// A key the user rejected.
    Rejected,
    /// The message was older than what we know; nothing was learned.
    Stale,
}

impl KeyStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyStatus::None => "none",
            KeyStatus::Tofu => "tofu",
            KeyStatus::Verified => "verified",
            KeyStatus::Changed => "changed",
            KeyStatus::Conflict => "conflict",
            KeyStatus::Rejected => "rejected",
            KeyStatus::Stale => "stale",
        }
    }
}

/// One row of a peer's key history.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub address: String,
    pub fingerprint: String,
    pub source: KeySource,
    #[serde(serialize_with = "unix")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "unix")]
    pub last_seen: SystemTime,
    pub trust: TrustLevel,
    /// When the user verified or rejected the key.
    #[serde(serialize_with = "unix_opt")]
    pub trust_since: Option<SystemTime>,
    #[serde(skip)]
    pub cert: Cert,
}

/// Something that happened to a peer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    New,
    Changed,
    Conflict,
    Verified,
    Unverified,
    Rejected,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Changed => "changed",
            EventKind::Conflict => "conflict",
            EventKind::Verified => "verified",
            EventKind::Unverified => "unverified",
            EventKind::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => EventKind::New,
            "changed" => EventKind::Changed,
            "conflict" => EventKind::Conflict,
            "verified" => EventKind::Verified,
            "unverified" => EventKind::Unverified,
            "rejected" => EventKind::Rejected,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyEvent {
    #[serde(serialize_with = "unix")]
    pub at: SystemTime,
    pub kind: EventKind,
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
}

/// One line of `keytool list`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSummary {
    pub address: String,
    /// The key mail to this peer is encrypted to, if any.
    pub fingerprint: Option<String>,
    pub trust: Option<TrustLevel>,
    pub prefer_encrypt: String,
    #[serde(serialize_with = "unix_opt")]
    pub last_seen: Option<SystemTime>,
    /// Keys that differ from the verified one and were seen after it was verified.
    pub conflicts: Vec<String>,
}

fn unix<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(to_db(*t))
}

fn unix_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&to_db(*t)),
        None => s.serialize_none(),
    }
}

type HistoryRow = (
    String,
    String,
    Vec<u8>,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);
type PeerRow = (
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    String,
    Option<i64>,
    Option<Vec<u8>>,
);

impl Keystore {
    /// Applies an incoming message (already examined by
    /// [`autocrypt::examine`]) to its sender's state and history.
    pub async fn record_incoming(
        &self,
        incoming: &Incoming,
        now: SystemTime,
    ) -> Result<KeyStatus, KeystoreError> {
        let address = normalize_addr(&incoming.from_addr);
        let mut tx = self.write_tx().await?;
        let mut state = load_peer(&mut tx, &address).await?.unwrap_or_default();
        let current = state.public_key.as_ref().map(Cert::fingerprint);
        let change = state.update(incoming);
        if change == PeerChange::Stale {
            // Older than the newest header seen (mail read out of order, or
            // several messages viewed at once): nothing is learned. If it
            // offers the key the peer has now, that key's standing is the
            // message's, so its signature can be checked like the newer
            // messages'.
            let status = match &incoming.header {
                Some(header) if current == Some(header.cert.fingerprint()) => {
                    let fpr = header.cert.fingerprint().to_hex();
                    let verified = verified_fingerprint(&mut tx, &address).await?;
                    let rejected = trust_of(&mut tx, &address, &fpr).await? == TrustLevel::Rejected;
                    match verified {
                        _ if rejected => KeyStatus::Rejected,
                        Some(v) if v == fpr => KeyStatus::Verified,
                        Some(_) => KeyStatus::Conflict,
                        None => KeyStatus::Tofu,
                    }
                }
                _ => KeyStatus::Stale,
            };
            tx.rollback().await?;
            return Ok(status);
        }
        save_peer(&mut tx, &address, &state).await?;
        let Some(header) = &incoming.header else {
            tx.commit().await?;
            return Ok(KeyStatus::None);
        };
        let fpr = header.cert.fingerprint().to_hex();
        upsert_key(
            &mut tx,
            &address,
            &header.cert,
            KeySource::Autocrypt,
            incoming.effective_date,
        )
        .await?;
        let verified = verified_fingerprint(&mut tx, &address).await?;
        let rejected = trust_of(&mut tx, &address, &fpr).await? == TrustLevel::Rejected;
        let status = match (&change, verified) {
            _ if rejected => KeyStatus::Rejected,
            (_, Some(v)) if v == fpr => KeyStatus::Verified,
            (PeerChange::NewKey { .. } | PeerChange::KeyChanged { .. }, Some(v)) => {
                add_event(
                    &mut tx,
                    &address,
                    now,
                    EventKind::Conflict,
                    Some(&v),
                    Some(&fpr),
                )
                .await?;
                KeyStatus::Conflict
            }
            (_, Some(_)) => KeyStatus::Conflict,
            (PeerChange::NewKey { .. }, None) => {
                add_event(&mut tx, &address, now, EventKind::New, None, Some(&fpr)).await?;
                KeyStatus::Tofu
            }
            (PeerChange::KeyChanged { old, .. }, None) => {
                add_event(
                    &mut tx,
                    &address,
                    now,
                    EventKind::Changed,
                    Some(&old.to_hex()),
                    Some(&fpr),
                )
                .await?;
                KeyStatus::Changed
            }
            _ => KeyStatus::Tofu,
        };
        tx.commit().await?;
        Ok(status)
    }

    /// Applies gossip that [`autocrypt::gossip::accept`] accepted.
    pub async fn record_gossip(
        &self,
        address: &str,
        effective_date: SystemTime,
        cert: &Cert,
    ) -> Result<bool, KeystoreError> {
        let address = normalize_addr(address);
        let mut tx = self.write_tx().await?;
        let mut state = load_peer(&mut tx, &address).await?.unwrap_or_default();
        let changed = state.update_from_gossip(effective_date, cert);
        if changed {
            save_peer(&mut tx, &address, &state).await?;
        }
        upsert_key(&mut tx, &address, cert, KeySource::Gossip, effective_date).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Records a key the user imported (or restored from a Setup Message)
    /// for every address in its user IDs: the user vouches for it. Returns
    /// the addresses.
    pub async fn record_key(
        &self,
        cert: &Cert,
        source: KeySource,
        now: SystemTime,
    ) -> Result<Vec<String>, KeystoreError> {
        let mut addresses: Vec<String> = cert
            .userids()
            .filter_map(|u| u.userid().email_normalized().ok().flatten())
            .collect();
        addresses.sort();
        addresses.dedup();
        if addresses.is_empty() {
            return Err(KeystoreError::Certificate(format!(
                "{} has no user ID with an email address",
                cert.fingerprint()
            )));
        }
        self.record_key_at(cert, &addresses, source, now).await?;
        Ok(addresses)
    }

    /// Records a key found for one address (a DNS OPENPGPKEY answer) for
    /// that address only: whoever publishes keys for an address vouches
    /// for that address, not for the other user IDs the key carries.
    pub async fn record_key_for(
        &self,
        address: &str,
        cert: &Cert,
        source: KeySource,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        self.record_key_at(cert, &[normalize_addr(address)], source, now)
            .await
    }

    async fn record_key_at(
        &self,
        cert: &Cert,
        addresses: &[String],
        source: KeySource,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let cert = cert.clone().strip_secret_key_material();
        let mut tx = self.write_tx().await?;
        let fpr = cert.fingerprint().to_hex();
        for address in addresses {
            let fresh = !key_known(&mut tx, address, &fpr).await?;
            upsert_key(&mut tx, address, &cert, source, now).await?;
            if fresh {
                // A new key for a verified peer is a conflict, whatever its source.
                let verified = verified_fingerprint(&mut tx, address).await?;
                let (kind, old) = match verified {
                    Some(v) if v != fpr => (EventKind::Conflict, Some(v)),
                    _ => (EventKind::New, None),
                };
                add_event(&mut tx, address, now, kind, old.as_deref(), Some(&fpr)).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The raw Autocrypt state of a peer.
    pub async fn peer_state(&self, address: &str) -> Result<Option<PeerState>, KeystoreError> {
        let mut conn = self.pool.begin().await?;
        let state = load_peer(&mut conn, &normalize_addr(address)).await?;
        conn.commit().await?;
        Ok(state)
    }

    /// The peer state with trust applied, for the Autocrypt recommendation:
    /// a verified key replaces whatever Autocrypt learned, rejected keys are
    /// removed, and a peer known only by an imported or DNS key gets that key.
    pub async fn effective_peer(&self, address: &str) -> Result<Option<PeerState>, KeystoreError> {
        let address = normalize_addr(address);
        let mut tx = self.pool.begin().await?;
        let state = load_peer(&mut tx, &address).await?;
        let history = load_history(&mut tx, &address).await?;
        tx.commit().await?;
        Ok(apply_trust(state, &history))
    }

    /// Every key ever seen for a peer, newest first.
    pub async fn history(&self, address: &str) -> Result<Vec<KeyRecord>, KeystoreError> {
        let mut tx = self.pool.begin().await?;
        let h = load_history(&mut tx, &normalize_addr(address)).await?;
        tx.commit().await?;
        Ok(h)
    }

    /// Every key seen for any peer, except those the user rejected: what a
    /// signature can be checked with, so that a good signature by a known
    /// key that is not the sender's reads as a mismatch rather than as an
    /// unknown key. Being here vouches for no address: [`Self::signing_key`]
    /// says whose key is whose.
    pub async fn known_certs(&self) -> Result<Vec<Cert>, KeystoreError> {
        let blobs: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT k.cert FROM key_seen k
             WHERE NOT EXISTS (SELECT 1 FROM trust t WHERE t.address = k.address
                               AND t.fingerprint = k.fingerprint AND t.level = 'rejected')
             GROUP BY k.fingerprint",
        )
        .fetch_all(&self.pool)
        .await?;
        // A stored certificate that no longer parses is skipped rather than
        // failing every decryption.
        Ok(blobs
            .iter()
            .filter_map(|b| Cert::from_bytes(b).ok())
            .collect())
    }

    /// The key that may sign for `address` (rule 5): the verified key, else
    /// the key Autocrypt holds for it (trust on first use), else an
    /// imported, DNS or Setup Message key. Never a rejected key, a key that
    /// conflicts with a verified one, or gossip (a third party's word). A
    /// key's own user IDs have no say in this: only the address it was
    /// learned for does.
    pub async fn signing_key(&self, address: &str) -> Result<Option<KeyRecord>, KeystoreError> {
        let address = normalize_addr(address);
        let mut tx = self.pool.begin().await?;
        let state = load_peer(&mut tx, &address).await?;
        let history = load_history(&mut tx, &address).await?;
        tx.commit().await?;
        let Some(key) = apply_trust(state, &history).and_then(|s| s.public_key) else {
            return Ok(None);
        };
        let fpr = key.fingerprint().to_hex();
        Ok(history.into_iter().find(|k| k.fingerprint == fpr))
    }

    /// Key events of a peer, oldest first.
    pub async fn events(&self, address: &str) -> Result<Vec<KeyEvent>, KeystoreError> {
        let mut tx = self.pool.begin().await?;
        let events = load_events(&mut tx, &normalize_addr(address)).await?;
        tx.commit().await?;
        Ok(events)
    }

    /// Marks a key of a peer as verified by the user (replacing an earlier
    /// verified key of that peer).
    pub async fn verify(
        &self,
        address: &str,
        fingerprint: &str,
        method: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let address = normalize_addr(address);
        let fpr = normalize_fingerprint(fingerprint);
        let mut tx = self.write_tx().await?;
        if !key_known(&mut tx, &address, &fpr).await? {
            return Err(KeystoreError::UnknownKey {
                address,
                fingerprint: fpr,
            });
        }
        let old = verified_fingerprint(&mut tx, &address).await?;
        sqlx::query(
            "DELETE FROM trust WHERE address = ? AND (level = 'verified' OR fingerprint = ?)",
        )
        .bind(&address)
        .bind(&fpr)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO trust (address, fingerprint, level, decided_at, method) VALUES (?, ?, 'verified', ?, ?)")
            .bind(&address)
            .bind(&fpr)
            .bind(to_db(now))
            .bind(method)
            .execute(&mut *tx)
            .await?;
        add_event(
            &mut tx,
            &address,
            now,
            EventKind::Verified,
            old.as_deref(),
            Some(&fpr),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Withdraws the verification of a peer's key (back to trust on first use).
    pub async fn unverify(&self, address: &str, now: SystemTime) -> Result<bool, KeystoreError> {
        let address = normalize_addr(address);
        let mut tx = self.write_tx().await?;
        let old = verified_fingerprint(&mut tx, &address).await?;
        if old.is_some() {
            sqlx::query("DELETE FROM trust WHERE address = ? AND level = 'verified'")
                .bind(&address)
                .execute(&mut *tx)
                .await?;
            add_event(
                &mut tx,
                &address,
                now,
                EventKind::Unverified,
                old.as_deref(),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(old.is_some())
    }

    /// Rejects a key of a peer: it is never used again. Without a
    /// fingerprint, the key mail would currently go to is rejected.
    pub async fn reject(
        &self,
        address: &str,
        fingerprint: Option<&str>,
        now: SystemTime,
    ) -> Result<String, KeystoreError> {
        let address_n = normalize_addr(address);
        let fpr = match fingerprint {
            Some(f) => normalize_fingerprint(f),
            None => {
                let state = self.effective_peer(&address_n).await?;
                let key = state
                    .as_ref()
                    .and_then(|s| s.target_key())
                    .ok_or_else(|| KeystoreError::UnknownPeer(address.to_string()))?;
                key.fingerprint().to_hex()
            }
        };
        let mut tx = self.write_tx().await?;
        if !key_known(&mut tx, &address_n, &fpr).await? {
            return Err(KeystoreError::UnknownKey {
                address: address_n,
                fingerprint: fpr,
            });
        }
        sqlx::query(
            "INSERT INTO trust (address, fingerprint, level, decided_at, method) VALUES (?, ?, 'rejected', ?, 'keytool')
             ON CONFLICT (address, fingerprint) DO UPDATE SET level = 'rejected', decided_at = excluded.decided_at, method = excluded.method",
        )
        .bind(&address_n)
        .bind(&fpr)
        .bind(to_db(now))
        .execute(&mut *tx)
        .await?;
        add_event(
            &mut tx,
            &address_n,
            now,
            EventKind::Rejected,
            Some(&fpr),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(fpr)
    }

    /// Deletes everything known about a peer.
    pub async fn forget(&self, address: &str) -> Result<bool, KeystoreError> {
        let address = normalize_addr(address);
        let mut tx = self.write_tx().await?;
        let mut removed = 0;
        for table in ["peer", "key_seen", "trust", "key_event", "dns_cache"] {
            removed += sqlx::query(&format!("DELETE FROM {table} WHERE address = ?"))
                .bind(&address)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(removed > 0)
    }

    /// Every known peer with the key mail would go to and its trust.
    pub async fn list(&self) -> Result<Vec<PeerSummary>, KeystoreError> {
        let addresses: Vec<String> = sqlx::query_scalar(
            "SELECT address FROM peer UNION SELECT address FROM key_seen ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            out.push(self.summary(&address).await?);
        }
        Ok(out)
    }

    /// What `keytool show` prints first.
    pub async fn summary(&self, address: &str) -> Result<PeerSummary, KeystoreError> {
        let address = normalize_addr(address);
        let mut tx = self.pool.begin().await?;
        let raw = load_peer(&mut tx, &address).await?;
        let history = load_history(&mut tx, &address).await?;
        let events = load_events(&mut tx, &address).await?;
        tx.commit().await?;
        if raw.is_none() && history.is_empty() {
            return Err(KeystoreError::UnknownPeer(address));
        }
        let prefer_encrypt = raw
            .as_ref()
            .map(|s| s.prefer_encrypt)
            .unwrap_or(PreferEncrypt::NoPreference);
        let last_seen = raw.as_ref().and_then(|s| s.last_seen);
        let effective = apply_trust(raw, &history);
        let key = effective
            .as_ref()
            .and_then(|s| s.target_key())
            .map(|c| c.fingerprint().to_hex());
        let trust = key.as_ref().map(|k| {
            history
                .iter()
                .find(|h| &h.fingerprint == k)
                .map(|h| h.trust)
                .unwrap_or(TrustLevel::Tofu)
        });
        Ok(PeerSummary {
            prefer_encrypt: prefer_encrypt.as_str().to_string(),
            last_seen,
            conflicts: conflicts(&history, &events),
            fingerprint: key,
            trust,
            address,
        })
    }
}

/// The peer state with trust applied (see [`Keystore::effective_peer`]).
fn apply_trust(state: Option<PeerState>, history: &[KeyRecord]) -> Option<PeerState> {
    if state.is_none() && history.is_empty() {
        return None;
    }
    let mut state = state.unwrap_or_default();
    let rejected = |c: &Cert| {
        history
            .iter()
            .any(|k| k.trust == TrustLevel::Rejected && k.fingerprint == c.fingerprint().to_hex())
    };
    if let Some(verified) = history.iter().find(|k| k.trust == TrustLevel::Verified) {
        state.public_key = Some(verified.cert.clone());
        state.gossip_key = None;
        return Some(state);
    }
    if state.public_key.as_ref().is_some_and(rejected) {
        state.public_key = None;
    }
    if state.gossip_key.as_ref().is_some_and(rejected) {
        state.gossip_key = None;
    }
    // The newest usable key of some sources, by when it was last seen.
    let newest = |sources: &[KeySource]| {
        history
            .iter()
            .filter(|k| sources.contains(&k.source) && k.trust != TrustLevel::Rejected)
            .max_by_key(|k| k.last_seen)
    };
    // A key the user imported (a vCard, `gpg --export`, a Setup Message)
    // after the Autocrypt key was last announced is the newer word on the
    // peer's key: mail goes to it until a later message announces another.
    // Encrypting to the older one would be accepted and then unreadable.
    let replaced = match (
        newest(&[KeySource::Import, KeySource::SetupMessage]),
        &state.public_key,
        state.autocrypt_timestamp,
    ) {
        (Some(k), Some(current), Some(announced)) => {
            (current.fingerprint().to_hex() != k.fingerprint && k.last_seen > announced)
                .then_some(k)
        }
        // Without an Autocrypt key, keys the user imported or DNS
        // published count like a direct key.
        (_, None, _) => newest(&[KeySource::Import, KeySource::Dns, KeySource::SetupMessage]),
        _ => None,
    };
    if let Some(k) = replaced {
        state.public_key = Some(k.cert.clone());
        state.autocrypt_timestamp = None;
    }
    Some(state)
}

/// Keys that arrived as conflicts after the latest verification and on
/// which the user has not decided yet. Event order, not message dates,
/// decides "after": a message may carry any Date.
fn conflicts(history: &[KeyRecord], events: &[KeyEvent]) -> Vec<String> {
    let Some(verified) = history.iter().find(|k| k.trust == TrustLevel::Verified) else {
        return Vec::new();
    };
    let since = events
        .iter()
        .rposition(|e| e.kind == EventKind::Verified)
        .map_or(0, |i| i + 1);
    let mut out: Vec<String> = Vec::new();
    for e in &events[since..] {
        let Some(f) = &e.new_fingerprint else {
            continue;
        };
        let undecided = history
            .iter()
            .any(|k| &k.fingerprint == f && k.trust == TrustLevel::Tofu);
        if e.kind == EventKind::Conflict
            && f != &verified.fingerprint
            && undecided
            && !out.contains(f)
        {
            out.push(f.clone());
        }
    }
    out
}

/// A fingerprint as stored: upper-case hex without spaces. Accepts the
/// groups of four people read out and the `OPENPGP4FPR:` URI of QR codes.
pub fn normalize_fingerprint(f: &str) -> String {
    let f = f.trim();
    let f = match f.get(..12) {
        Some(scheme) if scheme.eq_ignore_ascii_case("OPENPGP4FPR:") => &f[12..],
        _ => f,
    };
    f.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

async fn load_peer(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
) -> Result<Option<PeerState>, KeystoreError> {
    let row: Option<PeerRow> = sqlx::query_as(
        "SELECT last_seen, autocrypt_timestamp, public_key, prefer_encrypt, gossip_timestamp, gossip_key FROM peer WHERE address = ?",
    )
    .bind(address)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((last_seen, ac_ts, public_key, prefer, gossip_ts, gossip_key)) = row else {
        return Ok(None);
    };
    let cert = |b: Option<Vec<u8>>| b.map(|b| Cert::from_bytes(&b)).transpose();
    Ok(Some(PeerState {
        last_seen: last_seen.map(from_db),
        autocrypt_timestamp: ac_ts.map(from_db),
        public_key: cert(public_key)?,
        prefer_encrypt: PreferEncrypt::from_value(&prefer),
        gossip_timestamp: gossip_ts.map(from_db),
        gossip_key: cert(gossip_key)?,
    }))
}

async fn save_peer(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
    s: &PeerState,
) -> Result<(), KeystoreError> {
    let bytes = |c: &Option<Cert>| c.as_ref().map(|c| c.to_vec()).transpose();
    sqlx::query(
        "INSERT INTO peer (address, last_seen, autocrypt_timestamp, public_key, prefer_encrypt, gossip_timestamp, gossip_key)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen,
             autocrypt_timestamp = excluded.autocrypt_timestamp, public_key = excluded.public_key,
             prefer_encrypt = excluded.prefer_encrypt, gossip_timestamp = excluded.gossip_timestamp,
             gossip_key = excluded.gossip_key",
    )
    .bind(address)
    .bind(s.last_seen.map(to_db))
    .bind(s.autocrypt_timestamp.map(to_db))
    .bind(bytes(&s.public_key)?)
    .bind(s.prefer_encrypt.as_str())
    .bind(s.gossip_timestamp.map(to_db))
    .bind(bytes(&s.gossip_key)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_key(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
    cert: &Cert,
    source: KeySource,
    seen: SystemTime,
) -> Result<(), KeystoreError> {
    let cert = cert.clone().strip_secret_key_material();
    sqlx::query(
        "INSERT INTO key_seen (address, fingerprint, source, cert, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (address, fingerprint, source) DO UPDATE SET
             cert = excluded.cert,
             first_seen = min(first_seen, excluded.first_seen),
             last_seen = max(last_seen, excluded.last_seen)",
    )
    .bind(address)
    .bind(cert.fingerprint().to_hex())
    .bind(source.as_str())
    .bind(cert.to_vec()?)
    .bind(to_db(seen))
    .bind(to_db(seen))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn key_known(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
    fpr: &str,
) -> Result<bool, KeystoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM key_seen WHERE address = ? AND fingerprint = ?")
            .bind(address)
            .bind(fpr)
            .fetch_one(&mut **tx)
            .await?;
    Ok(n > 0)
}

async fn verified_fingerprint(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
) -> Result<Option<String>, KeystoreError> {
    Ok(
        sqlx::query_scalar(
            "SELECT fingerprint FROM trust WHERE address = ? AND level = 'verified'",
        )
        .bind(address)
        .fetch_optional(&mut **tx)
        .await?,
    )
}

async fn trust_of(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
    fpr: &str,
) -> Result<TrustLevel, KeystoreError> {
    let level: Option<String> =
        sqlx::query_scalar("SELECT level FROM trust WHERE address = ? AND fingerprint = ?")
            .bind(address)
            .bind(fpr)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match level.as_deref() {
        Some("verified") => TrustLevel::Verified,
        Some("rejected") => TrustLevel::Rejected,
        _ => TrustLevel::Tofu,
    })
}

async fn load_history(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
) -> Result<Vec<KeyRecord>, KeystoreError> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT k.fingerprint, k.source, k.cert, k.first_seen, k.last_seen, t.level, t.decided_at
         FROM key_seen k LEFT JOIN trust t ON t.address = k.address AND t.fingerprint = k.fingerprint
         WHERE k.address = ? ORDER BY k.last_seen DESC, k.fingerprint",
    )
    .bind(address)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(fingerprint, source, cert, first, last, level, since)| {
            Ok(KeyRecord {
                address: address.to_string(),
                fingerprint,
                source: KeySource::parse(&source),
                first_seen: from_db(first),
                last_seen: from_db(last),
                trust: match level.as_deref() {
                    Some("verified") => TrustLevel::Verified,
                    Some("rejected") => TrustLevel::Rejected,
                    _ => TrustLevel::Tofu,
                },
                trust_since: since.map(from_db),
                cert: Cert::from_bytes(&cert)?,
            })
        })
        .collect()
}

async fn load_events(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
) -> Result<Vec<KeyEvent>, KeystoreError> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT at, kind, old_fingerprint, new_fingerprint FROM key_event WHERE address = ? ORDER BY id",
    )
    .bind(address)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(at, kind, old, new)| {
            Some(KeyEvent {
                at: from_db(at),
                kind: EventKind::parse(&kind)?,
                old_fingerprint: old,
                new_fingerprint: new,
            })
        })
        .collect())
}

async fn add_event(
    tx: &mut Transaction<'_, Sqlite>,
    address: &str,
    at: SystemTime,
    kind: EventKind,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<(), KeystoreError> {
    sqlx::query("INSERT INTO key_event (address, at, kind, old_fingerprint, new_fingerprint) VALUES (?, ?, ?, ?, ?)")
        .bind(address)
        .bind(to_db(at))
        .bind(kind.as_str())
        .bind(old)
        .bind(new)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
