-- Senders of encrypted messages that were not encrypted to them and that
-- they did not sign: a ciphertext someone else wrote, sent on by them
-- ("Re: What's up Johnny?"). By the SHA-256 of the lowercased address. A
-- message that continues an encrypted conversation is never sent to them
-- (SECURITY.md, "decryption oracles").
CREATE TABLE outsider (
    address_hash BLOB PRIMARY KEY,
    seen         INTEGER NOT NULL
) WITHOUT ROWID;
