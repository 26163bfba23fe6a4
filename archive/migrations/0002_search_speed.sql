-- Search speed, measured on 6,046 messages (BENCHMARKS.md).

-- The served message moves out of `content`: with it inline, every search
-- hit read (and decrypted) its own pages just to get the date and subject.
CREATE TABLE message (
    id    INTEGER PRIMARY KEY REFERENCES content (id),
    bytes BLOB NOT NULL
);
INSERT INTO message (id, bytes) SELECT id, message FROM content;
ALTER TABLE content DROP COLUMN message;

-- (A prefix index, FTS5 `prefix = '2 3 4'`, was measured too: prefix queries were
-- no faster at this size, indexing was 40 % slower and the file 20 % larger.)
