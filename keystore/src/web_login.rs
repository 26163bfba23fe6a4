//! One-time login links for the local web page: `gateway web-link` asks
//! for one, the running gateway redeems it. The vault is the only thing
//! both processes share, and proving you can open it (the passphrase or
//! the key file) is what the link stands for.
//!
//! Only a SHA-256 of each token is stored; redeeming deletes it in the same
//! statement that finds it, so a link works once even if two requests race.

use std::time::{Duration, SystemTime};

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::time::to_db;
use crate::{Keystore, KeystoreError};

impl Keystore {
    /// A new login token (64 hex digits), valid for `ttl`.
    pub async fn issue_web_login(
        &self,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<SecretString, KeystoreError> {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut raw[..]);
        let token = hex::encode(&raw[..]);
        let hash = Sha256::digest(token.as_bytes()).to_vec();
        let expires = to_db(now + ttl);
        let now = to_db(now);
        self.grouped(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM web_login WHERE expires <= ?")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO web_login (token_sha256, expires) VALUES (?, ?)")
                    .bind(hash)
                    .bind(expires)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await?;
        Ok(SecretString::from(token))
    }

    /// Whether `token` is an unexpired, unused login token; it is used up
    /// either way.
    pub async fn redeem_web_login(
        &self,
        token: &SecretString,
        now: SystemTime,
    ) -> Result<bool, KeystoreError> {
        let hash = Sha256::digest(token.expose_secret().as_bytes()).to_vec();
        let now = to_db(now);
        self.grouped(move |tx| {
            Box::pin(async move {
                let expires: Option<i64> = sqlx::query_scalar(
                    "DELETE FROM web_login WHERE token_sha256 = ? RETURNING expires",
                )
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await?;
                Ok(expires.is_some_and(|e| e > now))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Unlock;

    /// A fresh vault and a login token for it, issued `now`.
    async fn vault_with_token(now: SystemTime) -> (tempfile::TempDir, Keystore, SecretString) {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::create(dir.path(), Unlock::KeyFile).await.unwrap();
        let token = store
            .issue_web_login(Duration::from_secs(600), now)
            .await
            .unwrap();
        (dir, store, token)
    }

    #[tokio::test]
    async fn a_token_works_once_and_not_after_it_expires() {
        let now = SystemTime::now();
        let (_dir, store, token) = vault_with_token(now).await;
        assert_eq!(token.expose_secret().len(), 64);
        assert!(store.redeem_web_login(&token, now).await.unwrap());
        assert!(
            !store.redeem_web_login(&token, now).await.unwrap(),
            "used twice"
        );

        let late = store
            .issue_web_login(Duration::from_secs(600), now)
            .await
            .unwrap();
        let after = now + Duration::from_secs(601);
        assert!(
            !store.redeem_web_login(&late, after).await.unwrap(),
            "expired"
        );
        assert!(!store
            .redeem_web_login(&SecretString::from("made-up".to_string()), now)
            .await
            .unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_redeemed_by_many_requests_at_once_logs_in_one() {
        let now = SystemTime::now();
        let (_dir, store, token) = vault_with_token(now).await;
        let mut racing = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (store, token) = (store.clone(), token.clone());
            racing.spawn(async move { store.redeem_web_login(&token, now).await.unwrap() });
        }
        let mut logged_in = 0;
        while let Some(won) = racing.join_next().await {
            logged_in += usize::from(won.unwrap());
        }
        assert_eq!(logged_in, 1);
    }
}
