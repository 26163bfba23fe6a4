//! Own identities: one key pair per account address.

use std::time::SystemTime;

use autocrypt::{normalize_addr, PreferEncrypt};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use zeroize::Zeroizing;

use crate::error::KeystoreError;
use crate::time::{from_db, to_db};
use crate::Keystore;

/// An account's own key pair.
#[derive(Debug, Clone)]
pub struct Identity {
    pub address: String,
    /// The certificate with its secret keys.
    pub cert: Cert,
    pub prefer_encrypt: PreferEncrypt,
    pub created_at: SystemTime,
}

impl Keystore {
    /// Stores the key pair of an account, replacing an earlier one.
    pub async fn put_identity(
        &self,
        address: &str,
        cert: &Cert,
        prefer_encrypt: PreferEncrypt,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        if !cert.is_tsk() {
            return Err(KeystoreError::NoSecretKey);
        }
        let tsk = Zeroizing::new(cert.as_tsk().to_vec()?);
        sqlx::query(
            "INSERT INTO identity (address, fingerprint, tsk, prefer_encrypt, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (address) DO UPDATE SET fingerprint = excluded.fingerprint, tsk = excluded.tsk,
                 prefer_encrypt = excluded.prefer_encrypt, created_at = excluded.created_at",
        )
        .bind(normalize_addr(address))
        .bind(cert.fingerprint().to_hex())
        .bind(&tsk[..])
        .bind(prefer_encrypt.as_str())
        .bind(to_db(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The identity of one account.
    pub async fn identity(&self, address: &str) -> Result<Identity, KeystoreError> {
        let row: Option<(String, Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT address, tsk, prefer_encrypt, created_at FROM identity WHERE address = ?",
        )
        .bind(normalize_addr(address))
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| KeystoreError::NoIdentity(address.to_string()))?;
        to_identity(row)
    }

    /// All identities, by address.
    pub async fn identities(&self) -> Result<Vec<Identity>, KeystoreError> {
        let rows: Vec<(String, Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT address, tsk, prefer_encrypt, created_at FROM identity ORDER BY address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(to_identity).collect()
    }
}

fn to_identity(
    (address, tsk, prefer, created): (String, Vec<u8>, String, i64),
) -> Result<Identity, KeystoreError> {
    let tsk = Zeroizing::new(tsk);
    Ok(Identity {
        address,
        cert: Cert::from_bytes(&tsk[..])?,
        prefer_encrypt: PreferEncrypt::from_value(&prefer),
        created_at: from_db(created),
    })
}

impl Keystore {
    /// The local listeners' TLS certificate and its PKCS#8 private key, if
    /// one was stored.
    pub async fn local_tls(&self) -> Result<Option<(Vec<u8>, Zeroizing<Vec<u8>>)>, KeystoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT cert_der, key_der FROM local_tls WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(cert, key)| (cert, Zeroizing::new(key))))
    }

    /// Stores the local listeners' certificate, replacing an earlier one.
    pub async fn put_local_tls(
        &self,
        cert_der: &[u8],
        key_der: &[u8],
    ) -> Result<(), KeystoreError> {
        sqlx::query(
            "INSERT INTO local_tls (id, cert_der, key_der) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET cert_der = excluded.cert_der, key_der = excluded.key_der",
        )
        .bind(cert_der)
        .bind(key_der)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
