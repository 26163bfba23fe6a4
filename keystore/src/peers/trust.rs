//! Trust decisions a person makes (verify, unverify, reject, forget) and
//! what they mean for the state the rest of the gateway sees.

use super::*;

impl Keystore {
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
        let method = method.to_string();
        self.grouped(move |tx| {
            Box::pin(async move {
                if !key_known(tx, &address, &fpr).await? {
                    return Err(KeystoreError::UnknownKey {
                        address,
                        fingerprint: fpr,
                    });
                }
                let old = verified_fingerprint(tx, &address).await?;
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
                    .bind(&method)
                    .execute(&mut *tx)
                    .await?;
                add_event(
                    tx,
                    &address,
                    now,
                    EventKind::Verified,
                    old.as_deref(),
                    Some(&fpr),
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// [`PeerSummary::verification_candidate`] of the contact at `address`.
    pub async fn verification_candidate(&self, address: &str) -> Result<String, KeystoreError> {
        self.summary(address)
            .await?
            .verification_candidate()
            .map(str::to_string)
            .ok_or_else(|| KeystoreError::UnknownPeer(address.to_string()))
    }

    /// Verifies the contact's key whose fingerprint is `given` (any
    /// spelling [`normalize_fingerprint`] takes), if the vault holds such a
    /// key for the address and the person has not rejected it. What
    /// `keytool verify` and the web page both do; `method` says how the
    /// person compared (`fingerprint`, `compared`, `qr`).
    pub async fn verify_fingerprint(
        &self,
        address: &str,
        given: &str,
        method: &str,
        now: SystemTime,
    ) -> Result<FingerprintCheck, KeystoreError> {
        let given = normalize_fingerprint(given);
        let known = self.history(address).await?;
        match known
            .iter()
            .find(|k| k.fingerprint == given && k.trust != TrustLevel::Rejected)
        {
            Some(key) => {
                self.verify(address, &key.fingerprint, method, now).await?;
                Ok(FingerprintCheck::Verified(key.fingerprint.clone()))
            }
            None => Ok(FingerprintCheck::Mismatch(given)),
        }
    }

    /// Withdraws the verification of a peer's key (back to trust on first use).
    pub async fn unverify(&self, address: &str, now: SystemTime) -> Result<bool, KeystoreError> {
        let address = normalize_addr(address);
        self.grouped(move |tx| {
            Box::pin(async move {
                let old = verified_fingerprint(tx, &address).await?;
                if old.is_some() {
                    sqlx::query("DELETE FROM trust WHERE address = ? AND level = 'verified'")
                        .bind(&address)
                        .execute(&mut *tx)
                        .await?;
                    add_event(
                        tx,
                        &address,
                        now,
                        EventKind::Unverified,
                        old.as_deref(),
                        None,
                    )
                    .await?;
                }
                Ok(old.is_some())
            })
        })
        .await
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
        self.grouped(move |tx| {
            Box::pin(async move {
                if !key_known(tx, &address_n, &fpr).await? {
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
                    tx,
                    &address_n,
                    now,
                    EventKind::Rejected,
                    Some(&fpr),
                    None,
                )
                .await?;
                Ok(fpr)
            })
        })
        .await
    }

    /// Deletes everything known about a peer.
    pub async fn forget(&self, address: &str) -> Result<bool, KeystoreError> {
        let address = normalize_addr(address);
        self.grouped(move |tx| {
            Box::pin(async move {
                let mut removed = 0;
                for table in ["peer", "key_seen", "trust", "key_event", "dns_cache"] {
                    removed += sqlx::query(&format!("DELETE FROM {table} WHERE address = ?"))
                        .bind(&address)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                Ok(removed > 0)
            })
        })
        .await
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
pub(super) fn apply_trust(state: Option<PeerState>, history: &[KeyRecord]) -> Option<PeerState> {
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
        // Without an Autocrypt key, keys the user imported or DNS or WKD
        // published count like a direct key.
        (_, None, _) => newest(&[
            KeySource::Import,
            KeySource::Dns,
            KeySource::Wkd,
            KeySource::SetupMessage,
        ]),
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
pub(super) fn conflicts(history: &[KeyRecord], events: &[KeyEvent]) -> Vec<String> {
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
