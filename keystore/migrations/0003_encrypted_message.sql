-- Messages of encrypted conversations (read encrypted, or sent encrypted),
-- by the SHA-256 of their Message-ID: never the ID itself, which often names
-- the sender's host. A reply or forward that refers to one of them belongs
-- to that conversation and is never sent in the clear (SECURITY.md,
-- "decryption oracles").
CREATE TABLE encrypted_message (
    id_hash BLOB PRIMARY KEY,
    seen    INTEGER NOT NULL
) WITHOUT ROWID;
