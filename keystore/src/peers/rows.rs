//! The peer tables, row by row: the SQL behind the keystore's peer methods.

use super::*;

pub(super) async fn load_peer(
    tx: &mut SqliteConnection,
    address: &str,
) -> Result<Option<PeerState>, KeystoreError> {
    let row: Option<PeerRow> = sqlx::query_as(
        "SELECT last_seen, autocrypt_timestamp, public_key, prefer_encrypt, gossip_timestamp, gossip_key FROM peer WHERE address = ?",
    )
    .bind(address)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((last_seen, ac_ts, public_key, prefer, gossip_ts, gossip_key)) = row else {
        return Ok(None);
    };
    let cert = |b: Option<Vec<u8>>| b.map(|b| autocrypt::certs::parse(&b)).transpose();
    Ok(Some(PeerState {
        last_seen: last_seen.map(from_db),
        autocrypt_timestamp: ac_ts.map(from_db),
        public_key: cert(public_key)?,
        prefer_encrypt: PreferEncrypt::from_value(&prefer),
        gossip_timestamp: gossip_ts.map(from_db),
        gossip_key: cert(gossip_key)?,
    }))
}

pub(super) async fn save_peer(
    tx: &mut SqliteConnection,
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn upsert_key(
    tx: &mut SqliteConnection,
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn key_known(
    tx: &mut SqliteConnection,
    address: &str,
    fpr: &str,
) -> Result<bool, KeystoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM key_seen WHERE address = ? AND fingerprint = ?")
            .bind(address)
            .bind(fpr)
            .fetch_one(&mut *tx)
            .await?;
    Ok(n > 0)
}

pub(super) async fn verified_fingerprint(
    tx: &mut SqliteConnection,
    address: &str,
) -> Result<Option<String>, KeystoreError> {
    Ok(
        sqlx::query_scalar(
            "SELECT fingerprint FROM trust WHERE address = ? AND level = 'verified'",
        )
        .bind(address)
        .fetch_optional(&mut *tx)
        .await?,
    )
}

pub(super) async fn trust_of(
    tx: &mut SqliteConnection,
    address: &str,
    fpr: &str,
) -> Result<TrustLevel, KeystoreError> {
    let level: Option<String> =
        sqlx::query_scalar("SELECT level FROM trust WHERE address = ? AND fingerprint = ?")
            .bind(address)
            .bind(fpr)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(match level.as_deref() {
        Some("verified") => TrustLevel::Verified,
        Some("rejected") => TrustLevel::Rejected,
        _ => TrustLevel::Tofu,
    })
}

pub(super) async fn load_history(
    tx: &mut SqliteConnection,
    address: &str,
) -> Result<Vec<KeyRecord>, KeystoreError> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT k.fingerprint, k.source, k.cert, k.first_seen, k.last_seen, t.level, t.decided_at
         FROM key_seen k LEFT JOIN trust t ON t.address = k.address AND t.fingerprint = k.fingerprint
         WHERE k.address = ? ORDER BY k.last_seen DESC, k.fingerprint",
    )
    .bind(address)
    .fetch_all(&mut *tx)
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
                cert: autocrypt::certs::parse(&cert)?,
            })
        })
        .collect()
}

pub(super) async fn load_events(
    tx: &mut SqliteConnection,
    address: &str,
) -> Result<Vec<KeyEvent>, KeystoreError> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT at, kind, old_fingerprint, new_fingerprint FROM key_event WHERE address = ? ORDER BY id",
    )
    .bind(address)
    .fetch_all(&mut *tx)
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

pub(super) async fn add_event(
    tx: &mut SqliteConnection,
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
        .execute(&mut *tx)
        .await?;
    Ok(())
}
