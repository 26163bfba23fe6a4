//! Error types of the crate.

use thiserror::Error;

/// Why a message could not be encrypted or signed. Nothing was produced, so
/// nothing can leave by accident (fail closed).
#[derive(Debug, Error)]
pub enum EncryptError {
    #[error("the sender's key {0} has no usable signing key with its secret part; generate or import a complete key")]
    NoSigningKey(String),
    #[error("the certificate {0} has no valid, unexpired encryption key; ask its owner for a current key")]
    NoEncryptionKey(String),
    #[error("there is no recipient to encrypt to")]
    NoRecipients,
    #[error("the message has no header section")]
    NoHeader,
    /// Sequoia's error, kept as the cause (its text is in the message too,
    /// which is what a mail client shows).
    #[error("OpenPGP operation failed: {0}")]
    OpenPgp(#[source] sequoia_openpgp::anyhow::Error),
    #[error("writing the OpenPGP message failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sequoia_openpgp::anyhow::Error> for EncryptError {
    fn from(e: sequoia_openpgp::anyhow::Error) -> Self {
        EncryptError::OpenPgp(e)
    }
}

/// Why an encrypted message was not decrypted. The message is left as it was.
///
/// Every way in which ciphertext can be damaged or manipulated maps to the one
/// [`Refusal::Integrity`] so that the answer gives an attacker no oracle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("the message is not encrypted to any of your keys")]
    NoKey,
    #[error("the encrypted message is damaged or was tampered with (integrity check failed); ask the sender to send it again")]
    Integrity,
    #[error("an encrypted part sits inside a larger message next to other content; it is not decrypted, because joining it with the other parts is how EFAIL attacks steal plaintext")]
    Nested,
    #[error("the message mixes an encrypted block with unencrypted text; the block is not decrypted so the two cannot be confused")]
    PartialInline,
    #[error("the PGP/MIME structure is malformed: {0}")]
    Malformed(String),
    #[error("the message is {0} bytes, over the limit of {1} bytes")]
    TooLarge(usize, usize),
}
