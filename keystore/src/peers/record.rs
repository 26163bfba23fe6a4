//! Recording what messages teach: Autocrypt headers, gossip, imported and
//! discovered keys; and reading it back (state, history, events).

use super::*;

impl Keystore {
    /// Applies an incoming message (already examined by
    /// [`autocrypt::examine`]) to its sender's state and history.
    /// Committed with whatever else reading mail records meanwhile
    /// ([`crate::group`]).
    pub async fn record_incoming(
        &self,
        incoming: &Incoming,
        now: SystemTime,
    ) -> Result<KeyStatus, KeystoreError> {
        let incoming = incoming.clone();
        self.grouped(move |tx| Box::pin(async move { record_incoming(tx, &incoming, now).await }))
            .await
    }

    /// Applies gossip that [`autocrypt::gossip::accept`] accepted (committed
    /// like [`Keystore::record_incoming`]).
    pub async fn record_gossip(
        &self,
        address: &str,
        effective_date: SystemTime,
        cert: &Cert,
    ) -> Result<bool, KeystoreError> {
        let address = normalize_addr(address);
        let cert = cert.clone();
        self.grouped(move |tx| {
            Box::pin(async move {
                let mut state = load_peer(tx, &address).await?.unwrap_or_default();
                let changed = state.update_from_gossip(effective_date, &cert);
                if changed {
                    save_peer(tx, &address, &state).await?;
                }
                upsert_key(tx, &address, &cert, KeySource::Gossip, effective_date).await?;
                Ok(changed)
            })
        })
        .await
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
            return Err(KeystoreError::NoEmailUserId {
                fingerprint: cert.fingerprint().to_hex(),
            });
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
        let addresses = addresses.to_vec();
        self.grouped(move |tx| {
            Box::pin(async move {
                let fpr = cert.fingerprint().to_hex();
                for address in &addresses {
                    let fresh = !key_known(tx, address, &fpr).await?;
                    upsert_key(tx, address, &cert, source, now).await?;
                    if fresh {
                        // A new key for a verified peer is a conflict, whatever its source.
                        let verified = verified_fingerprint(tx, address).await?;
                        let (kind, old) = match verified {
                            Some(v) if v != fpr => (EventKind::Conflict, Some(v)),
                            _ => (EventKind::New, None),
                        };
                        add_event(tx, address, now, kind, old.as_deref(), Some(&fpr)).await?;
                    }
                }
                Ok(())
            })
        })
        .await
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
        let mut tx = self.pool.begin().await?;
        let key = signing_key(&mut tx, &normalize_addr(address)).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// [`Keystore::record_incoming`], then [`Keystore::signing_key`] for
    /// `shown_from` (the address the reader is shown, which decides whose
    /// signature counts), in one job: what a message teaches and the key
    /// its signature is checked with come from the same moment, and the
    /// read path waits for the vault once instead of twice per message.
    pub async fn record_incoming_and_signer(
        &self,
        incoming: &Incoming,
        shown_from: &str,
        now: SystemTime,
    ) -> Result<(KeyStatus, Option<KeyRecord>), KeystoreError> {
        let incoming = incoming.clone();
        let shown_from = normalize_addr(shown_from);
        self.grouped(move |tx| {
            Box::pin(async move {
                let status = record_incoming(tx, &incoming, now).await?;
                Ok((status, signing_key(tx, &shown_from).await?))
            })
        })
        .await
    }

    /// Key events of a peer, oldest first.
    pub async fn events(&self, address: &str) -> Result<Vec<KeyEvent>, KeystoreError> {
        let mut tx = self.pool.begin().await?;
        let events = load_events(&mut tx, &normalize_addr(address)).await?;
        tx.commit().await?;
        Ok(events)
    }
}

/// [`Keystore::record_incoming`] in the caller's transaction.
async fn record_incoming(
    tx: &mut SqliteConnection,
    incoming: &Incoming,
    now: SystemTime,
) -> Result<KeyStatus, KeystoreError> {
    let address = normalize_addr(&incoming.from_addr);
    let mut state = load_peer(tx, &address).await?.unwrap_or_default();
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
                let verified = verified_fingerprint(tx, &address).await?;
                let rejected = trust_of(tx, &address, &fpr).await? == TrustLevel::Rejected;
                match verified {
                    _ if rejected => KeyStatus::Rejected,
                    Some(v) if v == fpr => KeyStatus::Verified,
                    Some(_) => KeyStatus::Conflict,
                    None => KeyStatus::Tofu,
                }
            }
            _ => KeyStatus::Stale,
        };
        return Ok(status);
    }
    save_peer(tx, &address, &state).await?;
    let Some(header) = &incoming.header else {
        return Ok(KeyStatus::None);
    };
    let fpr = header.cert.fingerprint().to_hex();
    upsert_key(
        tx,
        &address,
        &header.cert,
        KeySource::Autocrypt,
        incoming.effective_date,
    )
    .await?;
    let verified = verified_fingerprint(tx, &address).await?;
    let rejected = trust_of(tx, &address, &fpr).await? == TrustLevel::Rejected;
    let status = match (&change, verified) {
        _ if rejected => KeyStatus::Rejected,
        (_, Some(v)) if v == fpr => KeyStatus::Verified,
        (PeerChange::NewKey { .. } | PeerChange::KeyChanged { .. }, Some(v)) => {
            add_event(tx, &address, now, EventKind::Conflict, Some(&v), Some(&fpr)).await?;
            KeyStatus::Conflict
        }
        (_, Some(_)) => KeyStatus::Conflict,
        (PeerChange::NewKey { .. }, None) => {
            add_event(tx, &address, now, EventKind::New, None, Some(&fpr)).await?;
            KeyStatus::Tofu
        }
        (PeerChange::KeyChanged { old, .. }, None) => {
            add_event(
                tx,
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
    Ok(status)
}

/// [`Keystore::signing_key`] in the caller's transaction (`address`
/// normalized).
async fn signing_key(
    tx: &mut SqliteConnection,
    address: &str,
) -> Result<Option<KeyRecord>, KeystoreError> {
    let state = load_peer(tx, address).await?;
    let history = load_history(tx, address).await?;
    let Some(key) = apply_trust(state, &history).and_then(|s| s.public_key) else {
        return Ok(None);
    };
    let fpr = key.fingerprint().to_hex();
    Ok(history.into_iter().find(|k| k.fingerprint == fpr))
}
