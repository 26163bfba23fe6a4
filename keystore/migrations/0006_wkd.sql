-- Keys found in the Web Key Directory: a source of their own in the key history.
-- SQLite cannot change a CHECK constraint in place: the table is made anew.
CREATE TABLE key_seen_new (
    address     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('autocrypt', 'gossip', 'dns', 'wkd', 'import', 'setup-message')),
    cert        BLOB NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (address, fingerprint, source)
);
INSERT INTO key_seen_new SELECT address, fingerprint, source, cert, first_seen, last_seen FROM key_seen;
DROP TABLE key_seen;
ALTER TABLE key_seen_new RENAME TO key_seen;

-- Web Key Directory answers, a key or "none here" (HTTP 404), until they expire.
CREATE TABLE wkd_cache (
    address  TEXT PRIMARY KEY,
    certs    BLOB,                             -- NULL: no key
    expires  INTEGER NOT NULL
);
