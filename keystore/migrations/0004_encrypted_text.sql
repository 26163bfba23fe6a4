-- Phrases (runs of six words) of encrypted messages that had no
-- Message-ID to link a reply by (gpg/Enigmail-style ciphertext re-sent
-- without one), by a truncated SHA-256 of each. An outgoing message quoting
-- such a phrase answers that message and is never sent in the clear
-- (SECURITY.md, "decryption oracles").
CREATE TABLE encrypted_text (
    phrase_hash BLOB PRIMARY KEY,
    seen        INTEGER NOT NULL
) WITHOUT ROWID;

-- Bounded (keystore::conversation): the oldest phrases go first.
CREATE INDEX encrypted_text_seen ON encrypted_text (seen);
