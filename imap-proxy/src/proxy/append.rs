//! APPEND: what a client stores (Drafts, Sent, any mailbox) reaches the
//! provider encrypted to the account's own key, with header protection, or
//! not at all (rule 2: no plaintext of an encrypted conversation reaches
//! the provider, IMAP APPEND included).

use std::sync::Arc;

use imap_next::imap_types::core::{Literal, LiteralMode};
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use mailcrypt::EncryptRequest;

use super::Forwarder;

/// The largest message a client may APPEND (encrypted, it grows by about a
/// third on its way to the provider).
pub(super) const MAX_APPEND: u32 = 64 * 1024 * 1024;

/// Why a message could not be stored encrypted (the client is told, and
/// nothing is stored).
#[derive(Debug, thiserror::Error)]
pub(super) enum AppendError {
    #[error(transparent)]
    Encrypt(#[from] mailcrypt::EncryptError),
    #[error("the encryption stopped unexpectedly")]
    Worker(#[source] tokio::task::JoinError),
    #[error("the encrypted message cannot be sent as an IMAP literal")]
    Literal(#[source] imap_next::imap_types::error::ValidationError),
}

impl Forwarder {
    /// Readies an APPEND's message for the provider: encrypted
    /// ([`Forwarder::protect`]) and sent without waiting for a go-ahead
    /// where the provider allows it — it then reads the whole message
    /// before it answers, and a refusal (out of space) is an ordinary NO; a
    /// refused go-ahead is one imap-next does not understand (see the
    /// session loop). Whether the literal waits for a go-ahead.
    pub(super) async fn prepare_append(
        &self,
        message: &mut LiteralOrLiteral8<'static>,
    ) -> Result<bool, AppendError> {
        self.protect(message).await?;
        let len = match message {
            LiteralOrLiteral8::Literal(l) => l.data().len(),
            LiteralOrLiteral8::Literal8(l) => l.data.len(),
        };
        let mode = if self.session.takes_non_sync_literal(len) {
            LiteralMode::NonSync
        } else {
            LiteralMode::Sync
        };
        match message {
            LiteralOrLiteral8::Literal(l) => l.set_mode(mode),
            LiteralOrLiteral8::Literal8(l) => l.mode = mode,
        }
        Ok(mode == LiteralMode::Sync)
    }

    /// Encrypts a message the client stores (Drafts, Sent, any mailbox) to
    /// the account's own key, with header protection, unless it is
    /// encrypted already. Fail closed: on any error nothing is stored.
    async fn protect(&self, message: &mut LiteralOrLiteral8<'static>) -> Result<(), AppendError> {
        let bytes = match message {
            LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
            LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
        };
        if already_encrypted(&bytes) {
            return Ok(());
        }
        let own = Arc::clone(&self.own);
        let encrypted = tokio::task::spawn_blocking(move || {
            let request = EncryptRequest::new(&own, &[]);
            mailcrypt::encrypt(&bytes, &request)
        })
        .await
        .map_err(AppendError::Worker)??;
        *message =
            LiteralOrLiteral8::Literal(Literal::try_from(encrypted).map_err(AppendError::Literal)?);
        Ok(())
    }
}

/// PGP/MIME at the root, or a whole-body inline PGP message.
fn already_encrypted(message: &[u8]) -> bool {
    let entity = letterlock_mime::entity::Entity::parse(message);
    let content_type = entity.content_type();
    if content_type.is("multipart/encrypted") {
        return true;
    }
    let body = entity.body;
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    content_type.is("text/plain") && body[start..].starts_with(b"-----BEGIN PGP MESSAGE-----")
}
