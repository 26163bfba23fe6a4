-- One row per distinct message content (keyed by the hash of what the
-- provider stores), so a message moved between folders is decrypted once.
CREATE TABLE content (
    id             INTEGER PRIMARY KEY,
    hash           BLOB NOT NULL UNIQUE,       -- SHA-256 of the provider's bytes
    message        BLOB NOT NULL,              -- the message as served (decrypted)
    encrypted      INTEGER NOT NULL,           -- 1 if the provider's copy was encrypted
    date           INTEGER,                    -- unix seconds, from the Date header
    from_display   TEXT NOT NULL DEFAULT '',
    subject        TEXT NOT NULL DEFAULT '',
    has_attachment INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX content_date ON content (date);

-- Where each content lives at the provider.
CREATE TABLE location (
    account     TEXT NOT NULL,
    mailbox     TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    content_id  INTEGER NOT NULL REFERENCES content (id),
    PRIMARY KEY (account, mailbox, uidvalidity, uid)
);
CREATE INDEX location_content ON location (content_id);

-- The full-text index; rowid = content.id. Text is folded (NFKC, ß → ss)
-- before it is stored; unicode61 folds case and removes diacritics.
CREATE VIRTUAL TABLE content_fts USING fts5 (
    subject, sender, recipients, body, attachments,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Deleted rows leave no terms behind in FTS5's own index segments either
-- (SQLite >= 3.42; PRAGMA secure_delete covers the ordinary tables).
INSERT INTO content_fts (content_fts, rank) VALUES ('secure-delete', 1);
