-- Header sections on their own (issue 21): a mail client's header sync of a
-- folder (Thunderbird's first open: RFC822.SIZE and BODY.PEEK[HEADER.FIELDS])
-- read and decrypted every archived message whole just to cut its header
-- out. Messages archived before this table are answered from `message`
-- (Archive::headers_at falls back), so no backfill is needed.
CREATE TABLE message_header (
    id     INTEGER PRIMARY KEY REFERENCES content (id),
    header BLOB NOT NULL       -- the served message's header section, blank line included
);
