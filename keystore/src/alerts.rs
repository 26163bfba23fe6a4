//! What a person should hear about without reading logs: key events of
//! every contact, newest first, and messages the SMTP proxy refused to send
//! (the web page's alerts).

use std::time::SystemTime;

use serde::Serialize;

use crate::peers::{EventKind, KeyEvent};
use crate::time::{from_db, to_db};
use crate::{Keystore, KeystoreError};

/// Refusals kept; older ones are dropped as new ones arrive.
pub const REFUSALS_KEPT: i64 = 500;

/// address, at, kind, old and new fingerprint.
type EventRow = (String, i64, String, Option<String>, Option<String>);

/// A key event with the contact it happened to.
#[derive(Debug, Clone, Serialize)]
pub struct ContactEvent {
    pub address: String,
    #[serde(flatten)]
    pub event: KeyEvent,
}

/// A message the SMTP proxy did not send, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub account: String,
    #[serde(serialize_with = "crate::peers::unix")]
    pub at: SystemTime,
    pub recipients: Vec<String>,
    /// The SMTP reply the mail client got, as it got it.
    pub reply: String,
}

impl Keystore {
    /// The latest key events of every contact, newest first.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<ContactEvent>, KeystoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT address, at, kind, old_fingerprint, new_fingerprint FROM key_event
             ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(address, at, kind, old, new)| {
                Some(ContactEvent {
                    address,
                    event: KeyEvent {
                        at: from_db(at),
                        kind: EventKind::parse(&kind)?,
                        old_fingerprint: old,
                        new_fingerprint: new,
                    },
                })
            })
            .collect())
    }

    /// Remembers that a message was refused; only the newest
    /// [`REFUSALS_KEPT`] are kept.
    pub async fn record_refusal(
        &self,
        account: &str,
        recipients: &[String],
        reply: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let account = autocrypt::normalize_addr(account);
        let recipients = recipients.join("\n");
        let reply = reply.to_string();
        self.grouped(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO refusal (account, at, recipients, reply) VALUES (?, ?, ?, ?)",
                )
                .bind(&account)
                .bind(to_db(now))
                .bind(&recipients)
                .bind(&reply)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM refusal WHERE id <= (SELECT max(id) FROM refusal) - ?")
                    .bind(REFUSALS_KEPT)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// The latest refusals, newest first.
    pub async fn refusals(&self, limit: u32) -> Result<Vec<Refusal>, KeystoreError> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT account, at, recipients, reply FROM refusal ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(account, at, recipients, reply)| Refusal {
                account,
                at: from_db(at),
                recipients: recipients.lines().map(str::to_string).collect(),
                reply,
            })
            .collect())
    }
}
